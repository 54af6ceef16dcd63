"""ExperimentDB: schema, round-trips, concurrency across processes, hostile names, backup."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from utils.training.tracking.db_file import DatabaseFileError
from utils.training.tracking.db_schema import SCHEMA_VERSION
from utils.training.tracking.db_sink import ExperimentDBSink
from utils.training.tracking.experiment_db import ExperimentDB, RunExistsError


@pytest.fixture
def db(tmp_path):
    with ExperimentDB(tmp_path / "experiments.db") as d:
        yield d


def test_schema_pragmas_and_newer_version_refused(tmp_path):
    path = tmp_path / "e.db"
    with ExperimentDB(path) as d:
        assert d.schema_version == SCHEMA_VERSION
        assert d.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert d.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert d.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="schema version"):
        ExperimentDB(path)


def test_metrics_round_trip_with_nan_and_inf(db):
    run_id = db.log_run("r1", {"lr": 1e-3, "n_layer": 2}, run_dir="/x/runs/r1")
    db.log_metrics(run_id, {"train_loss": 2.5, "lr": 1e-3}, step=1)
    db.log_metric(run_id, "val_loss", float("nan"), 1)
    db.log_metrics(run_id, {"train_loss": math.inf, "grad_norm": -math.inf}, step=2)
    df = db.get_metrics(run_id)
    assert list(df.columns[:3]) == ["step", "metric_name", "value"] and "wall_time" in df
    got = {(r.metric_name, r.step): r.value for r in df.itertuples()}
    assert got[("train_loss", 1)] == 2.5 and got[("train_loss", 2)] == math.inf
    assert got[("grad_norm", 2)] == -math.inf and math.isnan(got[("val_loss", 1)])
    assert len(db.get_metrics(run_id, "train_loss")) == 2
    # The long table has every point too (NaN as NULL, which SQLite makes of it).
    assert db.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0] == 5
    run = db.get_run("r1")
    assert run["run_id"] == run_id and run["config"] == {"lr": 1e-3, "n_layer": 2}
    assert run["status"] == "running" and run["run_dir"] == "/x/runs/r1" and len(run["config_hash"]) == 12


def test_status_summary_best_run_and_compare(db):
    a = db.log_run("a", {})
    b = db.log_run("b", {})
    for step, (va, vb) in enumerate([(3.0, 3.5), (2.0, 2.5)], start=1):
        db.log_metrics(a, {"val_loss": va}, step)
        db.log_metrics(b, {"val_loss": vb}, step)
    db.update_run_status(a, "completed", best_val_loss=2.0, best_step=2, tokens_seen=100, note="ok")
    run = db.get_run(a)
    assert (run["status"], run["best_val_loss"], run["tokens_seen"]) == ("completed", 2.0, 100)
    assert run["summary"] == {"note": "ok"}
    assert db.get_best_run("val_loss", "min")["run_name"] == "a"
    assert db.get_best_run("val_loss", "max")["run_name"] == "b"
    with pytest.raises(ValueError, match="no_such_metric"):
        db.get_best_run("no_such_metric")
    cmp = db.compare_runs(["a", b], metric="val_loss")
    assert list(cmp.columns) == ["a", "b"] and cmp.loc[2, "b"] == 2.5
    assert list(db.list_runs(order_by="run_name", descending=False)["run_name"]) == ["a", "b"]
    with pytest.raises(ValueError, match="status must be one of"):
        db.update_run_status(a, "done")
    with pytest.raises(ValueError, match="mode must be"):
        db.get_best_run(mode="best")


def test_bad_input_is_refused_and_loses_nothing(db):
    run_id = db.log_run("keep", {"a": 1})
    db.log_metrics(run_id, {"train_loss": 1.0}, 1)
    db.flush()
    with pytest.raises(RunExistsError, match="already"):
        db.log_run("keep", {"a": 2})
    with pytest.raises(TypeError, match="train_loss"):
        db.log_metrics(run_id, {"train_loss": "high"}, 2)
    with pytest.raises(ValueError, match="order_by must be one of"):
        db.list_runs(order_by="run_name; DROP TABLE runs")
    with pytest.raises(KeyError, match="no run"):
        db.get_run("missing")
    with pytest.raises(TypeError, match="config must be"):
        db.log_run("bad-config", config=42)
    assert db.get_run("keep")["config"] == {"a": 1}
    assert list(db.get_metrics(run_id)["value"]) == [1.0]


@pytest.mark.parametrize("hostile", [
    "x'); DROP TABLE runs; --",
    "\"; DELETE FROM metrics; --",
    "Robert'); DROP TABLE metrics;--",
    "name with 'quotes', \"double\" and ; semicolons",
])
def test_sql_injection_names_stored_verbatim(db, hostile):
    other = db.log_run("bystander", {})
    db.log_metrics(other, {"train_loss": 1.0}, 1)
    run_id = db.log_run(hostile, {hostile: hostile})
    db.log_metrics(run_id, {hostile: 0.5, "val_loss": 1.0}, 3)
    db.log_artifact(run_id, hostile, hostile)
    db.update_run_status(hostile, "completed", **{hostile: hostile})
    assert db.find_run(hostile) == run_id and db.get_run(hostile)["config"] == {hostile: hostile}
    assert db.get_run(run_id)["summary"] == {hostile: hostile}
    assert db.get_metrics(run_id, hostile)["metric_name"].tolist() == [hostile]
    assert db.get_artifacts(run_id)["path"].tolist() == [hostile]
    assert set(db.list_runs()["run_name"]) == {"bystander", hostile}
    assert len(db.get_metrics(other)) == 1 and db.integrity_check() == "ok"


def test_delete_run_cascades_and_trials_keep_their_record(db):
    run_id = db.log_run("t0", {})
    db.log_metrics(run_id, {"val_loss": 1.0}, 1)
    db.log_artifact(run_id, "checkpoint", "/c/step_1.pt", step=1)
    db.log_trial("study", 0, state="RUNNING", params={"lr": 1e-3}, run=run_id)
    db.log_trial("study", 0, state="COMPLETE", value=1.0, params={"lr": 1e-3})
    t = db.get_trials("study")
    assert t.loc[0, "state"] == "COMPLETE" and t.loc[0, "run_id"] == run_id and t.loc[0, "params"] == {"lr": 1e-3}
    with pytest.raises(ValueError, match="trial state"):
        db.log_trial("study", 1, state="done")
    db.delete_run("t0")
    assert db.find_run("t0") is None
    for table in ("metrics", "metric_blocks", "artifacts"):
        assert db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
    t = db.get_trials()
    assert len(t) == 1 and pd.isna(t.loc[0, "run_id"])  # the trial stays, unlinked


def test_buffer_flushes_in_batches(tmp_path):
    with ExperimentDB(tmp_path / "e.db", flush_rows=100, flush_s=3600) as d:
        run_id = d.log_run("r", {})
        count = "SELECT COUNT(*) FROM metrics"
        for step in range(49):
            d.log_metrics(run_id, {"a": step, "b": step}, step)
        assert d.conn.execute(count).fetchone()[0] == 0  # still buffered: 98 points
        d.log_metrics(run_id, {"a": 49, "b": 49}, 49)
        assert d.conn.execute(count).fetchone()[0] == 100
    with ExperimentDB(tmp_path / "e.db") as d:  # close flushed the rest
        assert len(d.get_metrics("r")) == 100


def test_truncate_after_and_rewrite_keeps_the_last_value(db):
    run_id = db.log_run("r", {})
    for step in range(1, 11):
        db.log_metrics(run_id, {"train_loss": float(step)}, step)
    db.flush()
    db.truncate_after(run_id, 6)
    db.log_metrics(run_id, {"train_loss": 70.0}, 7)
    db.log_metric(run_id, "train_loss", 60.0, 6)  # a step written again: the last write wins
    df = db.get_metrics(run_id, "train_loss")
    assert df["step"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert df["value"].tolist() == [1, 2, 3, 4, 5, 60, 70]


def test_sink_creates_then_continues_the_run_on_resume(tmp_path):
    path = tmp_path / "e.db"
    tracking: dict = {}
    sink = ExperimentDBSink(path, "resumable", {"lr": 1.0})
    sink.start({"tracking": tracking, "resumed_from_step": None, "device": "cpu"})
    for step in (2, 4, 6):
        sink.write(step, {"step": step, "train_loss": 1.0 / step, "train_accuracy": None}, "train")
    sink.add_checkpoint(4, "/ckpt/step_4.pt")
    sink.close("interrupted", {"tokens_seen": 96})
    run_id = tracking["db_run_id"]
    # Resumed from the checkpoint at step 4: step 6 is logged again by the new process.
    sink = ExperimentDBSink(path, "resumable", {"lr": 1.0})
    sink.start({"tracking": tracking, "resumed_from_step": 4})
    sink.write(6, {"train_loss": 0.5}, "train")
    sink.write(8, {"val_loss": 0.4}, "eval")
    sink.close("completed", {"best_val_loss": 0.4, "best_step": 8})
    with ExperimentDB(path) as d:
        assert d.list_runs()["run_id"].tolist() == [run_id]
        run = d.get_run(run_id)
        assert run["status"] == "completed" and run["best_step"] == 8 and run["run_info"]["device"] == "cpu"
        df = d.get_metrics(run_id)
        assert df[df.metric_name == "train_loss"]["value"].tolist() == [0.5, 0.25, 0.5]
        assert d.get_artifacts(run_id, "checkpoint")["path"].tolist() == ["/ckpt/step_4.pt"]


def test_backup_and_restore_from_mirror(tmp_path):
    local, mirror = tmp_path / "local" / "experiments.db", tmp_path / "drive" / "experiments.db"
    with ExperimentDB.open_local(local, mirror) as d:
        run_id = d.log_run("colab", {})
        d.log_metrics(run_id, {"train_loss": 1.5}, 1)
    assert mirror.exists()
    for suffix in ("", "-wal", "-shm"):  # the VM was recycled: local disk is empty
        local.with_name(local.name + suffix).unlink(missing_ok=True)
    with ExperimentDB.open_local(local, mirror) as d:
        assert d.get_metrics("colab")["value"].tolist() == [1.5]
        assert d.integrity_check() == "ok"
    with pytest.raises(ValueError, match="backup_to needs a path"):
        ExperimentDB(tmp_path / "x.db").backup_to()


def test_no_torch_import():
    code = "import sys; import utils.training.tracking.experiment_db; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from utils.training.tracking.experiment_db import ExperimentDB
    worker = int(sys.argv[2])
    with ExperimentDB(sys.argv[1], flush_rows=1000) as db:
        for i in range(500):
            run_id = db.log_run(f"w{worker}-r{i}", {"worker": worker, "i": i})
            for step in range(4):
                db.log_metrics(run_id, {"train_loss": 1.0 / (step + 1), "lr": 1e-3, "step_time_ms": 5.0}, step)
            db.flush()
            db.update_run_status(run_id, "completed", final_step=3)
""")


def test_four_processes_write_2000_runs_at_once(tmp_path, project_root):
    path = tmp_path / "shared.db"
    ExperimentDB(path).close()  # schema first, so the writers race only on data
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(project_root)],
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with ExperimentDB(path) as d:
        q = d.conn.execute
        assert q("SELECT COUNT(*) FROM runs").fetchone()[0] == 2000
        assert q("SELECT COUNT(*) FROM runs WHERE status = 'completed'").fetchone()[0] == 2000
        assert q("SELECT COUNT(*) FROM metrics").fetchone()[0] == 2000 * 12
        assert q("SELECT SUM(n) FROM metric_blocks").fetchone()[0] == 2000 * 12
        assert d.integrity_check() == "ok"


def test_one_row_per_run_metric_and_step_at_the_sql_level(db):
    run_id = db.log_run("r", {})
    db.log_metrics(run_id, {"val_loss": 3.0, "train_loss": 4.0}, 10)
    db.flush()
    db.log_metrics(run_id, {"val_loss": 2.0}, 10)  # the same step again (a re-run's final evaluation)
    db.log_metrics(run_id, {"val_loss": 1.0}, 10)  # and twice within one flush
    db.flush()
    rows = db.conn.execute("SELECT name, step, value FROM metrics ORDER BY name").fetchall()
    assert rows == [("train_loss", 10, 4.0), ("val_loss", 10, 1.0)]
    db.log_metrics(run_id, {"val_loss": 0.9}, 8)  # out of order, then a new step, in one flush
    db.log_metrics(run_id, {"val_loss": 0.8}, 11)
    db.log_metrics(run_id, {"val_loss": 0.7, "train_loss": 3.0}, 11)
    db.flush()
    with ExperimentDB(db.path) as other:  # another process logging the run again (a resume)
        other.log_metrics(run_id, {"val_loss": 0.5}, 10)
    rows = db.conn.execute("SELECT name, step, COUNT(*), MAX(value) FROM metrics GROUP BY name, step "
                           "ORDER BY name, step").fetchall()
    assert rows == [("train_loss", 10, 1, 4.0), ("train_loss", 11, 1, 3.0), ("val_loss", 8, 1, 0.9),
                    ("val_loss", 10, 1, 0.5), ("val_loss", 11, 1, 0.7)]
    a = db.log_artifact(run_id, "samples", "samples@10", step=10, samples=[{"output": "a"}])
    b = db.log_artifact(run_id, "samples", "samples@10", step=10, samples=[{"output": "b"}])
    assert a == b and len(db.get_artifacts(run_id, "samples")) == 1
    assert '"b"' in db.get_artifacts(run_id, "samples")["meta_json"][0]


def _v1_database(path, tables: str) -> None:
    from utils.training.tracking.db_schema import MIGRATIONS

    raw = sqlite3.connect(path)
    raw.executescript(tables)
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    assert MIGRATIONS[0]  # the v1 schema the tests build from


def test_a_v1_database_is_migrated_keeping_its_data(tmp_path):
    from utils.training.tracking.db_schema import MIGRATIONS

    path = tmp_path / "old.db"
    _v1_database(path, MIGRATIONS[0] + """;
        INSERT INTO runs (run_name, created_at, updated_at, config_json, config_hash) VALUES ('r', 0, 0, '{}', 'h');
        INSERT INTO metrics VALUES (1, 'val_loss', 30, 5.0, 1), (1, 'val_loss', 30, 4.0, 2),
                                   (1, 'val_loss', 20, 6.0, 0), (1, 'train_loss', 30, 7.0, 1);
        INSERT INTO artifacts (run_id, kind, path, step, created_at) VALUES (1, 'samples', 'a', 30, 0),
                                   (1, 'samples', 'b', 30, 1), (1, 'note', 'n1', NULL, 0), (1, 'note', 'n2', NULL, 0);""")
    with ExperimentDB(path) as d:
        assert d.schema_version == SCHEMA_VERSION == 3
        rows = d.conn.execute("SELECT name, step, value FROM metrics ORDER BY name, step").fetchall()
        assert rows == [("train_loss", 30, 7.0), ("val_loss", 20, 6.0), ("val_loss", 30, 4.0)]  # the last write kept
        assert d.get_artifacts("r")["path"].tolist() == ["b", "n1", "n2"]
        assert d.get_run("r")["run_name"] == "r"


def test_a_v1_file_that_is_not_ours_is_left_unchanged(tmp_path):
    path = tmp_path / "other.db"
    _v1_database(path, "CREATE TABLE things (x INTEGER);")
    before = path.read_bytes()
    with pytest.raises(DatabaseFileError, match="another schema"):
        ExperimentDB(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["things"]
    raw.close()
    assert path.read_bytes() == before


def test_sink_restarting_from_scratch_continues_its_own_row(tmp_path):
    path = tmp_path / "e.db"
    sink = ExperimentDBSink(path, "again", {"lr": 1.0})
    sink.start({"tracking": {}, "resumed_from_step": None})
    sink.write(2, {"train_loss": 1.0})
    sink.db.flush()  # killed before its first checkpoint: the next process starts at step 0
    sink = ExperimentDBSink(path, "again", {"lr": 1.0})
    sink.start({"tracking": {}, "resumed_from_step": None})
    sink.write(2, {"train_loss": 0.5})
    sink.close("completed", {})
    with ExperimentDB(path) as d:
        assert len(d.list_runs()) == 1
        assert d.get_metrics("again")["value"].tolist() == [0.5]
    other = ExperimentDBSink(path, "again", {"lr": 2.0})  # another config under the same name
    with pytest.raises(RunExistsError):
        other.start({"tracking": {}, "resumed_from_step": None})
    other.db.close()


# -- composition -------------------------------------------------------------------------------
def test_experiment_db_owns_its_metric_store_and_carries_no_seed_shapes(db):
    from utils.training.tracking.db_metrics import MetricStore

    assert ExperimentDB.__mro__ == (ExperimentDB, object)  # composed, no mixin
    assert isinstance(db.metrics, MetricStore) and db.metrics.conn is db.conn
    for seed_only in ("db_path", "get_runs_for_sweep"):
        assert not hasattr(ExperimentDB, seed_only)
    run = db.log_run("r", {})
    db.log_metrics(run, {"train_loss": 1.0}, 0)
    assert list(db.get_metrics(run).columns) == ["step", "metric_name", "value", "wall_time"]
    assert "notes" in db.list_runs().columns  # our wide frame keeps the run's notes


def _imports(path, package_root):
    """Every utils.* module `path` imports, at module or function level (TYPE_CHECKING blocks excepted)."""
    import ast

    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    module = ".".join(path.relative_to(package_root).with_suffix("").parts)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[:-node.level] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("utils.")}


def test_no_import_circle_through_the_database_modules(project_root):
    root = project_root
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "utils").rglob("*.py")}
    graph = {m: {i for i in _imports(p, root) if i in files and i != m} for m, p in files.items()}
    db_modules = [f"utils.training.tracking.{n}" for n in ("experiment_db", "db_schema", "db_metrics", "db_sink",
                                                           "db_file", "seed_db")] + [
        "utils.training.compat.experiment_db"]

    def reaches(start, goal):
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return False

    assert [m for m in db_modules if reaches(m, m)] == []


# -- nothing lost to a bad point -----------------------------------------------------------------
@pytest.mark.parametrize("step, run, error", [
    (2**70, None, "step must be in"), (-3, None, "step must be in"), (2.0, None, "step must be a whole number"),
    (math.nan, None, "got nan"), (math.inf, None, "step must be a whole number"), (True, None, "whole number"),
    (100, 999, "no run 999"), (100, "r", "run_id must be an int")])
def test_a_bad_point_is_refused_at_the_call_and_the_good_ones_are_stored(tmp_path, step, run, error):
    path = tmp_path / "e.db"
    d = ExperimentDB(path, flush_rows=64)
    run_id = d.log_run("r", {})
    for i in range(100):
        d.log_metrics(run_id, {"train_loss": 1.0 / (i + 1)}, i)
    with pytest.raises((TypeError, ValueError, KeyError), match=error):
        d.log_metrics(run_id if run is None else run, {"train_loss": 0.5}, step)
    for i in range(100, 111):
        d.log_metric(run_id, "train_loss", 0.1, i)
    d.close()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 111
    assert raw.execute("SELECT SUM(n) FROM metric_blocks").fetchone()[0] == 111
    raw.close()


def test_a_flush_that_fails_keeps_its_points(tmp_path):
    path = tmp_path / "e.db"
    d = ExperimentDB(path, busy_timeout_s=0.05, flush_rows=10**9, flush_s=1e9)
    run_id = d.log_run("r", {})
    for i in range(111):
        d.log_metrics(run_id, {"train_loss": float(i)}, i)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: this flush cannot write
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        d.close()
    other.execute("ROLLBACK")
    other.close()
    d.close()  # the points were kept: the second close writes them
    with ExperimentDB(path) as again:
        assert again.get_metrics("r")["value"].tolist() == [float(i) for i in range(111)]


def test_points_of_a_run_deleted_by_another_process_are_named_and_the_rest_written(tmp_path):
    path = tmp_path / "e.db"
    d = ExperimentDB(path, flush_rows=10**9, flush_s=1e9)
    keep, gone = d.log_run("keep", {}), d.log_run("gone", {})
    for i in range(10):
        d.log_metrics(keep, {"train_loss": 1.0}, i)
        d.log_metrics(gone, {"train_loss": 2.0}, i)
    with ExperimentDB(path) as other:
        other.delete_run("gone")
    with pytest.raises(KeyError, match=rf"10 metric point\(s\) of run_id\(s\) \[{gone}\]"):
        d.flush()
    d.close()
    with ExperimentDB(path) as again:
        assert len(again.get_metrics("keep")) == 10
