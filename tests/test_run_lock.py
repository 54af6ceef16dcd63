"""One trainer per run (utils/training/engine/run_lock.py): a second `train` on a run name that a
live process holds exits 2 naming the holder; a dead holder's lock is gone."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.training.cli import EXIT_USAGE, main
from utils.training.engine.run_lock import LOCK_NAME, RunLock, RunLockedError

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_train_on_a_held_run_exits_2_naming_the_holder(tmp_path, capsys):
    run_dir = tmp_path / "ws" / "runs" / "shared"
    run_dir.mkdir(parents=True)
    lock_file = run_dir / LOCK_NAME
    with open(lock_file, "w") as holder:  # the first trainer, as another process would hold it
        holder.write("pid 4242 on host other-host since 2026-01-01 00:00:00 UTC\n")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["train", "--test", "--workspace", str(tmp_path / "ws"), "--run-name", "shared",
                     "--no-progress", "--no-export"])
        err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "--run-name" in err and "pid 4242 on host other-host" in err and str(lock_file) in err
    assert "Traceback" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing trained, no checkpoint
    assert lock_file.read_text().startswith("pid 4242")  # the holder's words are left as they were


def test_a_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("pid 999999 on host gone since 2020-01-01 00:00:00 UTC\n")
    with RunLock(tmp_path) as lock:
        assert lock.supported
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on host ")
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # released on exit


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from utils.training.engine.run_lock import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()  # SIGKILL: no cleanup code of its own runs
        proc.wait()
    RunLock(tmp_path).acquire().release()
