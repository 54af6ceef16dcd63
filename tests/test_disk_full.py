"""A full disk while training (utils/training/engine/disk_full.py and the CLI): one line naming what
was being written and where, exit 1, and the same command resumes with nothing lost."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from utils.training.cli import EXIT_FAILED, EXIT_OK, main
from utils.training.engine.disk_full import describe_full_disk, full_disk_error


def test_the_line_names_what_and_where():
    db = Path("/ws/experiments.db")
    ckpt = OSError(errno.ENOSPC, "No space left on device", "/ws/runs/r/checkpoints/.step_00000005.pt.77.tmp")
    line = describe_full_disk(ckpt, db)
    assert line.startswith("the disk is full: writing a checkpoint to /ws/runs/r/checkpoints/step_00000005.pt failed")
    assert "Free space and run again to resume" in line
    log = OSError(errno.EDQUOT, "Disk quota exceeded", "/ws/runs/r/.run.json.12.tmp")
    assert "writing the run log to /ws/runs/r/run.json failed" in describe_full_disk(log, db)
    line = describe_full_disk(sqlite3.OperationalError("database or disk is full"), db)
    assert "writing metric points (the experiments database) to /ws/experiments.db" in line
    try:  # torch.save wraps the OSError of the file it writes into a RuntimeError
        try:
            raise ckpt
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from e
    except RuntimeError as wrapped:
        assert full_disk_error(wrapped) is ckpt
    try:  # a checkpoint's ENOSPC, then the teardown's database write on the same full disk
        try:
            raise ckpt
        except OSError:
            raise sqlite3.OperationalError("database or disk is full")  # noqa: B904 - as the finally raises it
    except sqlite3.OperationalError as teardown:
        assert "writing a checkpoint to /ws/runs/r/checkpoints/" in describe_full_disk(teardown, db)
    assert describe_full_disk(ValueError("bad"), db) is None
    assert describe_full_disk(OSError(errno.ENOENT, "gone", "/x"), db) is None


@pytest.mark.slow
def test_train_on_a_full_disk_says_one_line_exits_1_and_resumes_losing_nothing(tmp_path, capsys, monkeypatch):
    from utils.training.tracking.experiment_db import ExperimentDB

    real, flushes = ExperimentDB.flush, []

    def full_from_the_third(self):
        flushes.append(1)
        if len(flushes) >= 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self)

    monkeypatch.setattr(ExperimentDB, "flush", full_from_the_third)
    args = ["train", "--test", "--workspace", str(tmp_path), "--no-progress", "--no-export", "--run-name", "full",
            "--checkpoint-interval", "5"]
    assert main(args) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"writing metric points (the experiments database) to {tmp_path / 'experiments.db'}" in err
    assert "Free space and run again to resume" in err

    monkeypatch.setattr(ExperimentDB, "flush", real)  # space freed
    assert main(args) == EXIT_OK, capsys.readouterr().err
    with sqlite3.connect(tmp_path / "experiments.db") as con:
        (run_id, status), = con.execute("SELECT run_id, status FROM runs WHERE run_name = 'full'").fetchall()
        steps = [s for (s,) in con.execute("SELECT step FROM metrics WHERE run_id = ? AND name = 'train_loss' "
                                           "ORDER BY step", (run_id,))]
    con.close()
    assert status == "completed"
    assert steps == list(range(5, 31, 5)), steps  # every logged step (log_interval 5) once, before the full disk too
