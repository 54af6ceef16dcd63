"""The hostile-input corpus: damaged run logs, llm-foundry logs, experiments databases, seed
databases, config files and output paths, each made here from a few lines (no binary
files in the repository). Each case is (id, make) where make(tmp) writes its file(s) and
returns the command lines to run and the path each must name; every one must exit 2
with that path on stderr and no traceback (tests/test_hostile_inputs.py)."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

from seed_fixtures import write_seed_db

from utils.training.tracking.experiment_db import ExperimentDB

Commands = list[tuple[list[str], Path]]  # (argv, the path stderr must name)


def good_run_log() -> dict:
    return {"format": "slm-run-log", "version": 1, "name": "r", "status": "completed", "config": {"lr": 1e-3},
            "run_info": {}, "train": [{"step": 1, "train_loss": 3.0}], "eval": [{"step": 1, "val_loss": 3.1}],
            "checkpoints": [], "samples": [], "summary": {}}


def good_foundry_log() -> dict:
    return {"run_name": "f", "config": {"learning_rate": 6e-4, "batch_size": 4, "block_size": 64},
            "training_iterations": [{"iter": 0, "loss": 4.0, "time_ms": 10.0}],
            "eval_steps": [{"iter": 0, "val_loss": 4.1}], "summary": {"best_val_loss": 4.1}, "end_time": "x"}


def _nested(doc: dict, dotted: str, value) -> dict:
    *parents, key = dotted.split(".")
    d = doc
    for p in parents:
        d = d[p]
    d[key] = value
    return doc


RUN_LOG_EDITS = {  # field -> wrong value (issue 23 item 16 and neighbours)
    "name": 5, "config": "lr=1e-3", "run_info": "cpu", "summary": "done", "checkpoints": 3, "samples": "none",
    "status": ["completed"], "run_info.hardware": "gpu", "run_info.data": 7, "config.warmup_steps": "ten",
    "train": {"step": 1}, "eval": "none", "summary.best_val_loss": "low", "config.max_steps": [30],
}
FOUNDRY_EDITS = {
    "config": 5, "config.learning_rate": "b", "config.batch_size": "four", "training_iterations": "many",
    "run_name": 7, "summary": [1], "summary.best_val_loss": "low", "startup_info": [1], "metadata": 5,
    "eval_steps": {"iter": 0},
}
RAW_LOGS = {
    "empty": b"", "truncated": b'{"format": "slm-run-log", "train": [{"st', "list": b"[1, 2, 3]",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "deep": b"[" * 100_000 + b"]" * 100_000,
    "long_number": b'{"format": "slm-run-log", "train": [{"step": ' + b"9" * 5001 + b"}]}",
    "neither": b'{"hello": "world"}', "step_text": json.dumps({**good_run_log(), "train": [{"step": "1"}]}).encode(),
    "value_text": json.dumps({**good_run_log(), "train": [{"step": 1, "train_loss": "low"}]}).encode(),
    "record_not_object": json.dumps({**good_run_log(), "eval": [5]}).encode(),
    "foundry_iter_text": json.dumps({**good_foundry_log(), "training_iterations": [{"iter": "0"}]}).encode(),
    "foundry_no_iter": json.dumps({**good_foundry_log(), "eval_steps": [{"val_loss": 1.0}]}).encode(),
    "foundry_loss_text": json.dumps({**good_foundry_log(), "training_iterations": [{"iter": 0, "loss": "x"}]}
                                    ).encode(),
}


def _log_case(data: bytes) -> Callable[[Path], Commands]:
    def make(tmp: Path) -> Commands:
        path = tmp / "run.json"
        path.write_bytes(data)
        return [(["runs", "plot", str(path), "--out", str(tmp / "plots")], path),
                (["runs", "compare", str(path), str(path), "--out", str(tmp / "cmp.png")], path)]
    return make


def _our_db(path: Path, runs: int = 2, points: int = 400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with ExperimentDB(path) as db:
        for r in range(runs):
            run_id = db.log_run(f"run{r}", {"lr": 1e-3})
            for step in range(points):
                db.log_metrics(run_id, {"train_loss": 3.0 - step / points, "val_loss": 3.1}, step)
    return path


def _damage(path: Path, page: int) -> None:
    data = bytearray(path.read_bytes())
    data[(page - 1) * 4096: page * 4096] = random.Random(page).randbytes(4096)
    path.write_bytes(bytes(data))


def _workspace_db_case(make_db: Callable[[Path], None]) -> Callable[[Path], Commands]:
    """A workspace whose experiments.db is bad: every command that opens it."""
    def make(tmp: Path) -> Commands:
        ws = tmp / "ws"
        ws.mkdir()
        db = ws / "experiments.db"
        make_db(db)
        seed = write_seed_db(tmp / "seed.db")
        w = ["--workspace", str(ws)]
        return [(["runs", "list", *w], db), (["runs", "plot", "db:run0", *w, "--out", str(tmp / "p")], db),
                (["runs", "compare", "db:run0", "db:run1", *w, "--out", str(tmp / "c.png")], db),
                (["runs", "import", str(seed), *w], db),
                (["train", "--test", "--no-progress", "--no-export", *w], db)]
    return make


def _db_garbage(db: Path) -> None:
    db.write_bytes(b"not a database\n" * 100)


def _db_truncated(db: Path) -> None:
    _our_db(db.with_name("full.db"))
    db.write_bytes(db.with_name("full.db").read_bytes()[:5000])
    db.with_name("full.db").unlink()


def _db_seed(db: Path) -> None:
    write_seed_db(db)


def _db_other(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE events (t REAL)")
    con.close()


def _db_page(page: int) -> Callable[[Path], None]:
    def make(db: Path) -> None:
        _our_db(db)
        _damage(db, page)
    return make


def _db_dangling(db: Path) -> None:
    db.symlink_to(db.parent / "elsewhere" / "experiments.db")


def _db_newer(db: Path) -> None:
    _our_db(db, runs=2, points=5)
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version = 99")
    con.close()


def _db_directory(db: Path) -> None:
    db.mkdir()


def _import_case(make_source: Callable[[Path, Path], Path]) -> Callable[[Path], Commands]:
    """`runs import SOURCE` of a bad source into a good workspace."""
    def make(tmp: Path) -> Commands:
        ws = tmp / "ws"
        _our_db(ws / "experiments.db", runs=1, points=5)
        source = make_source(tmp, ws / "experiments.db")
        return [(["runs", "import", str(source), "--workspace", str(ws)], source)]
    return make


def _src_bytes(data: bytes) -> Callable[[Path, Path], Path]:
    def make(tmp: Path, ours: Path) -> Path:
        (tmp / "seed.db").write_bytes(data)
        return tmp / "seed.db"
    return make


def _src_truncated(tmp: Path, ours: Path) -> Path:
    full = write_seed_db(tmp / "full.db")
    (tmp / "seed.db").write_bytes(full.read_bytes()[:3000])
    return tmp / "seed.db"


def _src_ours(tmp: Path, ours: Path) -> Path:
    return _our_db(tmp / "other_workspace.db", runs=1, points=5)


def _src_other_schema(tmp: Path, ours: Path) -> Path:
    _db_other(tmp / "seed.db")
    return tmp / "seed.db"


def _src_no_run_id(tmp: Path, ours: Path) -> Path:
    with sqlite3.connect(tmp / "seed.db") as con:
        con.execute("CREATE TABLE runs (run_id INTEGER PRIMARY KEY, run_name TEXT, config TEXT)")
        con.execute("CREATE TABLE metrics (metric_name TEXT, value REAL, step INTEGER, epoch INTEGER)")
    con.close()
    return tmp / "seed.db"


def _src_damaged(tmp: Path, ours: Path) -> Path:
    seed = write_seed_db(tmp / "seed.db")
    with sqlite3.connect(seed) as con:  # enough rows for a few pages
        con.executemany("INSERT INTO metrics (run_id, metric_name, value, step) VALUES (1, 'x', ?, ?)",
                        [(float(i), i) for i in range(3000)])
    con.close()
    _damage(seed, 3)
    return seed


def _src_symlink_to_ours(tmp: Path, ours: Path) -> Path:
    (tmp / "seed.db").symlink_to(ours)
    return tmp / "seed.db"


def _src_dangling(tmp: Path, ours: Path) -> Path:
    (tmp / "seed.db").symlink_to(tmp / "gone.db")
    return tmp / "seed.db"


def _src_directory(tmp: Path, ours: Path) -> Path:
    (tmp / "seed.db").mkdir()
    return tmp / "seed.db"


def _src_missing(tmp: Path, ours: Path) -> Path:
    return tmp / "missing.db"


CONFIGS = {
    "garbage": b"learning_rate: 3e-4\n", "list": b"[1, 2]", "number": b"5", "empty": b"",
    "binary": b"\x00\xff\xfe\x01", "deep": b"[" * 100_000 + b"]" * 100_000,
    "long_number": b'{"learning_rate": ' + b"1" * 5001 + b"}", "unknown_key": b'{"n_layr": 2}',
    "nan": b'{"learning_rate": NaN}', "inf": b'{"learning_rate": 1e999}', "text_number": b'{"max_steps": "ten"}',
    "bool_number": b'{"n_layer": true}', "nested": b'{"optimizer": {"name": "adamw"}}',
}


def _config_case(data: bytes) -> Callable[[Path], Commands]:
    def make(tmp: Path) -> Commands:
        path = tmp / "config.json"
        path.write_bytes(data)
        return [(["train", "--config", str(path), "--workspace", str(tmp / "ws"), "--no-progress"], path)]
    return make


def _out_case(out: str, command: str) -> Callable[[Path], Commands]:
    def make(tmp: Path) -> Commands:
        log = tmp / "run.json"
        log.write_text(json.dumps(good_run_log()))
        target = Path(out.replace("TMP", str(tmp)))
        args = (["runs", "compare", str(log), str(log), "--out", str(target)] if command == "compare"
                else ["runs", "plot", str(log), "--out", str(target)])
        return [(args, target)]
    return make


def _blocked_out(tmp: Path) -> Commands:
    log = tmp / "run.json"
    log.write_text(json.dumps(good_run_log()))
    (tmp / "file").write_text("a file where a folder must be")
    return [(["runs", "plot", str(log), "--out", str(tmp / "file" / "plots")], tmp / "file" / "plots")]


def cases() -> list[tuple[str, Callable[[Path], Commands]]]:
    out: list[tuple[str, Callable[[Path], Commands]]] = []
    for field, value in RUN_LOG_EDITS.items():
        out.append((f"run_log-{field}", _log_case(json.dumps(_nested(good_run_log(), field, value)).encode())))
    for field, value in FOUNDRY_EDITS.items():
        out.append((f"foundry-{field}", _log_case(json.dumps(_nested(good_foundry_log(), field, value)).encode())))
    for name, data in RAW_LOGS.items():
        out.append((f"log-{name}", _log_case(data)))
    for name, make_db in {"garbage": _db_garbage, "truncated": _db_truncated, "seed": _db_seed, "other": _db_other,
                          "dangling_symlink": _db_dangling, "directory": _db_directory, "newer": _db_newer,
                          **{f"page{p}": _db_page(p) for p in (2, 3, 5, 8, 12, 20)}}.items():
        out.append((f"db-{name}", _workspace_db_case(make_db)))
    for name, make_src in {"garbage": _src_bytes(b"id,name\n1,a\n" * 50), "empty": _src_bytes(b""),
                           "header_only": _src_bytes(b"SQLite format 3\x00"), "truncated": _src_truncated,
                           "ours": _src_ours, "other_schema": _src_other_schema, "no_run_id": _src_no_run_id,
                           "damaged": _src_damaged, "symlink_to_ours": _src_symlink_to_ours,
                           "dangling": _src_dangling, "directory": _src_directory, "missing": _src_missing}.items():
        out.append((f"import-{name}", _import_case(make_src)))
    for name, data in CONFIGS.items():
        out.append((f"config-{name}", _config_case(data)))
    out += [("out-txt", _out_case("TMP/table.txt", "compare")), ("out-dev-null", _out_case("/dev/null/x.png",
                                                                                             "compare")),
            ("out-plot-dev-null", _out_case("/dev/null/plots", "plot")), ("out-blocked", _blocked_out)]
    return out
