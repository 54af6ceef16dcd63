"""Where an Optuna study lives, and the lock under which workers share it.

A study is named (`--study-name`) and lives in one storage, given as a *spec*:

    PATH.journal / PATH.log    a journal file (JournalStorage + JournalFileBackend).
                               One process, or several worker processes on ONE machine.
    sqlite:///PATH.db          SQLite. One process (several work, but SQLite serialises
                               every write; prefer the journal file for parallel workers).
    postgresql://U:P@HOST/DB   an RDB server. Worker processes on SEVERAL machines.
                               (needs the psycopg 3 driver: `pip install "psycopg[binary]"`;
                               SQLAlchemy 2.1 maps postgresql:// to it)

The loop that keeps a study at exactly N trials is workers.py's; it counts and creates
trials under the storage's claim lock:

* journal file / SQLite: an `fcntl.flock` on `SPEC.claim.lock` next to the file (the
  kernel drops it when a process dies, so a killed worker never blocks the rest);
* PostgreSQL: a session advisory lock (`pg_advisory_lock`), dropped with the
  connection when a worker dies. Optuna's schema is created under one too, so workers
  started in the same second on an empty database do not race.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

logger = logging.getLogger(__name__)

__all__ = ["JOURNAL_SUFFIXES", "RDB_PREFIXES", "JournalFileStorage", "StorageSpec", "StorageSpecError",
           "claim_lock", "open_storage", "quiet_experimental", "spec_kind"]

JOURNAL_SUFFIXES = (".journal", ".log")
RDB_PREFIXES = ("sqlite:///", "postgresql://", "postgresql+", "postgres://", "mysql://", "mysql+")

# What open_storage takes: a journal path or a database URL, an Optuna storage as is, or
# None (in memory).
StorageSpec = str | os.PathLike[str] | BaseStorage | None


class StorageSpecError(ValueError):
    """The storage spec is not one of the accepted forms."""


class JournalFileStorage(JournalStorage):
    """A journal file storage that knows its file: its claim lock lies next to it."""

    def __init__(self, path: Path):
        super().__init__(JournalFileBackend(str(path)))
        self.path = path


def spec_kind(spec: StorageSpec) -> str:
    """What `spec` names: 'memory' (None), 'storage' (an Optuna storage object),
    'journal', 'sqlite', 'postgresql' or 'rdb' (another SQLAlchemy URL). Raises
    StorageSpecError, naming the accepted forms, for anything else."""
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
    spec: StorageSpec,
    *,
    heartbeat_interval: int = 30,
    grace_period: int = 120,
) -> BaseStorage:
    """The Optuna storage for `spec` (see the module docstring). None: in memory.

    RDB storages get a heartbeat so that a trial whose worker died is failed by another
    worker after `grace_period` seconds of silence.
    """
    kind = spec_kind(spec)
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "storage":
        return spec  # type: ignore[return-value]
    text = os.fspath(spec)  # type: ignore[arg-type]
    if kind == "journal":
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalFileStorage(path)
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
    with quiet_experimental(), schema_lock:
        return _RetryingRDBStorage(
            text,
            # A server restart kills every pooled connection: test each at checkout and
            # reconnect, or the next beat fails and Optuna's heartbeat thread dies with it.
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_log_stale_trial,
        )


HEARTBEAT_TRIES = 4  # a beat is tried this often, pausing min(interval, 10 s) between tries
_pause = time.sleep  # the pause between tries (a test's seam)


class _RetryingRDBStorage(RDBStorage):
    """An RDBStorage whose heartbeat outlives a server that is down for seconds (a restart):
    Optuna's heartbeat thread dies on the first failed beat and the trial then beats no more."""

    def record_heartbeat(self, trial_id: int) -> None:
        wait = min(self.heartbeat_interval or 1, 10)
        for attempt in range(1, HEARTBEAT_TRIES + 1):
            try:
                return super().record_heartbeat(trial_id)
            except optuna.exceptions.StorageInternalError as e:
                if attempt == HEARTBEAT_TRIES:
                    raise
                logger.warning("heartbeat of trial %d failed (%s); retrying in %d s (%d of %d)",
                               trial_id, str(e.__cause__ or e).splitlines()[0], wait, attempt, HEARTBEAT_TRIES - 1)
                _pause(wait)


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
def quiet_experimental() -> Iterator[None]:
    """Optuna's ExperimentalWarning silenced: heartbeat_interval and fail_stale_trials are
    still flagged experimental, and the warning says nothing to our users."""
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


def claim_lock(spec: StorageSpec, study_name: str) -> contextlib.AbstractContextManager[Any]:
    """The lock under which a worker counts the study's trials and creates the next one.
    `spec` as open_storage takes it, or the storage it returned; another storage object
    gets a lock shared by the threads of this process only."""
    if isinstance(spec, JournalFileStorage):
        spec = spec.path
    elif isinstance(spec, RDBStorage):
        spec = spec.url
    kind = spec_kind(spec)
    if kind in ("journal", "sqlite"):
        return _FileClaimLock(Path(os.fspath(spec).removeprefix("sqlite:///") + ".claim.lock").expanduser())
    if kind == "postgresql":
        return _AdvisoryClaimLock(os.fspath(spec), study_name)
    if kind == "rdb":
        logger.warning(
            "no cross-machine claim lock for %s: the trial count may overshoot by up to workers-1; "
            "use PostgreSQL for exact counts across machines", os.fspath(spec).split("://")[0]
        )
    return _THREAD_LOCKS.setdefault(id(spec), threading.Lock())


_THREAD_LOCKS: dict[int, threading.Lock] = {}
