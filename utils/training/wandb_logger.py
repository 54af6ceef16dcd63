"""Weights & Biases as a MetricsSink that never stops a run.

online (short init timeout) -> offline -> disabled: one line says which mode a run got
and why. The experiments database stays the source of truth; W&B is a view of it.

The API key comes from Colab Secrets, the WANDB_API_KEY environment variable, or a
hidden prompt. It is handed to wandb in memory (Settings.api_key): we never print it,
log it, put it in the environment or write it to a file (no `wandb.login`, which
writes ~/.netrc).
"""

from __future__ import annotations

import getpass
import os
import sys
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
        self.run = None
        self.mode_used, self.reason = "disabled", "not started"

    # -- start: online -> offline -> disabled ------------------------------------------
    def start(self, run_info: dict) -> None:
        tracking = run_info.get("tracking")
        if tracking is None:
            tracking = {}
        resume_id = self.resume_id or tracking.get("wandb_run_id")
        try:
            import wandb
        except ImportError:
            self._report("disabled", "wandb is not installed (pip install wandb)")
            return
        failures = (wandb.errors.Error, OSError, TimeoutError)
        reasons = []
        order = list(MODES[MODES.index(self.mode):])
        for mode in order[:-1]:  # "disabled" is what is left when the others fail
            settings: dict[str, Any] = {"init_timeout": self.init_timeout_s, "silent": True}
            if mode == "online":
                key = self._key or resolve_wandb_key(self._interactive)
                if not key:
                    reasons.append("online: no API key (Colab secret or WANDB_API_KEY)")
                    continue
                settings["api_key"] = key
            try:
                self.run = wandb.init(
                    project=self.project, entity=self.entity, name=self.run_name or run_info.get("run_name"),
                    config=_plain_config(self.config if self.config is not None else run_info.get("config")),
                    tags=list(self.tags), dir=self.run_dir, mode=mode, id=resume_id,
                    resume="allow" if resume_id else None, settings=wandb.Settings(**settings))
            except failures as e:
                reasons.append(f"{mode}: {_short(e)}")
                continue
            # Our step is a metric; W&B's own step only increases, so a resumed run that
            # logs earlier steps again is still accepted.
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
            tracking["wandb_run_id"] = self.run.id
            self._report(mode, "; ".join(reasons) or "as asked")
            return
        self._report("disabled", "; ".join(reasons) or "as asked")

    def _report(self, mode: str, reason: str) -> None:
        self.mode_used, self.reason = mode, reason
        print(f"W&B: {mode} ({reason})")

    # -- MetricsSink ---------------------------------------------------------------------
    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if self.run is not None:
            self.run.log({**{k: v for k, v in metrics.items() if v is not None}, "step": int(step)})

    def add_samples(self, step: int, samples: list[dict]) -> None:
        if self.run is None or not samples:
            return
        import wandb

        cols = ["step", "prompt", "output", "accuracy"]
        table = wandb.Table(columns=cols, data=[[int(step), s.get("prompt"), s.get("output"), s.get("accuracy")]
                                                for s in samples])
        self.run.log({"samples": table, "step": int(step)})

    def add_checkpoint(self, step: int, path: str) -> None:
        if self.run is not None:
            self.run.summary["last_checkpoint"] = str(path)
            self.run.summary["last_checkpoint_step"] = int(step)

    def flush(self) -> None:
        """Nothing to do: wandb sends in the background."""

    def close(self, status: str, summary: dict) -> None:
        if self.run is None:
            return
        import wandb

        run, self.run = self.run, None
        try:
            run.summary.update({k: v for k, v in (summary or {}).items() if v is not None})
            run.summary["status"] = status
        finally:
            try:
                run.finish(exit_code=0 if status in ("completed", "stopped_early", "pruned") else 1)
            except (wandb.errors.Error, OSError) as e:
                print(f"W&B: finish failed ({_short(e)}); metrics are in the experiments database")


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
