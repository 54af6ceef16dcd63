"""A full disk met while training, said in one line: what was being written, where, and
that freeing space and running the same command again resumes (the last checkpoint and
every committed point are kept: checkpoints and run logs are written atomically, the
database in transactions)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from utils.training.io import is_temp_name

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
FULL_WORDS = ("database or disk is full", "no space left on device", "disk quota exceeded", "file write failed")


def _chain(e: BaseException | None):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def full_disk_error(e: BaseException) -> BaseException | None:
    """The first exception in `e`'s chain (the one raised first: a checkpoint's ENOSPC, not
    the database write of the teardown that followed it) saying the disk or quota is full,
    or None."""
    found = None
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in FULL_ERRNOS:
            found = x
        elif isinstance(x, (sqlite3.OperationalError, OSError, RuntimeError)) and any(
                w in str(x).lower() for w in FULL_WORDS):
            found = x if not (isinstance(found, OSError) and found.filename) else found
    return found


def what_is_written(path: Path) -> str:
    """The kind of file at `path`, in the words of docs/storage.md."""
    name, parts = path.name, set(path.parts)
    if name.endswith((".db", ".db-wal", ".db-journal")):
        return "metric points (the experiments database)"
    if name.endswith((".pt", ".sha256")) or "checkpoints" in parts:
        return "a checkpoint"
    if name in ("run.json", "metrics_history.json", "text_samples.json"):
        return "the run log"
    if name.endswith((".png", ".pdf", ".svg")):
        return "a figure"
    if "model" in parts:
        return "the exported model"
    if "datasets" in parts or "tokenizers" in parts:
        return "the token cache"
    return "a file"


RESUME = "Free space and run again to resume; the last checkpoint and the points stored before it are kept"


def describe_full_disk(e: BaseException, db_path: Path, then: str = RESUME) -> str | None:
    """One line for a full disk in `e`'s chain (None if the error is something else), ending
    with `then` (what to do). A sqlite3 error names no file: it is the database at `db_path`."""
    cause = full_disk_error(e)
    if cause is None:
        return None
    where = Path(cause.filename) if isinstance(cause, OSError) and cause.filename else None
    if where is not None and is_temp_name(where.name):  # the atomic write's temp file: name the file it makes
        where = where.with_name(where.name[1:].rsplit(".", 2)[0])
    if where is None:
        where = db_path if isinstance(cause, sqlite3.Error) or "database" in str(cause) else None
    target = f"{what_is_written(where)} to {where}" if where else f"({cause})"
    return f"the disk is full: writing {target} failed ({cause}). {then}"
