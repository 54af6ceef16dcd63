"""Reader of a run in the experiments database ("db:NAME") into a RunRecord: the long
metrics become a train frame and an eval frame (val_* names), and points logged under
the seed notebook's names (db.log_metric(run, "val/loss", ...)) read as ours."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from utils.training.tracking.readers.keys import first_present
from utils.training.tracking.readers.run_log import caveat, hardware_facts, model_facts, warmup_steps
from utils.training.tracking.run_record import RunRecord

if TYPE_CHECKING:
    from utils.training.tracking.experiment_db import ExperimentDB


def read_db_run(db: ExperimentDB | str | os.PathLike, name: str) -> RunRecord:
    """Run `name` of `db` (an ExperimentDB or the path of one) -> RunRecord. KeyError (our
    RunNotFoundError) when the database has no such run."""
    if isinstance(db, (str, os.PathLike)):
        from utils.training.tracking.experiment_db import ExperimentDB

        db = ExperimentDB(Path(db))
    run = db.get_run(name)
    if not run:
        raise KeyError(f"no run {name!r} in the experiment database")
    run_id = first_present(run, "run_id", "id")
    config = _parsed(run.get("config"))
    info = _parsed(run.get("run_info"))
    train, ev = _frames(db.get_metrics(run_id))
    return RunRecord(
        name=run.get("run_name") or run.get("name") or name,
        source="db",
        config=config,
        model=model_facts(config, info),
        hardware=hardware_facts(info),
        train=train,
        eval=ev,
        summary={k: run[k] for k in ("best_val_loss", "final_train_loss", "total_time") if k in run},
        status=run.get("status", "unknown"),
        warmup_steps=warmup_steps(config, info),
        path=None,
        caveat=caveat(config, info),
        max_grad_norm=first_present(config, "max_grad_norm", "grad_clip"),  # ours; older logs: grad_clip
    )


def _parsed(value: Any) -> dict:
    """A JSON column as a dict (our ExperimentDB parses them; another store may not)."""
    if isinstance(value, str):
        return json.loads(value)
    return value or {}


def _frames(long: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, eval) wide frames, indexed by a step column, from get_metrics' long frame."""
    empty = pd.DataFrame({"step": pd.Series(dtype="int64")})
    if long is None or long.empty:
        return empty, empty.copy()
    from utils.training.tracking.seed_db import SEED_TO_OURS

    names = set(long["metric_name"].unique())
    rename = {k: v for k, v in SEED_TO_OURS.items() if k in names and v not in names}
    if rename:
        long = long.assign(metric_name=long["metric_name"].astype(str).replace(rename))
    is_val = long["metric_name"].str.startswith("val_")
    wide = {}
    for key, part in (("train", long[~is_val]), ("eval", long[is_val])):
        if part.empty:
            continue
        w = part.pivot_table(index="step", columns="metric_name", values="value", aggfunc="last", dropna=False)
        wide[key] = w.reset_index().rename_axis(columns=None)
    return wide.get("train", empty), wide.get("eval", empty.copy())
