"""Stop signals (utils/training/engine/signals.py): SIGTERM, how Colab stops a runtime and
torchrun stops its workers, takes Ctrl-C's path (a checkpoint of the current step, the run
marked interrupted, one line, exit 143), and a stop that lands during start-up imports
ends the command with one line and 130/143. Every signal is a real one the process sends
itself at a point the test chooses (a step, an import), never after a sleep."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from utils.training.engine import signals

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget_received():
    yield
    signals.received.clear()


def test_sigterm_raises_terminated_inside_the_block_and_the_default_comes_back():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(signals.Terminated) as stop:
        with signals.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause() if hasattr(signal, "pause") else None  # the handler raises at the next check
    assert isinstance(stop.value, KeyboardInterrupt)
    assert signals.exit_code(stop.value) == 143 and signals.describe(stop.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_callers_own_sigterm_handler_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with signals.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_off_the_main_thread_nothing_is_installed():
    handlers = []

    def worker():
        with signals.sigterm_as_interrupt():
            handlers.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert handlers == [signal.SIG_DFL]


def test_ctrl_c_is_130():
    assert signals.exit_code(KeyboardInterrupt()) == 130
    assert signals.describe(KeyboardInterrupt()) == "interrupted (Ctrl-C)"


def db_rows(ws: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(ws / "experiments.db") as con:
        return con.execute(sql, params).fetchall()


def signalled_run(ws: Path, step: int, *flags: str, max_steps: int = 12) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sigint_cli.py"), str(step), *flags, "train", "--test",
         "--workspace", str(ws), "--run-name", "r", "--set", f"max_steps={max_steps}",
         "--set", "checkpoint_interval=5", "--no-progress", "--no-export"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def final_val_loss(ws: Path) -> float:
    rows = db_rows(ws, "SELECT value FROM metrics JOIN runs USING (run_id) WHERE run_name = 'r' "
                      "AND name = 'val_loss' ORDER BY step DESC LIMIT 1")
    return rows[0][0]


@pytest.mark.slow
@pytest.mark.parametrize("as_main", [False, True], ids=["library-handler", "python-m-handlers"])
def test_sigterm_checkpoints_the_step_marks_interrupted_exits_143_and_resumes_exactly(tmp_path, as_main):
    ws = tmp_path / "ws"
    stopped = signalled_run(ws, 7, "--signal", "TERM", *(["--as-main"] if as_main else []))
    assert stopped.returncode == 143, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert [line for line in stopped.stderr.splitlines() if "stopped by SIGTERM" in line] == [
        "stopped by SIGTERM: the last checkpoint is kept; run the same command again to resume"]
    ckpts = sorted(int(p.stem.split("_")[1]) for p in (ws / "runs" / "r" / "checkpoints").glob("step_*.pt"))
    assert ckpts == [5, 7]
    assert db_rows(ws, "SELECT status FROM runs WHERE run_name = 'r'") == [("interrupted",)]

    resumed = signalled_run(ws, 10_000)  # the signal's step is never reached
    assert resumed.returncode == 0, resumed.stderr
    assert "from step 7" in resumed.stdout
    assert db_rows(ws, "SELECT status FROM runs WHERE run_name = 'r'") == [("completed",)]

    reference = tmp_path / "reference"
    assert signalled_run(reference, 10_000).returncode == 0
    assert final_val_loss(ws) == final_val_loss(reference)


SITECUSTOMIZE = '''
import importlib.abc, os, signal, sys
TARGET, SIGNUM = os.environ["TEST_STOP_AT_IMPORT"], getattr(signal, "SIG" + os.environ["TEST_STOP_SIGNAL"])

class _StopAtImport(importlib.abc.MetaPathFinder):
    """Sends the signal when TARGET starts importing: its package is half imported then."""
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIGNUM)
        return None

sys.meta_path.insert(0, _StopAtImport())
'''


@pytest.mark.slow
@pytest.mark.parametrize("module", ["utils.training.cli", "numpy.linalg", "torch.nn.modules.linear",
                                    "transformers.modeling_utils"])
@pytest.mark.parametrize("sig,code", [("INT", 130), ("TERM", 143)])
def test_a_stop_during_start_up_imports_ends_with_one_line(tmp_path, module, sig, code):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
           "TEST_STOP_AT_IMPORT": module, "TEST_STOP_SIGNAL": sig}
    r = subprocess.run([sys.executable, "-m", "utils.training", "train", "--test", "--workspace",
                        str(tmp_path / "ws"), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == code, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert ("stopped by SIGTERM" if sig == "TERM" else "interrupted (Ctrl-C)") in lines[0]


NOTEBOOK_RUN = '''
import os, signal, sys
sys.path.insert(0, {root!r})
from utils.training import TrainingConfig, TrainingSession
from utils.training.engine.callbacks import TrainerCallback

class StopAt(TrainerCallback):
    def on_step_end(self, state, control, **kwargs):
        if state.step == 6:
            os.kill(os.getpid(), signal.SIG{sig})

config = TrainingConfig.preset("smoke").replace(run_name="nb", max_steps=12, checkpoint_interval=5)
session = TrainingSession(config, {ws!r}, callbacks=[StopAt()])
session.tracking.progress_bar = False
result = session.train(on_interrupt="report")
print("AFTER", result.status, result.state.step)
'''


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_the_notebooks_interrupt_prints_one_line_and_keeps_the_run_drawable(tmp_path, sig):
    """Kernel > Interrupt: one line, no traceback, and the cell goes on with the interrupted
    run (the dashboard cell below can draw it). SIGTERM (the runtime being stopped): the
    same line, then the process ends as SIGTERM ends it."""
    ws = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-c", NOTEBOOK_RUN.format(root=str(ROOT), sig=sig, ws=str(ws))],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    word = "stopped by SIGTERM" if sig == "TERM" else "interrupted (Ctrl-C)"
    assert f"{word} at step 6: its checkpoint is kept; run this cell again to resume" in r.stdout
    if sig == "INT":
        assert r.returncode == 0 and "AFTER interrupted 6" in r.stdout
        from utils.training.tracking.experiment_db import ExperimentDB
        from utils.training.viz.dashboard import TrainingDashboard

        db = ExperimentDB(ws / "experiments.db")
        try:
            assert TrainingDashboard.from_db(db, "nb").save(tmp_path / "d.png").exists()
        finally:
            db.close()
    else:
        assert r.returncode == -signal.SIGTERM and "AFTER" not in r.stdout
    assert db_rows(ws, "SELECT status FROM runs WHERE run_name = 'nb'") == [("interrupted",)]
    assert (ws / "runs" / "nb" / "checkpoints" / "step_00000006.pt").exists()


@pytest.mark.slow
def test_a_stop_before_a_log_steps_record_writes_it_with_the_checkpoint(tmp_path):
    """The signal lands at the end of step 10, a log step, before its log record: the
    checkpoint of step 10 comes with step 10's record, and after the resume every logged
    value equals the uninterrupted run's, each step once."""
    def losses(ws: Path) -> list[tuple]:
        return db_rows(ws, "SELECT step, value FROM metrics JOIN runs USING (run_id) WHERE run_name = 'r' "
                           "AND name = 'train_loss' ORDER BY step")

    ws = tmp_path / "ws"
    stopped = signalled_run(ws, 10, "--signal", "INT")
    assert stopped.returncode == 130, stopped.stderr
    assert [step for step, _ in losses(ws)] == [5, 10]
    assert signalled_run(ws, 10_000).returncode == 0
    reference = tmp_path / "reference"
    assert signalled_run(reference, 10_000).returncode == 0
    assert losses(ws) == losses(reference) and [step for step, _ in losses(ws)] == [5, 10, 12]
