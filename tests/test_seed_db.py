"""ExperimentDB's open-time checks (a file it does not own is left byte-identical) and the
import of a seed notebook experiments.db (seed_db.py), down to runs list/plot/compare."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest
from seed_fixtures import files_next_to, sha256, write_seed_db

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
