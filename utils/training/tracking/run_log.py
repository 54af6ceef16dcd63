"""One JSON file per run (`runs/NAME/run.json`): the writer.

`RunLogWriter` is a MetricsSink (utils.training.contracts): it appends records in memory
(cheap) and rewrites the file atomically (utils.training.io) at most every
`min_interval_s` seconds, before every checkpoint, and completely at close. The format
is run_log_format.py (documented in docs/run_log_format.md); why this copy of a run's
record exists beside the database is in docs/storage.md.

Reading runs (ours, the database's, llm-foundry's) is readers/ (one adapter per
format); `load_run`, `load_runs`, `run_log_specs` and `RunRecord` stay importable here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.training.io import atomic_write_json
from utils.training.tracking.readers import load_run, load_runs, run_log_specs  # noqa: F401 - re-exported
from utils.training.tracking.readers.llm_foundry import GB_TO_GIB, nanogpt_lr  # noqa: F401 - re-exported
from utils.training.tracking.run_log_format import (  # noqa: F401 - re-exported
    FORMAT,
    VERSION,
    RunLogError,
    is_run_log,
    new_document,
    now_iso,
)
from utils.training.tracking.run_record import RunRecord  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from utils.training.tracking.experiment_db import ExperimentDB


def _plain(value: Any) -> Any:
    """JSON-able copy: numbers as float/int, tensors via .item(), dataclasses via to_dict/asdict."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # torch / numpy scalars
        return value.item()
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(value))
    return str(value)


class RunLogWriter:
    """MetricsSink writing `path` (one JSON document per run).

    On resume (the file exists) it loads the document and appends. start() drops the
    records after the step the run resumed from (run_info["resumed_from_step"]; a fresh
    start drops them all), and records at or after a step that is logged again are
    dropped first, so the log holds one record per step, one checkpoint and one set of
    samples per step, however often the run was killed.

    A run log that does not parse (a disk that filled up, a hand edit) is set aside as
    run.json.corrupt-TIME with a warning naming both files, and its records are rebuilt
    from `db` (an ExperimentDB, the source of truth) when one is given.
    """

    def __init__(self, path, min_interval_s: float = 30.0, config: Any = None, name: str | None = None,
                 db: ExperimentDB | None = None):
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)  # seconds between two rewrites of the file
        self._last_write = time.monotonic()
        self._dirty = False
        self._loaded = False
        default_name = self.path.parent.name if self.path.name == "run.json" else self.path.stem
        doc = self._read_existing(db, name or default_name)
        if doc is not None:
            self.doc = doc
            self._loaded = True
            self.doc.setdefault("resumes", []).append({"time": now_iso()})
        else:
            self.doc = new_document(name or default_name)
        if config is not None:
            self.doc["config"] = _plain(config)

    def _read_existing(self, db: ExperimentDB | None, name: str) -> dict | None:
        """The document on disk; None when there is none. One that does not parse is set
        aside, and what `db` holds of the run is the new document."""
        if not self.path.exists():
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if is_run_log(doc):
                return doc
            problem = "is not a run log of this format"
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            problem = f"does not parse ({type(e).__name__}: {e})"
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        while aside.exists():  # never over an earlier one
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        rebuilt = _doc_from_db(db, name) if db is not None else None
        how = "rebuilt from the experiments database" if rebuilt else "started anew"
        print(f"Run log {self.path} {problem}: set aside as {aside.name}; {how}.", file=sys.stderr, flush=True)
        return rebuilt

    # -- MetricsSink -------------------------------------------------------
    def start(self, run_info: dict[str, Any]) -> None:
        self._resumed = bool(self._loaded and (run_info or {}).get("resumed_from_step"))
        if self._loaded and "resumed_from_step" in (run_info or {}):
            self._drop_after(int(run_info.get("resumed_from_step") or 0))
        # The sinks' ids (db_run_id, wandb_run_id): the W&B sink adds its id to this very
        # dict after this sink started, so it is read again at every write.
        self._tracking = (run_info or {}).get("tracking")
        info = _plain(dict(run_info or {}))
        if "config" in info and not self.doc["config"]:
            self.doc["config"] = info.pop("config")
        if not self.doc["run_info"]:
            self.doc["run_info"] = info
        self.doc["status"] = "running"
        self.doc["ended_at"] = None
        self._write()

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if kind not in ("train", "eval"):
            raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
        records = self.doc[kind]
        step = int(step)
        if records and records[-1]["step"] >= step:
            # Logged again after a resume from an earlier checkpoint: the new run wins.
            records[:] = [r for r in records if r["step"] < step]
        rec = {"step": step, "time": round(time.time(), 3)}
        for k, v in metrics.items():
            if k != "step":
                rec[k] = v if isinstance(v, (int, float, str)) or v is None else _plain(v)
        records.append(rec)
        self._touch()

    def add_samples(self, step: int, samples: list[dict]) -> None:
        step = int(step)
        kept = [s for s in self.doc["samples"] if s.get("step") != step]  # one set per step
        self.doc["samples"] = kept + [{"step": step, **_plain(dict(s))} for s in samples]
        self._touch()

    def add_checkpoint(self, step: int, path: str) -> None:
        kept = [c for c in self.doc["checkpoints"] if c.get("step") != int(step)]
        self.doc["checkpoints"] = kept + [{"step": int(step), "path": str(path), "time": now_iso()}]
        self._touch()

    def flush(self) -> None:
        """Write what is new, at most every min_interval_s: the tracker flushes at every
        evaluation, and rewriting the whole file each time would grow with the run."""
        if self._dirty and time.monotonic() - self._last_write >= self.min_interval_s:
            self._write()

    def sync(self) -> None:
        """Write what is new now, whatever the throttle (before every checkpoint)."""
        if self._dirty:
            self._write()

    def close(self, status: str, summary: dict[str, Any]) -> None:
        """A resumed run keeps the stored summary's fields this process could not know (the
        final_train_loss of a finished run started again logs no step); a fresh run's
        summary is its own."""
        new = _plain(dict(summary or {}))
        old = self.doc.get("summary") if getattr(self, "_resumed", False) else None
        if isinstance(old, dict):
            new = {**old, **{k: v for k, v in new.items() if v is not None or k not in old}}
        self.doc["status"] = str(status)
        self.doc["summary"] = new
        self.doc["ended_at"] = now_iso()
        self._write()  # complete at the end, whatever the throttle

    # -- internals ---------------------------------------------------------
    def _drop_after(self, step: int) -> None:
        for key in ("train", "eval", "checkpoints", "samples"):
            self.doc[key] = [r for r in self.doc[key] if not isinstance(r.get("step"), int) or r["step"] <= step]

    def _touch(self) -> None:
        self._dirty = True
        self.flush()

    def _write(self) -> None:
        if getattr(self, "_tracking", None):
            self.doc["tracking"] = _plain(dict(self._tracking))
        self.doc["updated_at"] = now_iso()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # indent=1: readable, and NaN/Infinity written as Python's json does (read back as such).
        atomic_write_json(self.path, self.doc, indent=1)
        self._last_write = time.monotonic()
        self._dirty = False


def _doc_from_db(db: ExperimentDB, name: str) -> dict | None:
    """A run log document rebuilt from the experiments database's run `name` (metrics,
    checkpoints, samples), or None when the database does not have it."""
    if db.find_run(name) is None:
        return None
    run = db.get_run(name)
    long = db.get_metrics(name)
    rows: dict[str, dict[int, dict]] = {"train": {}, "eval": {}}
    for metric, step, value in zip(long["metric_name"], long["step"].tolist(), long["value"].tolist()):
        kind = "eval" if str(metric).startswith("val_") else "train"
        rows[kind].setdefault(step, {"step": step})[str(metric)] = value
    checkpoints, samples = [], []
    for kind, path, step, meta in db.get_artifacts(name)[["kind", "path", "step", "meta_json"]].itertuples(
            index=False):
        if kind == "checkpoint":
            checkpoints.append({"step": int(step), "path": path})
        elif kind == "samples":
            samples += [{"step": int(step), **s} for s in json.loads(meta or "{}").get("samples", [])]
    return new_document(
        name, status=run["status"], config=run["config"], run_info=run["run_info"],
        train=[rows["train"][s] for s in sorted(rows["train"])], eval=[rows["eval"][s] for s in sorted(rows["eval"])],
        checkpoints=checkpoints, samples=samples, rebuilt_from_db=True)

