"""seed_points.py: `runs import` streams a run's points as columns; the counts of a large
import are exact and the stored points are those of seed_db.py's rules applied row by row."""

from __future__ import annotations

import math
import sqlite3

import pytest
from seed_fixtures import SEED_SCHEMA, sha256, write_many_points, write_seed_db

from utils.training.tracking import seed_db, seed_points
from utils.training.tracking.experiment_db import ExperimentDB
from utils.training.tracking.seed_import import check_point, read_seed_db


def test_import_of_2_runs_x_20000_points_has_exact_counts(tmp_path):
    seed = write_many_points(tmp_path / "seed.db", runs=2, points=20_000)
    before = sha256(seed)
    steps, rows = (20_000 - 10) // 4, 4 * ((20_000 - 10) // 4) + 10  # 4997 steps, 19998 rows a run
    with ExperimentDB(tmp_path / "ws.db") as db:
        report = db.import_db(seed)
        assert [r[2] for r in report.imported] == ["bench-0", "bench-1"]
        assert report.rows_read == report.metrics == 2 * rows
        assert report.epoch_placed == 2 * 10  # val/loss and learning_rate at each of 5 epoch ends
        assert report.kept_as_seed_name == 2 * 5  # learning_rate beside lr (train/learning_rate) there
        assert report.bad_rows == report.dropped == report.bad_runs == []
        for _, run_id, _ in report.imported:
            m = db.get_metrics(run_id)
            counts = m.groupby("metric_name").size().to_dict()
            assert counts == {"train_loss": steps, "lr": steps, "grad_norm": steps, "train_accuracy": steps,
                              "val_loss": 5, "learning_rate": 5, "epoch": steps, "elapsed_s": steps}
            assert m.groupby("metric_name").step.max().to_dict()["val_loss"] == steps - 1
            assert m[m.metric_name == "elapsed_s"].value.max() == (steps - 1) // 10  # a second every 10 steps
            run = db.get_run(run_id)
            assert run["final_step"] == steps - 1 and run["best_step"] == steps - 1
            assert math.isclose(run["best_val_loss"], 3.0 / steps)
        again = db.import_db(seed)
        assert again.imported == [] and len(again.skipped) == 2  # dedupe on re-import
    assert sha256(seed) == before


def _reference(db: ExperimentDB, seed_path, src: int) -> int:
    """One run imported by seed_db.py's row-by-row rules (the list form), for comparison."""
    runs, metrics, _ = read_seed_db(seed_path)
    run = next(r for r in runs if r["run_id"] == src)
    good = [p for p in (check_point(m)[0] for m in metrics if m["run_id"] == run["run_id"]) if p]
    rows, _ = seed_db.place_on_steps(good)
    kept, _, _ = seed_db.split_collisions(rows, [p["metric_name"] for p in good])
    created = seed_db.timestamp(run["created_at"])
    run_id = db.log_run(f"ref-{src}", {})
    seed_db.write_points(db, run_id, kept, seed_db.elapsed(kept, created), missing_wall=created or 0.0)
    return run_id


@pytest.mark.parametrize("window", [seed_points.WINDOW, 2])  # 2: many windows of steps
def test_streamed_points_are_those_of_the_row_by_row_rules(tmp_path, monkeypatch, window):
    monkeypatch.setattr(seed_points, "WINDOW", window)
    seed = write_seed_db(tmp_path / "seed.db")
    con = sqlite3.connect(seed)
    for stmt in SEED_SCHEMA[:1]:
        con.execute(stmt)
    rid = con.execute("INSERT INTO runs (run_name, config, created_at) VALUES ('clash', '{}', "
                      "'2025-01-18 10:00:00')").lastrowid
    rows = [("train/learning_rate", 1e-3, 0, 0, "2025-01-18 10:00:01"), ("learning_rate", 2e-3, None, 0, None),
            ("lr", 3e-3, 0, None, "2025-01-18 10:00:02"), ("learning_rate", 4e-3, 0, 0, None),
            ("train/loss", 2.0, None, None, None), ("train/loss", 1.5, None, None, "x"),
            ("val/loss", 1.9, None, 1, "2025-01-18 10:00:05"), ("train/loss", 1.0, 7, 1, "2025-01-18 10:00:09"),
            ("epoch", 9.0, 7, None, None), ("elapsed_s", 1.0, 7, None, None), ("val/loss", 1.8, None, 1, None),
            ("bad", "abc", 1, 1, None)]
    con.executemany("INSERT INTO metrics (run_id, metric_name, value, step, epoch, timestamp) VALUES "
                    "(?, ?, ?, ?, ?, ?)", [(rid, *r) for r in rows])
    # Steps and epochs too large for the one-int64 key and the epoch slots: the sorting paths.
    big = con.execute("INSERT INTO runs (run_name, config) VALUES ('big', '{}')").lastrowid
    con.executemany("INSERT INTO metrics (run_id, metric_name, value, step, epoch, timestamp) VALUES "
                    "(?, ?, ?, ?, ?, ?)", [(big, "train/loss", 1.0, 2**61, 2**40, "2025-01-18 11:00:00"),
                                           (big, "train/loss", 2.0, 2**61, None, None),
                                           (big, "val/loss", 1.5, None, 2**40, None),
                                           (big, "val/loss", 1.4, 3, 7, "2025-01-18 10:59:00")])
    con.commit()
    con.close()
    with ExperimentDB(tmp_path / "ws.db") as db:
        report = db.import_db(seed)
        assert len(report.dropped) == 2 and len(report.bad_rows) == 1  # big: train/loss kept under its seed name
        assert len(report.imported) == 5
        for src, ours, name in report.imported:
            ref = _reference(db, seed, src)
            got, want = db.get_metrics(ours), db.get_metrics(ref)
            assert got.to_dict("list") == want.to_dict("list"), name
