"""ExperimentDB's open-time checks (a file it does not own is left byte-identical) and the
import of a seed notebook experiments.db (seed_db.py), down to runs list/plot/compare."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest
from seed_fixtures import SEED_SCHEMA, files_next_to, sha256, write_seed_db

from utils.training.cli import EXIT_OK, EXIT_USAGE, main
from utils.training.compat.experiment_db import ExperimentDB as SeedExperimentDB
from utils.training.tracking.db_file import DatabaseFileError
from utils.training.tracking.experiment_db import ExperimentDB


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def seed_path(tmp_path):
    (tmp_path / "seed").mkdir()
    return write_seed_db(tmp_path / "seed" / "experiments.db")


# -- open-time checks -----------------------------------------------------------------------
def test_seed_database_is_refused_untouched_with_the_import_command(seed_path):
    before, neighbours = sha256(seed_path), files_next_to(seed_path)
    with pytest.raises(DatabaseFileError) as err:
        ExperimentDB(seed_path)
    msg = str(err.value)
    assert str(seed_path) in msg and "seed notebook" in msg and f"runs import {seed_path}" in msg
    assert sha256(seed_path) == before and files_next_to(seed_path) == neighbours  # no -wal, -shm, -journal
    with sqlite3.connect(seed_path) as raw:  # still the seed's rollback-journal database
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_other_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        raw.execute("CREATE TABLE events (t REAL)")
    before = sha256(path)
    with pytest.raises(DatabaseFileError, match=r"another schema \(tables: events, runs\)") as err:
        ExperimentDB(path)
    assert str(path) in str(err.value) and sha256(path) == before and files_next_to(path) == ["other.db"]


@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory", "empty"])
def test_bad_files_name_the_file(tmp_path, kind):
    path = tmp_path / "experiments.db"
    if kind == "garbage":
        path.write_bytes(b"this is a CSV, not a database\n1,2,3\n")
    elif kind == "truncated":
        with ExperimentDB(tmp_path / "good.db") as db:
            db.log_run("r", {"a": 1})
        data = (tmp_path / "good.db").read_bytes()
        assert len(data) > 8192
        path.write_bytes(data[:5000])
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"")
    if kind == "empty":  # SQLite's empty database: ours to create
        with ExperimentDB(path) as db:
            assert db.log_run("fresh", {}) == 1
        return
    before = None if kind == "directory" else sha256(path)
    expected = {"garbage": "is not a SQLite database", "truncated": "truncated SQLite database",
                "directory": "is a directory"}[kind]
    with pytest.raises(DatabaseFileError, match=expected) as err:
        ExperimentDB(path)
    assert str(path) in str(err.value)
    assert str(path) in err.value._render_traceback_()[0]  # what a notebook cell shows
    if before is not None:
        assert sha256(path) == before


def test_read_only_database_says_so_at_open(tmp_path):
    path = tmp_path / "experiments.db"
    with ExperimentDB(path) as db:
        db.log_run("r", {})
    # Root ignores permission bits; the immutable attribute stops root too.
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("chattr +i not available here")
    try:
        with pytest.raises(DatabaseFileError, match="read-only") as err:
            ExperimentDB(path)
        assert str(path) in str(err.value)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_cli_refuses_bad_database_with_exit_2_before_building_anything(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "experiments.db").write_bytes(b"garbage" * 100)
    assert main(["runs", "list", "--workspace", str(ws)]) == EXIT_USAGE
    assert "is not a SQLite database" in capsys.readouterr().err
    assert main(["train", "--test", "--workspace", str(ws), "--no-progress", "--no-export"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(ws / "experiments.db") in err and "is not a SQLite database" in err
    # The workspace folders exist, empty: no tokenizer, token cache, run log or checkpoint was written.
    assert [p.name for p in ws.rglob("*") if p.is_file()] == ["experiments.db"]


# -- import ------------------------------------------------------------------------------------
def test_import_copies_runs_metrics_artifacts_and_leaves_the_source(tmp_path, seed_path):
    before = sha256(seed_path)
    with ExperimentDB(tmp_path / "ours.db") as db:
        db.log_run("baseline", {"ours": True})  # the name is taken: the seed's two become -2 and -3
        report = db.import_db(seed_path)
        assert sha256(seed_path) == before and files_next_to(seed_path) == ["experiments.db"]
        assert [r[2] for r in report.imported] == ["baseline-2", "baseline-3", "crashed"]
        assert report.renamed == {1: ("baseline", "baseline-2"), 2: ("baseline", "baseline-3")}
        assert report.artifacts == 1 and report.metrics == 9 + 14 + 1 and report.epoch_placed == 9 + 4 + 1
        assert "renamed 'baseline-2'" in str(report)

        a = db.get_run("baseline-2")
        assert a["config"] == {"learning_rate": 5e-5, "batch_size": 4, "epochs": 3} and a["notes"] == "first try"
        assert a["created_at"] == utc("2025-01-15 14:30:22") and a["status"] == "completed"
        # Epoch-only run: the epoch is the step; the epoch is kept as a column.
        val = db.get_metrics("baseline-2", "val_loss")
        assert val["step"].tolist() == [0, 1, 2] and val["value"].tolist() == [3.2, 2.8, 2.9]
        assert db.get_metrics("baseline-2", "epoch")["value"].tolist() == [0, 1, 2]
        assert val["wall_time"].iloc[0] == utc("2025-01-15 14:31:00")
        assert (a["best_val_loss"], a["best_step"]) == (2.8, 1)
        # Steps with epochs: an epoch-only point goes to the last step of its epoch.
        b = db.get_run("baseline-3")
        tl = db.get_metrics(b["run_id"], "train_loss")
        assert tl["step"].tolist() == [4, 9] and tl["value"].tolist() == [2.9, 2.4]
        assert len(db.get_metrics(b["run_id"], "train/batch_loss")) == 10  # unknown names kept as they are
        art = db.get_artifacts(b["run_id"])
        assert art["path"].tolist() == ["checkpoints/epoch_1.pt"] and '"val_loss": 2.55' in art["meta_json"][0]
        assert art["created_at"][0] == utc("2025-01-16 09:10:00")
        crashed = db.get_run("crashed")
        assert crashed["status"] == "interrupted" and crashed["summary"]["seed_status"] == "running"
        # The seed's API reads the imported runs under the seed's names.
        with SeedExperimentDB(db.path) as seed:
            assert seed.get_metrics(b["run_id"], "val/loss")["value"].tolist() == pytest.approx([2.95, 2.55])
            cmp = seed.compare_runs([a["run_id"], b["run_id"], 999])
            assert cmp["run_name"].tolist() == ["baseline-2", "baseline-3"]
            assert cmp["best_epoch"].tolist() == [1, 1] and cmp["total_epochs"].tolist() == [3, 2]
        # Importing the same file again adds nothing.
        again = db.import_db(seed_path)
        assert again.imported == [] and len(again.skipped) == 3 and len(db.list_runs()) == 4
    assert sha256(seed_path) == before


def test_cli_import_then_list_plot_compare(tmp_path, seed_path, capsys):
    ws = tmp_path / "ws"
    assert main(["runs", "import", str(seed_path), "--workspace", str(ws)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "imported 3 run(s)" in out and "renamed 'baseline-2'" in out
    assert main(["runs", "list", "--workspace", str(ws)]) == EXIT_OK
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("baseline", "baseline-2", "crashed"))
    assert main(["runs", "plot", "db:baseline", "db:baseline-2", "--workspace", str(ws), "--out",
                 str(tmp_path / "plots")]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["baseline-2_analysis.png",
                                                                      "baseline_analysis.png"]
    assert main(["runs", "compare", "db:baseline", "db:baseline-2", "--workspace", str(ws), "--out",
                 str(tmp_path / "cmp.png")]) == EXIT_OK
    table = (tmp_path / "cmp.md").read_text()
    assert "baseline-2" in table and (tmp_path / "cmp.png").stat().st_size > 10_000
    assert main(["runs", "import", str(tmp_path / "missing.db"), "--workspace", str(ws)]) == EXIT_USAGE
    assert main(["runs", "import", str(ws / "experiments.db"), "--workspace", str(tmp_path / "ws2")]) == EXIT_USAGE
    assert "not the seed's" in capsys.readouterr().err


# -- live, colliding, hostile and growing seed files (issue 23 items 2, 3, 10, 11) ------------------
def _points(db, run) -> int:
    """Points the import stored for a run (the epoch and elapsed_s it derives not counted)."""
    run_id = db.resolve_run(run)
    return db.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ? AND name NOT IN ('epoch', 'elapsed_s')",
                           (run_id,)).fetchone()[0]


def test_import_of_a_live_wal_database_reads_its_committed_wal_and_leaves_it(tmp_path, seed_path):
    writer = sqlite3.connect(seed_path)  # the seed notebook, still running
    try:
        assert writer.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the new rows stay in the -wal file
        cur = writer.execute("INSERT INTO runs (run_name, config, status, created_at) VALUES "
                             "('live', '{}', 'running', '2025-01-18 08:00:00')")
        writer.executemany("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (?, 'train/loss', ?, ?)",
                           [(cur.lastrowid, 4.0 - 0.01 * i, i) for i in range(100)])
        writer.commit()
        wal = seed_path.with_name("experiments.db-wal")
        assert wal.stat().st_size > 0
        before = {p.name: sha256(p) for p in seed_path.parent.iterdir()}
        assert set(before) == {"experiments.db", "experiments.db-wal", "experiments.db-shm"}
        with ExperimentDB(tmp_path / "ours.db") as db:
            report = db.import_db(seed_path)
            assert [r[2] for r in report.imported] == ["baseline", "baseline-2", "crashed", "live"]
            assert report.metrics == 124 and report.rows_read == 124
            assert sum(_points(db, r[1]) for r in report.imported) == 124
            assert _points(db, "live") == 100 and db.get_run("live")["status"] == "interrupted"
        assert {p.name: sha256(p) for p in seed_path.parent.iterdir()} == before
    finally:
        writer.close()


def _seed_with_collisions(path):
    """One run, 28 rows: 10 steps in 2 epochs of train/loss and train/learning_rate (per
    step), learning_rate per epoch (placed on each epoch's last step, where lr is taken),
    val/loss twice per epoch, and train/batch_loss logged twice at step 3."""
    con = sqlite3.connect(path)
    for stmt in SEED_SCHEMA:
        con.execute(stmt)
    con.execute("INSERT INTO runs (run_name, config, status) VALUES ('lr', '{}', 'completed')")
    rows = []
    for step in range(10):
        rows += [("train/loss", 3.0 - 0.1 * step, step, step // 5), ("train/learning_rate", 1e-3 * (step + 1), step,
                                                                      step // 5)]
    for epoch in range(2):
        rows += [("learning_rate", 5e-3 * (epoch + 1), None, epoch), ("val/loss", 2.9 - epoch, None, epoch),
                 ("val/loss", 2.8 - epoch, None, epoch)]
    rows += [("train/batch_loss", 2.5, 3, 0), ("train/batch_loss", 2.6, 3, 0)]
    con.executemany("INSERT INTO metrics (run_id, metric_name, value, step, epoch) VALUES (1, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def test_import_keeps_rows_that_meet_at_one_metric_and_step(tmp_path):
    seed = _seed_with_collisions(tmp_path / "seed.db")
    with ExperimentDB(tmp_path / "ours.db") as db:
        report = db.import_db(seed)
        assert report.rows_read == 28 and report.metrics == 27 and report.kept_as_seed_name == 4
        assert _points(db, "lr") == 27  # 28 rows: 27 stored, 1 dropped and named
        assert len(report.dropped) == 1 and "train/batch_loss = 2.6 at step 3" in report.dropped[0]
        assert "dropped run 1 'lr': train/batch_loss = 2.6" in str(report)
        lr = db.get_metrics("lr", "lr")
        assert lr["step"].tolist() == list(range(10)) and lr["value"].tolist() == pytest.approx(
            [1e-3 * (s + 1) for s in range(10)])
        epoch_lr = db.get_metrics("lr", "learning_rate")  # the seed's epoch-level series, under its name
        assert epoch_lr["step"].tolist() == [4, 9] and epoch_lr["value"].tolist() == pytest.approx([5e-3, 1e-2])
        assert db.get_metrics("lr", "val_loss")["value"].tolist() == pytest.approx([2.9, 1.9])
        assert db.get_metrics("lr", "val/loss")["value"].tolist() == pytest.approx([2.8, 1.8])


def _hostile_seed(path):
    """A seed-shaped file (columns without types, so any value fits) with 10 good runs of 5
    points and every kind of bad row the red team sent."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (run_id, run_name, config, notes, created_at, status)")
    con.execute("CREATE TABLE metrics (metric_id INTEGER PRIMARY KEY, run_id, metric_name, value, step, epoch, "
                "timestamp)")
    con.execute("CREATE TABLE artifacts (artifact_id INTEGER PRIMARY KEY, run_id, artifact_type, filepath, "
                "metadata, created_at)")
    good = [(i, f"good-{i}") for i in range(1, 11)]
    for i, name in good:
        con.execute("INSERT INTO runs VALUES (?, ?, '{\"lr\": 0.001}', '', '2025-01-15 14:30:00', 'completed')",
                    (i, name))
        con.executemany("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (?, 'train/loss', ?, ?)",
                        [(i, 3.0 - 0.1 * s, s) for s in range(5)])
    deep = "[" * 100_000 + "]" * 100_000
    con.executemany("INSERT INTO runs VALUES (?, ?, ?, '', '2025-01-15 14:30:00', 'completed')", [
        (11, " ", "{}"), (12, None, "{}"), ("abc", "text-id", "{}"), (13, "deep", deep), (14, b"\x00blob", "{}"),
        (15, "bad-rows", "{}")])
    for run_id in (11, 12, 13, 14):
        con.execute("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (?, 'train/loss', 1.0, 0)",
                    (run_id,))
    con.executemany("INSERT INTO metrics (run_id, metric_name, value, step, epoch) VALUES (15, ?, ?, ?, ?)", [
        ("train/loss", 1.0, 0, None),  # good
        ("train/loss", 1.0, "abc", None), ("train/loss", "x", 1, None), ("train/loss", b"\x01\x02", 2, None),
        ("train/loss", 1.0, float("inf"), None), ("train/loss", 1.0, 1e21, None), ("train/loss", 1.0, 3.5, None),
        (None, 1.0, 4, None), ("val/loss", 1.0, None, "two"),
        ("train/loss", 2.0, "5", None),  # integer text: a step
        ("train/loss", 1.0, -1, None),  # a negative step
    ])
    con.execute("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (999, 'train/loss', 1.0, 0)")
    con.execute("INSERT INTO metrics (run_id, metric_name, value, step) VALUES ('1', 'val/loss', 2.5, 4)")  # text id
    con.commit()
    con.close()
    return path


def test_import_of_hostile_rows_imports_the_good_and_lists_each_bad(tmp_path, capsys):
    seed = _hostile_seed(tmp_path / "hostile.db")
    ws = tmp_path / "ws"
    assert main(["runs", "import", str(seed), "--workspace", str(ws)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    out = captured.out
    with ExperimentDB(ws / "experiments.db") as db:
        names = set(db.list_runs()["run_name"])
        assert {f"good-{i}" for i in range(1, 11)} <= names
        assert [_points(db, f"good-{i}") for i in range(1, 11)] == [6] + [5] * 9  # good-1's text-id row too
        assert {"seed-run-11", "seed-run-12", "deep", "seed-run-14", "bad-rows"} <= names and len(names) == 15
        assert _points(db, "bad-rows") == 2  # of 11 rows, 9 skipped and listed
        assert db.get_run("deep")["config"] == {"raw": "[" * 100_000 + "]" * 100_000}
    assert "imported 15 run(s)" in out
    assert "run 11 ' ' renamed 'seed-run-11' (the name was blank)" in out
    assert "run 'abc' 'text-id': its run_id is not an integer" in out
    assert "config is not readable JSON" in out
    for why in ("step 'abc' is not an integer", "value 'x' is not a number", "value b'\\x01\\x02' is not a number",
                "step inf is not an integer", "step 1e+21 is not an integer", "step 3.5 is not an integer",
                "metric name None is not text", "epoch 'two' is not an integer", "step -1 is not an integer",
                "1 metric row(s) of run id 999, which is not in runs"):
        assert why in out, why
    assert out.count("  skipped ") == 11


def test_reimport_after_the_seed_grew_adds_only_the_new_runs(tmp_path, seed_path):
    with ExperimentDB(tmp_path / "ours.db") as db:
        assert len(db.import_db(seed_path).imported) == 3
        with sqlite3.connect(seed_path) as con:  # the seed notebook ran once more
            cur = con.execute("INSERT INTO runs (run_name, config, status, created_at) VALUES "
                              "('later', '{}', 'completed', '2025-01-20 10:00:00')")
            con.execute("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (?, 'train/loss', 2.0, 0)",
                        (cur.lastrowid,))
        con.close()
        again = db.import_db(seed_path)
        assert [r[2] for r in again.imported] == ["later"] and len(again.skipped) == 3
        assert sorted(db.list_runs()["run_name"]) == ["baseline", "baseline-2", "crashed", "later"]
        # The same run id with another created_at is another run (the seed file was replaced).
        with sqlite3.connect(seed_path) as con:
            con.execute("UPDATE runs SET created_at = '2025-02-01 00:00:00' WHERE run_name = 'later'")
        con.close()
        assert [r[2] for r in db.import_db(seed_path).imported] == ["later-2"]


def test_import_on_a_full_disk_says_one_line_and_keeps_no_run(tmp_path, seed_path, capsys, monkeypatch):
    real = ExperimentDB.flush

    def full(self):
        if self.find_run("crashed") is not None:  # the third run's points: the disk is full
            raise sqlite3.OperationalError("database or disk is full")
        return real(self)

    monkeypatch.setattr(ExperimentDB, "flush", full)
    ws = tmp_path / "ws"
    assert main(["runs", "import", str(seed_path), "--workspace", str(ws)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"writing metric points (the experiments database) to {ws / 'experiments.db'}" in err
    assert "run the import again (no run of this import was kept)" in err
    monkeypatch.setattr(ExperimentDB, "flush", real)
    with ExperimentDB(ws / "experiments.db") as db:
        assert len(db.list_runs()) == 0  # the two runs written before it were removed
