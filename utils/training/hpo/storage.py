"""Where an Optuna study lives, and how several workers share it without losing a trial.

Storage contract
----------------
A study is named (`--study-name`) and lives in one storage, given as a *spec*:

    PATH.journal / PATH.log    a journal file (JournalStorage + JournalFileBackend).
                               One process, or several worker processes on ONE machine.
    sqlite:///PATH.db          SQLite. One process (several work, but SQLite serialises
                               every write; prefer the journal file for parallel workers).
    postgresql://U:P@HOST/DB   an RDB server. Worker processes on SEVERAL machines.
                               (needs the psycopg 3 driver: `pip install "psycopg[binary]"`;
                               SQLAlchemy 2.1 maps postgresql:// to it)

Commands (every worker runs the same line; they cooperate through the storage):

    # one process
    python -m utils.training hpo --workspace W --space examples/search_space.json \
        --study-name s1 --n-trials 20 --storage W/results/hpo/s1.journal
    # several workers on one machine: start the line N times (or pass --workers N)
    python -m utils.training hpo ... --storage W/results/hpo/s1.journal --workers 3
    # several machines: the same line on each machine, pointing at one server
    python -m utils.training hpo ... --storage postgresql://optuna:PASS@db-host/optuna

Guarantees:

* Studies are created with `load_if_exists=True` (under the claim lock, and on
  PostgreSQL the schema too under an advisory lock, so workers started in the same
  second on an empty database do not race): running the line again resumes the study;
  `--n-trials N` means "until the study holds N counted trials", not "N more".
* Counted trials: complete, pruned, failed *by their own run* (a bad config, OOM, a
  non-finite loss: attribute `counted`), and running ones of live workers. A trial
  cut short (Ctrl-C, a killed worker) does not count: running the line again redoes it.
* Exactly N counted trials across all workers. Optuna's `MaxTrialsCallback` stops a
  worker only *after* its trial ends, so k workers racing for the last slot overshoot
  by up to k-1 trials. Here each worker counts the trials (enqueued ones are run first,
  not counted) and creates its next trial while holding a *claim lock*, so a slot is
  taken by exactly one worker. A worker returns when N trials are counted and none is
  running any more (it waits for the others' last trials, so that a trial whose worker
  dies is redone by a survivor):
    - journal file / SQLite: an `fcntl.flock` on `SPEC.claim.lock` next to the file (the
      kernel drops it when a process dies, so a killed worker never blocks the rest);
    - PostgreSQL: a session advisory lock (`pg_advisory_lock`), dropped with the
      connection when a worker dies.
* A killed worker's trial is marked FAIL and the study goes on:
    - journal file: every trial records its owner (`worker_host`, `worker_pid`, process
      start time) as user attributes; before claiming a slot, a worker fails the RUNNING
      trials whose owner process on this host no longer exists (no heartbeat there);
    - RDB storages (SQLite, PostgreSQL): Optuna's heartbeat (`heartbeat_interval`,
      `grace_period`): a trial whose worker, on any machine, stopped beating for
      grace_period seconds is failed by the next worker that counts the trials.
  Such a trial does not count towards N (see above); a failed run does.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

JOURNAL_SUFFIXES = (".journal", ".log")
RDB_PREFIXES = ("sqlite:///", "postgresql://", "postgresql+", "postgres://", "mysql://", "mysql+")

# Owner attributes written on every trial (user attrs, so they show in trials.csv).
ATTR_HOST = "worker_host"
ATTR_PID = "worker_pid"
ATTR_PID_START = "worker_pid_start"
# Set when the objective itself ended the trial (value, pruned, or a caught failure).
ATTR_COUNTED = "counted"

# A RUNNING trial with no owner attributes (its worker died between creating it and
# tagging it, inside the claim lock) is failed once it is this old.
UNOWNED_GRACE_S = 120.0

class StorageSpecError(ValueError):
    """The storage spec is not one of the accepted forms."""


def _spec_kind(spec: Any) -> str:
    """'memory', 'storage', 'journal', 'sqlite', 'postgresql' or 'rdb'."""
    if spec is None:
        return "memory"
    if isinstance(spec, BaseStorage):
        return "storage"
    text = os.fspath(spec)
    if text.startswith("sqlite:///"):
        return "sqlite"
    if text.startswith(("postgresql://", "postgresql+", "postgres://")):
        return "postgresql"
    if text.startswith(RDB_PREFIXES):
        return "rdb"
    if text.endswith(JOURNAL_SUFFIXES):
        return "journal"
    raise StorageSpecError(
        f"storage {text!r} is not understood: give a journal file path ending in .journal or .log "
        "(one machine, one or several workers), 'sqlite:///PATH.db' (one process), or "
        "'postgresql://USER:PASSWORD@HOST/DB' (several machines)"
    )


def open_storage(
    spec: str | os.PathLike[str] | BaseStorage | None,
    *,
    heartbeat_interval: int = 30,
    grace_period: int = 120,
) -> BaseStorage:
    """The Optuna storage for `spec` (see the module docstring). None: in memory.

    RDB storages get a heartbeat so that a trial whose worker died is failed by another
    worker after `grace_period` seconds of silence.
    """
    kind = _spec_kind(spec)
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "storage":
        return spec  # type: ignore[return-value]
    text = os.fspath(spec)  # type: ignore[arg-type]
    if kind == "journal":
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if kind == "sqlite":
        db_path = Path(text[len("sqlite:///"):]).expanduser()
        if str(db_path) not in ("", ":memory:"):
            db_path.parent.mkdir(parents=True, exist_ok=True)
    schema_lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if kind == "postgresql":
        _require_psycopg(text)
        # Workers that start together on an empty database would all create Optuna's
        # tables at once (UniqueViolation on pg_type): one creates them, the rest wait.
        schema_lock = _AdvisoryClaimLock(text, "__schema__")
    with _quiet_experimental(), schema_lock:
        return RDBStorage(
            text,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_log_stale_trial,
        )


def _require_psycopg(url: str) -> None:
    """postgresql:// means the psycopg 3 driver to SQLAlchemy 2.1; say how to get it."""
    if not url.startswith(("postgresql://", "postgresql+psycopg://")):
        return  # another driver named explicitly (postgresql+psycopg2://...): SQLAlchemy reports it
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ImportError(
            "the PostgreSQL storage needs the psycopg 3 driver: pip install \"psycopg[binary]\" "
            "(psycopg2 is not what SQLAlchemy 2.1 uses for postgresql:// URLs)"
        ) from None


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    # heartbeat_interval is still flagged experimental; the warning says nothing to our users.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _log_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    logger.warning("trial %d of study %r: its worker stopped beating; marked failed", trial.number, study.study_name)


# --------------------------------------------------------------------------- claim lock


class _FileClaimLock:
    """Process-exclusive lock on SPEC.claim.lock. fcntl where it exists (the kernel
    releases it when the holder dies); Optuna's open-lock elsewhere (stale after 30 s)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._thread_lock = threading.Lock()  # flock is per open file, not per thread
        try:
            import fcntl  # noqa: F401  (POSIX only)

            self._fallback = None
        except ImportError:
            from optuna.storages.journal import JournalFileOpenLock

            self._fallback = JournalFileOpenLock(str(path))

    def __enter__(self) -> _FileClaimLock:
        self._thread_lock.acquire()
        if self._fallback is not None:
            while not self._fallback.acquire():
                pass
            return self
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fallback is not None:
                self._fallback.release()
            elif self._fd is not None:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
        finally:
            self._thread_lock.release()


class _AdvisoryClaimLock:
    """PostgreSQL session advisory lock keyed by study name, on its own connection."""

    def __init__(self, url: str, study_name: str):
        self.url = url
        self.key = zlib.crc32(f"slm-hpo:{study_name}".encode())
        self._engine: Any = None
        self._conn: Any = None

    def __enter__(self) -> _AdvisoryClaimLock:
        import sqlalchemy

        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        self._conn = self._engine.connect()
        self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        return self

    def __exit__(self, *exc: object) -> None:
        import sqlalchemy

        try:
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        finally:
            self._conn.close()
            self._conn = None


def claim_lock(spec: Any, study_name: str) -> contextlib.AbstractContextManager[Any]:
    """The lock under which a worker counts the study's trials and creates the next one."""
    if isinstance(spec, JournalStorage):
        backend = getattr(spec, "_backend", None)
        path = getattr(backend, "_file_path", None)
        return _FileClaimLock(Path(f"{path}.claim.lock")) if path else _thread_claim_lock(spec)
    if isinstance(spec, RDBStorage):
        spec = spec.url
    kind = _spec_kind(spec)
    if kind == "journal":
        return _FileClaimLock(Path(f"{os.fspath(spec)}.claim.lock").expanduser())
    if kind == "sqlite":
        return _FileClaimLock(Path(os.fspath(spec)[len("sqlite:///"):] + ".claim.lock").expanduser())
    if kind == "postgresql":
        return _AdvisoryClaimLock(os.fspath(spec), study_name)
    if kind == "rdb":
        logger.warning(
            "no cross-machine claim lock for %s: the trial count may overshoot by up to workers-1; "
            "use PostgreSQL for exact counts across machines", os.fspath(spec).split("://")[0]
        )
    return _thread_claim_lock(spec)


_THREAD_LOCKS: dict[int, threading.Lock] = {}


def _thread_claim_lock(spec: Any) -> threading.Lock:
    # In-process storages: threads of one process are the only competitors.
    return _THREAD_LOCKS.setdefault(id(spec), threading.Lock())


# --------------------------------------------------------------------------- stale trials


def _process_start_token(pid: int) -> str:
    """Start time of `pid` from /proc (guards against PID reuse); '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return ""
    # Field 22 (starttime) counted after the ')' that ends the command name.
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else ""


def _process_alive(pid: int, start_token: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
    except (OSError, IndexError):
        pass
    return not (start_token and _process_start_token(pid) not in ("", start_token))


def owner_attrs() -> dict[str, Any]:
    """This process as a trial owner."""
    pid = os.getpid()
    return {ATTR_HOST: socket.gethostname(), ATTR_PID: pid, ATTR_PID_START: _process_start_token(pid)}


def fail_dead_trials(
    study: optuna.Study, on_failed: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is gone; return their numbers.

    RDB storages with a heartbeat: a trial is stale when its heartbeat stopped for
    grace_period seconds. Elsewhere (journal file): when its owner ran on this host and
    that process no longer exists, or when it has no owner attributes and started more
    than UNOWNED_GRACE_S ago.
    """
    storage = study._storage
    failed: list[FrozenTrial] = []
    if is_heartbeat_enabled(storage):
        # RDB storages: Optuna's heartbeat is the one mechanism, for every machine alike.
        before = {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with _quiet_experimental():
            optuna.storages.fail_stale_trials(study)
        failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                  if t._trial_id in before and not t.user_attrs.get(ATTR_COUNTED)]
        for frozen in failed:
            if on_failed is not None:
                on_failed(study, frozen)
        return [t.number for t in failed]
    host = socket.gethostname()
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if ATTR_PID in attrs:
            alive = _process_alive(int(attrs[ATTR_PID]), str(attrs.get(ATTR_PID_START, "")))
            if attrs.get(ATTR_HOST) != host or alive:
                continue
        elif t.datetime_start is None or (now - t.datetime_start).total_seconds() < UNOWNED_GRACE_S:
            continue
        try:
            # The reason first: a finished trial takes no more attributes.
            storage.set_trial_user_attr(t._trial_id, "fail_reason", "worker process died")
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(storage.get_trial(t._trial_id))
    for frozen in failed:
        logger.warning("trial %d of study %r: its worker is gone; marked failed", frozen.number, study.study_name)
        if on_failed is not None:
            on_failed(study, frozen)
    return [t.number for t in failed]


# --------------------------------------------------------------------------- the worker loop


def _taken_over(study: optuna.Study, trial_id: int) -> bool:
    """Whether another worker marked this worker's trial FAIL as stale."""
    trial = study._storage.get_trial(trial_id)
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(ATTR_COUNTED)


def counts(trial: FrozenTrial) -> bool:
    """Whether `trial` takes one of the study's N slots (see the module docstring)."""
    if trial.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(ATTR_COUNTED))


def optimize_exactly(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    *,
    storage_spec: Any = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    catch: tuple[type[Exception], ...] = (),
    on_dead_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    poll_s: float = 1.0,
) -> int:
    """Run trials of `study` in this worker until the study holds `n_trials` counted
    trials and none is running.

    Other workers may run the same loop on the same storage at the same time; together
    they create exactly `n_trials` counted trials. Returns how many this worker ran.
    `storage_spec` is what `open_storage` was given (it picks the claim lock); default:
    the study's storage object. While the last slots are taken by other workers' running
    trials, this one checks every `poll_s` seconds whether they ended or died.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    lock = claim_lock(study._storage if storage_spec is None else storage_spec, study.study_name)
    ran = 0
    current: list[int] = []  # the id of the trial this worker is running
    while True:
        held = True
        current.clear()
        lock.__enter__()
        try:
            fail_dead_trials(study, on_dead_trial)
            # Enqueued (WAITING) trials are run by popping them, not counted as done.
            trials = study.get_trials(deepcopy=False)
            if sum(counts(t) for t in trials) >= n_trials:
                if any(t.state == TrialState.RUNNING for t in trials):
                    lock.__exit__(None, None, None)
                    held = False
                    time.sleep(poll_s)
                    continue
                return ran

            def claimed(trial: optuna.Trial) -> float:
                # The trial exists and carries its owner: the slot is taken, so the
                # other workers may count again while this one trains.
                nonlocal held
                current.append(trial._trial_id)
                for key, value in owner_attrs().items():
                    trial.set_user_attr(key, value)
                held = False
                lock.__exit__(None, None, None)
                try:
                    value = objective(trial)
                except (optuna.TrialPruned, *catch):
                    trial.set_user_attr(ATTR_COUNTED, True)  # a result of the search
                    raise
                trial.set_user_attr(ATTR_COUNTED, True)
                return value

            try:
                # gc_after_trial: a failed (OOM) trial frees its tensors
                study.optimize(claimed, n_trials=1, callbacks=list(callbacks), catch=catch, gc_after_trial=True)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                if not current or not _taken_over(study, current[0]):
                    raise
                # This worker was alive but silent past grace_period (an overloaded machine):
                # another one failed its trial, and the slot is redone. Not a reason to stop.
                logger.warning("trial %d of study %r was failed by another worker (no heartbeat for the "
                               "grace period); its result is dropped", study._storage.get_trial(current[0]).number,
                               study.study_name)
            ran += 1
        finally:
            if held:
                lock.__exit__(None, None, None)
