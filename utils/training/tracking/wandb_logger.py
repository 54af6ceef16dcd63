"""Weights & Biases as a MetricsSink that never stops a run.

online (short init timeout) -> offline -> disabled: one line says which mode a run got
and why. The experiments database stays the source of truth; W&B is a view of it.

Every wait on W&B is bounded by one timeout (TrainingConfig.wandb_timeout_s): the
online init, the wait in close() for a start still under way, and run.finish() (run
in a helper thread, given up after the timeout with a line saying so). wandb's own
SDK analytics, which a server that accepts connections and never answers would hold
at interpreter exit for ~20 s more, are turned off: this sink sends the run's
metrics and nothing else.

The API key comes from Colab Secrets, the WANDB_API_KEY environment variable, or a
hidden prompt. It is handed to wandb in memory (Settings.api_key): we never print it,
log it, put it in the environment or write it to a file (no `wandb.login`, which
writes ~/.netrc).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import string
import sys
import threading
import urllib.parse
from typing import Any

MODES = ("online", "offline", "disabled")
KEY_NAME = "WANDB_API_KEY"


def resolve_wandb_key(interactive: bool | None = None) -> str | None:
    """The W&B API key from Colab Secrets, then the environment, then a hidden prompt
    (when `interactive`; None means: only if stdin is a terminal). None when there is none."""
    key = _colab_secret()
    if key:
        return key
    key = os.environ.get(KEY_NAME, "").strip()
    if key:
        return key
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        try:
            key = getpass.getpass("W&B API key (hidden; Enter to skip): ").strip()
        except (EOFError, KeyboardInterrupt):
            key = ""
        return key or None
    return None


def _colab_secret() -> str | None:
    try:
        from google.colab import userdata  # only in Colab
    except ImportError:
        return None
    errors = tuple(getattr(userdata, n) for n in ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")
                   if isinstance(getattr(userdata, n, None), type))
    try:
        return (userdata.get(KEY_NAME) or "").strip() or None
    except errors:  # an empty tuple catches nothing
        return None


class WandbSink:
    """MetricsSink logging to W&B. `mode` is the mode to try first ("online", "offline"
    or "disabled"); `mode_used` and `reason` say what the run got."""

    def __init__(self, project: str, entity: str | None = None, run_name: str | None = None, config: Any = None,
                 tags: tuple | list = (), mode: str = "online", init_timeout_s: float = 15.0,
                 resume_id: str | None = None, run_dir: str | os.PathLike | None = None,
                 api_key: str | None = None, interactive: bool | None = False):
        if mode not in MODES:
            raise ValueError(f"W&B mode must be one of {MODES}, got {mode!r}")
        self.project, self.entity, self.run_name = project, entity, run_name
        self.config, self.tags, self.mode = config, tuple(tags), mode
        self.init_timeout_s, self.resume_id = float(init_timeout_s), resume_id  # s
        self.run_dir = None if run_dir is None else str(run_dir)
        self._key, self._interactive = api_key, interactive
        self.run = None  # the wandb Run once the background init succeeded
        self.run_id: str | None = None
        self._thread: threading.Thread | None = None
        self.mode_used, self.reason = "disabled", "not started"
        self._closed = False  # close() gave up on a start still under way: finish it when it ends

    # -- start: online -> offline -> disabled, in the background -----------------------------
    def start(self, run_info: dict) -> None:
        """Returns at once: import and init run in a thread while training goes on; points
        logged meanwhile are queued. The run id is chosen here and stored in `tracking`
        right away, so even the first checkpoint resumes the same W&B run."""
        tracking = run_info.get("tracking")
        if tracking is None:
            tracking = {}
        self.run_id = self.resume_id or tracking.get("wandb_run_id") or _new_run_id()
        self._resuming = bool(self.resume_id or tracking.get("wandb_run_id"))
        if self.mode != "disabled":
            tracking["wandb_run_id"] = self.run_id
        self._pending: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._init_guarded, args=(dict(run_info),), name="wandb-init",
                                        daemon=True)
        self._thread.start()

    def _init_guarded(self, run_info: dict) -> None:
        """The start thread: whatever wandb raises here ends in a one-line report, never in a
        traceback on the user's screen (this thread may outlive close(), up to interpreter
        exit, where wandb tears itself down under it)."""
        try:
            self._init(run_info)
        except Exception as e:  # noqa: BLE001 - W&B must never stop or clutter a run; reported unless abandoned
            if not self._closed:
                self._report("disabled", f"start failed: {_short(e)}")

    def _init(self, run_info: dict) -> None:
        try:
            import wandb
        except ImportError:
            self._report("disabled", "wandb is not installed (pip install wandb)")
            return
        _disable_sdk_analytics()
        failures = (wandb.errors.Error, OSError, TimeoutError, *_abandoned_error())
        reasons = []
        for mode in MODES[MODES.index(self.mode):-1]:  # "disabled" is what is left when the others fail
            settings: dict[str, Any] = {"init_timeout": self.init_timeout_s, "silent": True}
            if mode == "online":
                key = self._key or resolve_wandb_key(self._interactive)
                if not key:
                    reasons.append("online: no API key (Colab secret or WANDB_API_KEY)")
                    continue
                settings["api_key"] = key
                unreachable = _unreachable(os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url,
                                           self.init_timeout_s)
                if unreachable:  # seconds saved: no wandb service round of retries
                    reasons.append(f"online: {unreachable}")
                    continue
            try:
                run = wandb.init(
                    project=self.project, entity=self.entity, name=self.run_name or run_info.get("run_name"),
                    config=_plain_config(self.config if self.config is not None else run_info.get("config")),
                    tags=list(self.tags), dir=self.run_dir, mode=mode, id=self.run_id,
                    resume="allow" if self._resuming else None, settings=wandb.Settings(**settings))
            except failures as e:
                reasons.append(f"{mode}: {_short(e)}")
                # A failed init leaves the run id claimed in wandb's service; a fresh
                # service lets the next mode reuse it (and re-reads WANDB_* variables).
                wandb.teardown()
                continue
            # Our step is a metric; W&B's own step only increases, so a resumed run that
            # logs earlier steps again is still accepted.
            run.define_metric("step")
            run.define_metric("*", step_metric="step")
            with self._lock:
                for kind, payload in self._pending:
                    self._apply(run, kind, payload)
                self._pending.clear()
                self.run = run
                late = self._closed
            self._report(mode, "; ".join(reasons) or "as asked")
            if late:  # close() stopped waiting for this start: end the run here
                self._finish(run, self._late_close)
            return
        self._report("disabled", "; ".join(reasons) or "as asked")

    def _report(self, mode: str, reason: str) -> None:
        self.mode_used, self.reason = mode, reason
        print(f"W&B: {mode} ({reason})", flush=True)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the background init has finished (or `timeout_s` passed)."""
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout_s)

    # -- MetricsSink ---------------------------------------------------------------------
    def _send(self, kind: str, payload: Any) -> None:
        with self._lock:
            if self.run is not None:
                self._apply(self.run, kind, payload)
            elif self._thread.is_alive():
                self._pending.append((kind, payload))  # init still running: replayed when it ends

    @staticmethod
    def _apply(run, kind: str, payload: Any) -> None:
        if kind == "log":
            run.log(payload)
        elif kind == "samples":
            import wandb

            step, samples = payload
            data = [[step, s.get("prompt"), s.get("output"), s.get("accuracy")] for s in samples]
            run.log({"samples": wandb.Table(columns=["step", "prompt", "output", "accuracy"], data=data),
                     "step": step})
        elif kind == "summary":
            run.summary.update(payload)

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        self._send("log", {**{k: v for k, v in metrics.items() if v is not None}, "step": int(step)})

    def add_samples(self, step: int, samples: list[dict]) -> None:
        if samples:
            self._send("samples", (int(step), [dict(s) for s in samples]))

    def add_checkpoint(self, step: int, path: str) -> None:
        self._send("summary", {"last_checkpoint": str(path), "last_checkpoint_step": int(step)})

    def flush(self) -> None:
        """Nothing to do: wandb sends in the background."""

    def sync(self) -> None:
        """Nothing to make durable: W&B is a view of the run, the experiments database its
        record (docs/storage.md). A run resumed from a checkpoint logs the steps after it
        again, and W&B keeps the later values. Never raises."""

    def close(self, status: str, summary: dict) -> None:
        """Wait for a start still under way, then finish the run: each wait at most
        `init_timeout_s` (the config's wandb_timeout_s), so a hanging server costs a
        run at most twice that."""
        if getattr(self, "_thread", None) is None:
            return
        self._thread.join(self.init_timeout_s)
        with self._lock:
            run, self.run = self.run, None
            if run is None and self._thread.is_alive():
                self._closed, self._late_close = True, (status, dict(summary or {}))
        if run is None:
            if self._closed:
                print(f"W&B: still starting after {self.init_timeout_s:g} s (wandb_timeout_s); not waiting longer. "
                      "The run's metrics are in the experiments database.", flush=True)
            return
        finisher = threading.Thread(target=self._finish, args=(run, (status, dict(summary or {}))),
                                    name="wandb-finish", daemon=True)
        finisher.start()
        finisher.join(self.init_timeout_s)
        if finisher.is_alive():
            print(f"W&B: finishing the run took longer than {self.init_timeout_s:g} s (wandb_timeout_s); not waiting "
                  "longer. The run's metrics are in the experiments database; a run W&B kept offline can be "
                  "uploaded later with `wandb sync`.", flush=True)

    @staticmethod
    def _finish(run, ending: tuple[str, dict]) -> None:
        import wandb

        status, summary = ending
        try:
            run.summary.update({k: v for k, v in summary.items() if v is not None})
            run.summary["status"] = status
            run.finish(exit_code=0 if status in ("completed", "stopped_early", "pruned") else 1)
            wandb.teardown()  # the next run reads WANDB_* settings afresh
        except (wandb.errors.Error, OSError) as e:
            print(f"W&B: finish failed ({_short(e)}); metrics are in the experiments database")


class WandbRunSink:
    """MetricsSink logging to the W&B run the caller's own code started (`wandb.init`):
    nothing is logged while there is none. W&B's step only increases, so a point at an
    earlier step than one already sent is logged at the latest step sent."""

    def __init__(self) -> None:
        self.step = -1  # the largest step sent
        self.installed = True  # False after one attempt found no wandb: said once, then quiet

    def start(self, run_info: dict) -> None:
        """Nothing to start: the caller's code owns the run."""

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if not self.installed:
            return
        try:
            import wandb
        except ImportError:
            self.installed = False
            print("W&B: wandb is not installed (pip install wandb); W&B logging is off", flush=True)
            return
        if wandb.run is None:
            return
        self.step = max(self.step, int(step))
        wandb.log({k: v for k, v in metrics.items() if k != "step" and v is not None}, step=self.step)

    def add_samples(self, step: int, samples: list[dict]) -> None:
        """Samples go to the database and the run log; this sink logs numbers only."""

    def add_checkpoint(self, step: int, path: str) -> None:
        """The caller's run: its checkpoints are the caller's to record."""

    def flush(self) -> None:
        """Nothing to do: wandb sends in the background."""

    def sync(self) -> None:
        """Nothing to make durable (W&B is a view of the run)."""

    def close(self, status: str, summary: dict) -> None:
        """The caller finishes its own run (wandb.finish)."""


def _abandoned_error() -> tuple[type[BaseException], ...]:
    """wandb's error for a request whose service went away (the process is exiting while
    a start is still under way): a failed start like the others, not a traceback."""
    try:
        from wandb.sdk.mailbox.mailbox_handle import HandleAbandonedError
    except ImportError:
        return ()
    return (HandleAbandonedError,)


def _disable_sdk_analytics() -> None:
    """Turn off wandb's own SDK analytics (OpenTelemetry to the W&B server): its exit hook
    waits up to 30 s on a server that does not answer. Absent in other wandb versions."""
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy
    except ImportError:
        return
    disable = getattr(opentelemetry_proxy, "disable", None)
    if callable(disable):
        disable()


def _unreachable(base_url: str, timeout_s: float) -> str | None:
    """Why the W&B server at `base_url` cannot be reached by TCP within `timeout_s`, or None."""
    parts = urllib.parse.urlsplit(base_url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return f"bad WANDB_BASE_URL {base_url!r}"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        return f"cannot reach {host}:{port} ({type(e).__name__}: {e})"
    return None


def _new_run_id() -> str:
    """8 characters of [a-z0-9], the shape of wandb's own ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _plain_config(config: Any) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    import dataclasses

    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    raise TypeError(f"W&B config must be a dict, a dataclass or have to_dict(); got {type(config).__name__}")


def _short(e: BaseException) -> str:
    """First line of an error, for the one-line report (never contains the key: wandb's
    messages name the URL, not the credentials)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:160]}"
