"""Readers: one adapter per format a run can be read from, each turning it into a
RunRecord with our names at read time (alias lists live here only, in keys.py).

- run_log.py      our JSON run log (runs/NAME/run.json, any version of the library)
- experiment_db.py a run in the experiments database ("db:NAME"; seed metric names too)
- llm_foundry.py  llm-foundry / nanoGPT training logs
(The seed notebook's experiments.db is imported into ours by tracking/seed_db.py, and
read from there through experiment_db.py.)

`load_run(spec)` picks the adapter; it is also importable from tracking.run_log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.training.tracking.readers.experiment_db import read_db_run
from utils.training.tracking.readers.keys import read_json_object
from utils.training.tracking.readers.llm_foundry import is_llm_foundry, read_llm_foundry
from utils.training.tracking.readers.run_log import read_run_log
from utils.training.tracking.run_log_format import FORMAT, RunLogError
from utils.training.tracking.run_record import RunRecord

if TYPE_CHECKING:
    from utils.training.tracking.experiment_db import ExperimentDB


def load_run(spec: str | Path, db: ExperimentDB | str | os.PathLike | None = None) -> RunRecord:
    """A run log file or run folder, an llm-foundry log (told apart by its keys),
    or "db:NAME" read through `db` (an ExperimentDB or its path). RunLogError (a
    ValueError naming the file) when the file is not a readable run."""
    if isinstance(spec, str) and spec.startswith("db:"):
        if db is None:
            raise ValueError("load_run('db:NAME') needs db= (an ExperimentDB or the path of experiments.db)")
        return read_db_run(db, spec[3:])
    path = Path(spec)
    if path.is_dir():
        path = path / "run.json"
    doc = read_json_object(path)
    if is_llm_foundry(doc):
        return read_llm_foundry(doc, path)
    if doc.get("format") == FORMAT:
        return read_run_log(doc, path)
    raise RunLogError(f"{path}: neither a run log ({FORMAT}) nor an llm-foundry log")


def run_log_specs(folder: str | Path) -> list[Path]:
    """The run logs of a folder: its run.json when it is a run folder (its other JSON
    files, config.json and the report's, are not runs), else its *.json and */run.json."""
    folder = Path(folder)
    if (folder / "run.json").is_file():
        return [folder / "run.json"]
    return sorted(folder.glob("*.json")) + sorted(folder.glob("*/run.json"))


def load_runs(paths_or_folder: Any) -> list[RunRecord]:
    """Every run in a folder (see run_log_specs), or a list of specs."""
    if isinstance(paths_or_folder, (str, Path)) and Path(paths_or_folder).is_dir():
        specs = run_log_specs(paths_or_folder)
    else:
        specs = list(paths_or_folder)
    return [load_run(s) for s in specs]
