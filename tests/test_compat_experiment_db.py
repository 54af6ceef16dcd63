"""The seed notebook's ExperimentDB (compat/experiment_db.py) as its users meet it: its
errors, its result shapes, its epoch-only points on our step axis, the raw SQL they run on
the file, and no point lost to a bad one."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from seed_fixtures import SEED_SCHEMA

from utils.training.compat.experiment_db import BOOKKEEPING, ExperimentDB
from utils.training.tracking import experiment_db as core
from utils.training.tracking.db_schema import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture
def db(tmp_path):
    with ExperimentDB(tmp_path / "experiments.db") as d:
        yield d


def seed_tracking_example(db, run_id: int, epoch_first: bool = True) -> None:
    """The seed's tracking example (its docs and examples): per epoch, the epoch metrics with
    the epoch only, then the per-batch losses with a step and the epoch (epoch_first=False:
    the batches first). val/loss is lowest in epoch 2."""
    def epoch_metrics(epoch, train, val):
        db.log_metric(run_id, "train/loss", train, epoch=epoch)
        db.log_metric(run_id, "val/loss", val, epoch=epoch)
        db.log_metric(run_id, "learning_rate", 1e-3 * (0.5 ** epoch), epoch=epoch)

    for epoch, (train, val) in enumerate([(3.0, 3.1), (2.6, 2.8), (2.3, 2.5), (2.1, 2.6)]):
        if epoch_first:
            epoch_metrics(epoch, train, val)
        for i in range(5):
            db.log_metric(run_id, "train/batch_loss", train + 0.1 * (4 - i), step=5 * epoch + i, epoch=epoch)
        if not epoch_first:
            epoch_metrics(epoch, train, val)


def test_errors_say_what_the_seed_says(db):
    with pytest.raises(ValueError, match="Run 999 not found"):
        db.get_run(999)
    with pytest.raises(ValueError, match="No runs found with metric"):
        db.get_best_run("val/loss")
    run = db.log_run("r", {})
    db.log_metric(run, "train/loss", 1.0, step=0)
    with pytest.raises(ValueError, match="No runs found with metric 'val/accuracy'"):
        db.get_best_run("val/accuracy", mode="max")
    with pytest.raises(ValueError, match="mode must be"):
        db.get_best_run("train/loss", mode="best")


@pytest.mark.parametrize("epoch_first", [True, False])
def test_best_epoch_of_the_seed_tracking_example_is_2(db, epoch_first):
    a = db.log_run("seed-example", {"learning_rate": 1e-3})
    seed_tracking_example(db, a, epoch_first)
    b = db.log_run("worse", {})
    for e, v in enumerate([3.5, 3.0]):
        db.log_metric(b, "val/loss", v, epoch=e)
    best = db.get_best_run("val/loss", mode="min")
    assert (best["run_id"], best["run_name"], best["best_value"], best["best_epoch"]) == (a, "seed-example", 2.5, 2)
    assert best["config"] == {"learning_rate": 1e-3} and best["best_step"] == 14  # epoch 2's last batch
    row = db.compare_runs([a, b, 12345]).set_index("run_id")
    assert row.loc[a, "best_epoch"] == 2 and row.loc[a, "total_epochs"] == 4
    assert (row.loc[a, "final_train_loss"], row.loc[a, "final_val_loss"], row.loc[a, "best_val_loss"]) == (2.1, 2.6, 2.5)
    assert row.loc[b, "best_epoch"] == 1 and list(row.index) == [a, b]
    val = db.get_metrics(a, "val/loss")
    assert val["epoch"].tolist() == [0, 1, 2, 3] and val["step"].tolist() == [4, 9, 14, 19]
    assert db.get_best_run("train/loss", mode="max")["best_epoch"] == 0


@pytest.mark.parametrize("epoch_first", [True, False])
def test_epoch_only_points_land_where_runs_import_puts_them(tmp_path, epoch_first):
    """The same calls, once through the seed API and once written by the seed into its own
    file and imported: the same (name, step, epoch) points (one rule, seed_db.EpochAxis)."""
    seed_file = tmp_path / "seed" / "experiments.db"
    seed_file.parent.mkdir()
    con = sqlite3.connect(seed_file)
    for stmt in SEED_SCHEMA:
        con.execute(stmt)
    con.execute("INSERT INTO runs (run_name, config) VALUES ('seed-example', '{}')")

    class SeedWriter:  # what the seed's log_metric does: one INSERT with step and epoch as given
        def log_metric(self, run_id, name, value, step=None, epoch=None):
            con.execute("INSERT INTO metrics (run_id, metric_name, value, step, epoch) VALUES (?, ?, ?, ?, ?)",
                        (run_id, name, value, step, epoch))

    seed_tracking_example(SeedWriter(), 1, epoch_first)
    con.commit()
    con.close()
    with ExperimentDB(tmp_path / "live.db") as live, core.ExperimentDB(tmp_path / "imported.db") as imported:
        seed_tracking_example(live, live.log_run("seed-example", {}), epoch_first)
        imported.import_db(seed_file)
        for name, ours in (("val/loss", "val_loss"), ("train/loss", "train_loss"), ("train/batch_loss", None)):
            got = live.get_metrics(1, name)[["step", "value"]]
            want = imported.get_metrics(1, ours or name)[["step", "value"]]
            assert got["step"].tolist() == want["step"].tolist()
            assert got["value"].tolist() == pytest.approx(want["value"].tolist())
        assert (live.get_metrics(1, "epoch")["value"].tolist()
                == imported.get_metrics(1, "epoch")["value"].tolist() == [float(e) for e in range(4) for _ in range(5)])


def test_get_metrics_returns_what_the_caller_logged_in_the_seed_columns(db, tmp_path):
    run = db.log_run("r", {})
    seed_tracking_example(db, run)
    df = db.get_metrics(run)
    assert list(df.columns) == ["metric_id", "run_id", "metric_name", "value", "step", "epoch", "timestamp"]
    assert set(df["metric_name"]) == {"train/batch_loss", "train/loss", "val/loss", "learning_rate"}
    assert len(df) == 4 * (5 + 3) and df["metric_id"].tolist() == list(range(1, 33))
    assert df["run_id"].unique().tolist() == [run] and df["epoch"].notna().all()
    assert len(df["timestamp"].iloc[0]) == len("2025-01-15 14:30:00")
    # In the order logged: each epoch's metrics, then its batches.
    assert df["metric_name"].tolist()[:8] == ["train/loss", "val/loss", "learning_rate"] + ["train/batch_loss"] * 5
    # A run with the bookkeeping series (an import writes elapsed_s and epoch): still only the caller's.
    from seed_fixtures import write_seed_db

    (tmp_path / "seed").mkdir()
    report = db.import_db(write_seed_db(tmp_path / "seed" / "experiments.db"))
    imported = report.imported[0][1]
    assert {"epoch", "elapsed_s"} <= set(core.ExperimentDB.metric_names(db, imported))
    assert not set(BOOKKEEPING) & set(db.get_metrics(imported)["metric_name"])


def test_list_runs_and_get_run_in_the_seed_shapes(db):
    for i in range(12):
        db.log_run(f"run-{i}", {"i": i}, notes=f"note {i}" if i % 2 else "")
    runs = db.list_runs()
    assert list(runs.columns) == ["run_id", "run_name", "created_at", "status", "notes"]
    assert len(runs) == 10 and runs["run_name"].iloc[0] == "run-11" and runs["notes"].iloc[0] == "note 11"
    assert runs["notes"].iloc[1] == "" and len(db.list_runs(limit=3)) == 3
    run = db.get_run(2)
    assert (run["run_name"], run["config"], run["notes"], run["status"]) == ("run-1", {"i": 1}, "note 1", "running")
    assert len(run["created_at"]) == len("2025-01-15 14:30:00")
    db.log_run("sweep-a", {}, sweep_id="s1", sweep_params={"lr": 1e-3})
    sweep = db.get_runs_for_sweep("s1")
    assert sweep["run_name"].tolist() == ["sweep-a"] and json.loads(sweep["sweep_params"][0]) == {"lr": 1e-3}


def test_raw_sql_of_the_seed_reads_our_file(db):
    run = db.log_run("r", {"learning_rate": 5e-5, "batch_size": 4}, notes="hello")
    db.log_metric(run, "val/loss", 2.5, epoch=0)
    db.log_artifact(run, "checkpoint", Path("checkpoints") / "epoch_0.pt", {"epoch": 0, "val_loss": 2.5})
    db.log_artifact(run, "plot", "curves.png")
    db.flush()
    raw = sqlite3.connect(db.path)
    (config,) = raw.execute("SELECT config FROM runs WHERE run_id = ?", (run,)).fetchone()
    assert json.loads(config) == {"learning_rate": 5e-5, "batch_size": 4}
    assert raw.execute("SELECT run_id, run_name, status, notes FROM runs").fetchall() == [(run, "r", "running", "hello")]
    arts = raw.execute("SELECT artifact_type, filepath, metadata FROM artifacts WHERE run_id = ? ORDER BY artifact_id",
                       (run,)).fetchall()
    assert arts[0][:2] == ("checkpoint", str(Path("checkpoints") / "epoch_0.pt"))
    assert json.loads(arts[0][2]) == {"epoch": 0, "val_loss": 2.5} and arts[1] == ("plot", "curves.png", None)
    assert raw.execute("SELECT metric_name, value FROM metrics WHERE metric_name = 'val/loss'").fetchall() == [
        ("val/loss", 2.5)]
    assert raw.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'idx_metrics_run_name'").fetchone()
    raw.close()


def test_a_v2_database_gets_the_seed_columns_keeping_its_data(tmp_path):
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path)
    for version in (0, 1):
        raw.executescript(MIGRATIONS[version])
    raw.executescript("""
        INSERT INTO runs (run_name, created_at, updated_at, config_json, config_hash, run_info_json)
            VALUES ('old', 0, 0, '{"lr": 0.1}', 'h', '{"notes": "v2 run"}');
        INSERT INTO artifacts (run_id, kind, path, step, created_at, meta_json) VALUES (1, 'plot', 'a.png', NULL, 0, '{"x": 1}');
        PRAGMA user_version = 2;""")
    raw.close()
    with ExperimentDB(path) as d:
        assert d.schema_version == SCHEMA_VERSION == 3
        assert d.conn.execute("SELECT config, notes FROM runs").fetchone() == ('{"lr": 0.1}', "v2 run")
        assert d.conn.execute("SELECT artifact_type, filepath, metadata FROM artifacts").fetchone() == (
            "plot", "a.png", '{"x": 1}')
        assert d.list_runs()["notes"].tolist() == ["v2 run"] and d.integrity_check() == "ok"


@pytest.mark.parametrize("bad", [
    {"step": 2**70}, {"step": -1}, {"step": 1.5}, {"step": math.nan}, {"step": math.inf}, {"step": "7"},
    {"run_id": 999}, {"run_id": "abc"}, {"epoch": 2**64}, {"epoch": math.nan}])
def test_one_bad_point_is_refused_at_the_call_and_loses_nothing(tmp_path, bad):
    path = tmp_path / "e.db"
    db = ExperimentDB(path, flush_rows=50)  # some points flushed, some still buffered when the bad one comes
    run = db.log_run("r", {})
    for i in range(100):
        db.log_metric(run, "train/loss", 1.0 / (i + 1), step=i)
    call = {"run_id": run, "step": 100, **bad}
    what = "run" if "run_id" in bad else "epoch" if "epoch" in bad else "step"
    with pytest.raises((TypeError, ValueError, KeyError), match=what):
        db.log_metric(call["run_id"], "train/loss", 0.5, step=call["step"], epoch=call.get("epoch"))
    for i in range(101, 112):
        db.log_metric(run, "train/loss", 0.1, step=i)
    db.close()
    with ExperimentDB(path) as again:  # 111 good points, every one stored
        assert len(again.get_metrics(run, "train/loss")) == 111
        assert again.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 111


def test_a_point_with_a_bad_value_is_refused_and_the_axis_unchanged(db):
    run = db.log_run("r", {})
    db.log_metric(run, "train/batch_loss", 3.0, step=4, epoch=0)
    with pytest.raises(TypeError, match="numbers"):
        db.log_metric(run, "val/loss", "x", step=9, epoch=0)
    db.log_metric(run, "val/loss", 2.0, epoch=0)
    assert db.get_metrics(run, "val/loss")["step"].tolist() == [4]


def test_the_seed_path_continues_a_run_it_reopens(tmp_path):
    path = tmp_path / "e.db"
    with ExperimentDB(path) as d:
        run = d.log_run("r", {})
        for i in range(5):
            d.log_metric(run, "train/batch_loss", 3.0, step=i, epoch=0)
        d.log_metric(run, "val/loss", 2.0)  # neither step nor epoch: step 0
    with ExperimentDB(path) as d:
        d.log_metric(run, "val/loss", 1.5, epoch=0)  # the last step of epoch 0, read back from the file
        d.log_metric(run, "val/loss", 1.4)  # the metric's next step
        assert d.get_metrics(run, "val/loss")["step"].tolist() == [0, 4, 5]


def test_held_epoch_points_are_written_by_close_and_by_the_next_epoch(tmp_path):
    path = tmp_path / "e.db"
    d = ExperimentDB(path, flush_rows=1)  # every point the store is handed is written at once
    run = d.log_run("r", {})
    d.log_metric(run, "val/loss", 2.0, epoch=0)  # held: epoch 0's batches come next
    for i in range(3):
        d.log_metric(run, "train/batch_loss", 3.0, step=i, epoch=0)
    raw = sqlite3.connect(path)
    count = "SELECT COUNT(*) FROM metrics WHERE name = 'val/loss'"
    assert raw.execute(count).fetchone()[0] == 0
    d.log_metric(run, "train/batch_loss", 2.9, step=3, epoch=1)  # epoch 1 begins: epoch 0 has ended
    assert raw.execute("SELECT step FROM metrics WHERE name = 'val/loss'").fetchall() == [(2,)]
    d.log_metric(run, "val/loss", 1.5, epoch=1)
    d.close()
    assert raw.execute("SELECT step, value FROM metrics WHERE name = 'val/loss' ORDER BY step").fetchall() == [
        (2, 2.0), (3, 1.5)]
    raw.close()


def test_the_seed_example_script_end_to_end(tmp_path, monkeypatch):
    """The seed's examples/experiment_tracking_example.py, step by step: a new
    ExperimentDB('experiments.db') per section on the same file, none closed."""
    monkeypatch.chdir(tmp_path)
    db = ExperimentDB("experiments.db")
    run_id = db.log_run(run_name="baseline-v1", config={"learning_rate": 5e-5}, notes="Initial baseline")
    for epoch in range(3):
        train_loss, val_loss = 0.5 - epoch * 0.1, 0.45 - epoch * 0.08
        db.log_metric(run_id, "train/loss", train_loss, epoch=epoch)
        db.log_metric(run_id, "val/loss", val_loss, epoch=epoch)
        db.log_metric(run_id, "val/accuracy", 0.75 + epoch * 0.05, epoch=epoch)
        for step in range(10):
            db.log_metric(run_id, "train/batch_loss", train_loss + step * 0.01, step=epoch * 10 + step, epoch=epoch)
    db.log_artifact(run_id, "checkpoint", "checkpoints/epoch_2.pt", metadata={"epoch": 2, "val_loss": 0.29})
    db.update_run_status(run_id, "completed")

    db = ExperimentDB("experiments.db")
    run_ids = []
    for name, final in (("lr-1e4", 0.55), ("lr-5e5", 0.52), ("lr-1e5-bs8", 0.58)):
        rid = db.log_run(name, {"name": name}, notes=f"Testing {name}")
        run_ids.append(rid)
        for epoch in range(5):
            db.log_metric(rid, "val/loss", final - epoch * 0.02, epoch=epoch)
        db.update_run_status(rid, "completed")
    comparison = db.compare_runs(run_ids)
    assert comparison["run_name"].tolist() == ["lr-1e4", "lr-5e5", "lr-1e5-bs8"]
    assert comparison["best_epoch"].tolist() == [4, 4, 4]
    assert comparison["final_val_loss"].tolist() == pytest.approx([0.47, 0.44, 0.50])

    best = ExperimentDB("experiments.db").get_best_run("val/loss", mode="min")
    assert (best["run_name"], best["best_epoch"]) == ("baseline-v1", 2)
    assert best["best_value"] == pytest.approx(0.29) and best["config"] == {"learning_rate": 5e-5}

    db = ExperimentDB("experiments.db")
    recent = db.list_runs(limit=5)
    assert recent["run_name"].tolist() == ["lr-1e5-bs8", "lr-5e5", "lr-1e4", "baseline-v1"]
    first = recent.iloc[-1]["run_id"]  # a numpy integer, as the example passes it
    assert len(db.get_metrics(first)) == 3 * 3 + 30
    train_loss = db.get_metrics(first, "train/loss")
    assert train_loss["epoch"].tolist() == [0, 1, 2] and train_loss["value"].tolist() == pytest.approx([0.5, 0.4, 0.3])
