"""The JSON run log's format (docs/run_log_format.md): its name and version, the empty
document, and the check a reader makes before trusting one. Shared by the writer
(run_log.RunLogWriter) and the reader (readers/run_log.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT = "slm-run-log"
VERSION = 1
RECORD_LISTS = ("train", "eval", "checkpoints", "samples")  # one entry per step in each


class RunLogError(ValueError):
    """A file that cannot be read as a run: the message names the file and what is wrong."""


def now_iso() -> str:
    """The format's timestamps: ISO-8601, UTC, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_document(name: str, **fields: Any) -> dict[str, Any]:
    """An empty run log for run `name`; `fields` replace the defaults (status, config, ...)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "status": "running",
        "created_at": now_iso(),
        "updated_at": None,
        "ended_at": None,
        "config": {},
        "run_info": {},
        "resumes": [],
        "train": [],
        "eval": [],
        "checkpoints": [],
        "samples": [],
        "summary": {},
    }
    doc.update(fields)
    return doc


def is_run_log(doc: Any) -> bool:
    """A document of this format whose record lists are lists (what the writer appends to)."""
    return isinstance(doc, dict) and doc.get("format") == FORMAT and all(
        isinstance(doc.get(k), list) for k in RECORD_LISTS)


def check_records(doc: dict, path: Path) -> None:
    """Steps are integers and metric values numbers (or null): a string where a loss
    should be is named here (RunLogError), not found by a plot's traceback."""
    for kind in ("train", "eval"):
        records = doc.get(kind, [])
        if not isinstance(records, list):
            raise RunLogError(f"{path}: {kind!r} is a {type(records).__name__}, not a list of records")
        for i, r in enumerate(records):
            if not isinstance(r, dict) or isinstance(r.get("step"), bool) or not isinstance(r.get("step"), int):
                raise RunLogError(f"{path}: {kind} record {i} has no integer step: {str(r)[:80]}")
            for k, v in r.items():
                if k != "time" and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise RunLogError(f"{path}: {kind} record at step {r['step']}: {k} is {v!r:.60}, not a number")
