"""Where an experiments database lies (tracking/db_access.py): a read-only workspace, a
damaged page, symlinks, a network file system. Commands run in-process (cli.main); the
read-only mount runs in a private mount namespace (unshare -m), where root cannot write."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from seed_fixtures import sha256, write_seed_db

from utils.training.cli import EXIT_OK, EXIT_USAGE, main
from utils.training.tracking import db_access, db_fs
from utils.training.tracking.experiment_db import ExperimentDB

ROOT = Path(__file__).resolve().parents[1]


def make_workspace(ws: Path, runs: int = 2, points: int = 400) -> Path:
    """A workspace whose database holds `runs` runs of `points` steps (about 30 pages)."""
    ws.mkdir(parents=True, exist_ok=True)
    with ExperimentDB(ws / "experiments.db") as db:
        for r in range(runs):
            run_id = db.log_run(f"run{r}", {"lr": 1e-3})
            for step in range(points):
                db.log_metrics(run_id, {"train_loss": 3.0 - step / points, "lr": 1e-3}, step)
                if step % 50 == 0:
                    db.log_metrics(run_id, {"val_loss": 3.1 - step / points}, step)
            db.update_run_status(run_id, "completed", final_step=points - 1)
    return ws / "experiments.db"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- read-only workspace (item 13) ---------------------------------------------------------------
READ_ONLY_SCRIPT = r"""
import json, sys
from utils.training.cli import main
ws, out, seed = sys.argv[1:4]
codes = {
    "list": main(["runs", "list", "--workspace", ws]),
    "plot": main(["runs", "plot", "db:run0", "--workspace", ws, "--out", out]),
    "compare": main(["runs", "compare", "db:run0", "db:run1", "--workspace", ws, "--out", out + "/cmp.png"]),
    "import": main(["runs", "import", seed, "--workspace", ws]),
    "train": main(["train", "--test", "--workspace", ws, "--no-progress", "--no-export"]),
}
print("CODES " + json.dumps(codes))
"""


def test_read_only_mount_reads_and_refuses_writes_up_front(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind {tmp_path} {tmp_path}"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare -m / mount --bind not permitted)")
    ws = tmp_path / "ws"
    db_path = make_workspace(ws)
    (tmp_path / "out").mkdir()
    seed = write_seed_db(tmp_path / "seed.db")
    before = sha256(db_path)
    script = (f"mount --bind {ws} {ws} && mount -o remount,ro,bind {ws} && "
              f"{sys.executable} -c '{READ_ONLY_SCRIPT}' {ws} {tmp_path / 'out'} {seed}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = [x for x in r.stdout.splitlines() if x.startswith("CODES ")]
    assert line, r.stdout + r.stderr
    codes = json.loads(line[0][6:])
    assert codes == {"list": EXIT_OK, "plot": EXIT_OK, "compare": EXIT_OK, "import": EXIT_USAGE,
                     "train": EXIT_USAGE}, r.stderr
    assert "run0" in r.stdout and (tmp_path / "out" / "run0_analysis.png").exists()
    assert (tmp_path / "out" / "cmp.png").exists()
    assert "Traceback" not in r.stderr and "Errno 30" not in r.stderr
    assert r.stderr.count(f"{ws}") >= 2 and r.stderr.count("is read-only") == 2
    assert sha256(db_path) == before and sorted(p.name for p in ws.iterdir()) == ["experiments.db"]


def test_writing_commands_refuse_a_read_only_workspace_before_anything(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    db_path = make_workspace(ws, runs=1, points=10)
    seed = write_seed_db(tmp_path / "seed.db")
    # As root a chmod does not stop writes; os.access does report a read-only mount (EROFS),
    # and that is what the check asks: here it says "read-only" for the workspace.
    monkeypatch.setattr(db_access, "_writable", lambda p: not Path(p).resolve().is_relative_to(ws.resolve()))
    before = sha256(db_path)
    code, _, err = run_cli(capsys, "runs", "import", str(seed), "--workspace", str(ws))
    assert code == EXIT_USAGE and str(db_path) in err and "read-only" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--test", "--workspace", str(ws), "--no-progress")
    assert code == EXIT_USAGE and str(ws) in err and "read-only" in err
    assert sorted(p.name for p in ws.iterdir()) == ["experiments.db"] and sha256(db_path) == before
    code, out, _ = run_cli(capsys, "runs", "list", "--workspace", str(ws))
    assert code == EXIT_OK and "run0" in out


def test_reading_commands_open_read_only(tmp_path, capsys, monkeypatch):
    db_path = make_workspace(tmp_path / "ws", runs=1, points=10)
    opened = []
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda target, *a, **k: opened.append(str(target)) or real(target, *a, **k))
    code, out, _ = run_cli(capsys, "runs", "list", "--workspace", str(tmp_path / "ws"))
    assert code == EXIT_OK and "run0" in out
    assert opened and all("mode=ro" in t for t in opened if "experiments.db" in t), opened
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        with ExperimentDB(db_path, read_only=True) as db:
            db.log_run("x", {})


# -- a damaged page (item 15) ---------------------------------------------------------------------
@pytest.mark.parametrize("page", [2, 3, 5, 8, 12, 20])
def test_a_damaged_page_exits_2_naming_the_file_and_the_way_back(tmp_path, capsys, page):
    ws = tmp_path / "ws"
    db_path = make_workspace(ws)
    data = bytearray(db_path.read_bytes())
    assert len(data) >= 21 * 4096
    data[(page - 1) * 4096: page * 4096] = random.Random(page).randbytes(4096)
    db_path.write_bytes(bytes(data))
    before = sha256(db_path)
    for args in (["runs", "list"], ["runs", "plot", "db:run0", "--out", str(tmp_path / "p")],
                 ["runs", "compare", "db:run0", "db:run1", "--out", str(tmp_path / "c.png")],
                 ["train", "--test", "--no-progress", "--no-export"]):
        code, _, err = run_cli(capsys, *args, "--workspace", str(ws))
        assert code == EXIT_USAGE, (args, err)
        assert str(db_path) in err and "damaged" in err and "PRAGMA integrity_check" in err and "Drive" in err
        assert "Traceback" not in err
    assert sha256(db_path) == before


# -- symlinks (item 17) ------------------------------------------------------------------------------
def test_import_through_a_symlink_to_our_own_database_exits_2(tmp_path, capsys):
    db_path = make_workspace(tmp_path / "ws", runs=1, points=5)
    link = tmp_path / "seed.db"
    link.symlink_to(db_path)
    code, _, err = run_cli(capsys, "runs", "import", str(link), "--workspace", str(tmp_path / "ws"))
    assert code == EXIT_USAGE and str(link) in err and "own database" in err and "Traceback" not in err


def test_a_dangling_database_symlink_exits_2_naming_it(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "experiments.db").symlink_to(tmp_path / "gone" / "experiments.db")
    seed = write_seed_db(tmp_path / "seed.db")
    for args in (["runs", "list"], ["runs", "plot", "db:x"], ["runs", "import", str(seed)],
                 ["train", "--test", "--no-progress"]):
        code, _, err = run_cli(capsys, *args, "--workspace", str(ws))
        assert code == EXIT_USAGE, (args, err)
        assert str(ws / "experiments.db") in err and "which does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "gone").exists()
    dangling_seed = tmp_path / "seed-link.db"
    dangling_seed.symlink_to(tmp_path / "nowhere.db")
    code, _, err = run_cli(capsys, "runs", "import", str(dangling_seed), "--workspace", str(tmp_path / "ws2"))
    assert code == EXIT_USAGE and str(dangling_seed) in err and "which does not exist" in err


# -- network and FUSE file systems (item 24) -----------------------------------------------------------
def test_a_database_on_a_fuse_mount_uses_a_rollback_journal_and_says_so(tmp_path, capsys, monkeypatch):
    drive = tmp_path / "drive" / "MyDrive"
    drive.mkdir(parents=True)
    monkeypatch.setattr(db_fs, "read_mounts", lambda: [("/", "overlay"), (str(tmp_path / "drive"),
                                                                              "fuse.drive")])
    with ExperimentDB(drive / "experiments.db") as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        db.log_metrics(db.log_run("r", {}), {"train_loss": 1.0}, 0)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "fuse.drive" in out and "journal_mode=DELETE" in out
    assert str(drive / "experiments.db") in out
    assert sorted(p.name for p in drive.iterdir()) == ["experiments.db"]  # no -wal / -shm beside it
    with ExperimentDB(tmp_path / "local.db") as db:  # local disk: WAL, and no word
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert capsys.readouterr().out == ""
    for fstype in ("nfs4", "cifs", "9p", "fuse"):
        monkeypatch.setattr(db_fs, "read_mounts", lambda f=fstype: [("/", f)])
        assert db_fs.journal_mode_for(tmp_path / "x.db")[0] == "delete"
