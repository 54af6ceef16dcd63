"""Concrete callbacks: CheckpointCallback (compat/callbacks.py), early stopping, the progress bar
(engine/progress.py)."""

from __future__ import annotations

import pytest

from utils.training.compat.callbacks import CheckpointCallback
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import (
    CallbackHandler,
    EarlyStoppingCallback,
    TrainerControl,
    TrainerState,
)
from utils.training.engine.progress import ProgressBarCallback


def test_checkpoint_callback_asks_at_its_interval():
    cb, state, control = CheckpointCallback(3), TrainerState(), TrainerControl()
    asked = []
    for step in range(1, 10):
        state.step = step
        cb.on_step_end(state, control)
        if control.should_save:
            asked.append(step)
            control.should_save = False
    assert asked == [3, 6, 9]


def test_early_stopping_reads_the_count_in_the_state():
    cb, state, control = EarlyStoppingCallback(2), TrainerState(best_val_loss=1.0, best_step=4), TrainerControl()
    state.evals_without_improvement = 1
    cb.on_evaluate(state, control, metrics={"val_loss": 1.2})
    assert not control.should_stop
    state.evals_without_improvement = 2  # restored from a checkpoint, say
    cb.on_evaluate(state, control, metrics={"val_loss": 1.3})
    assert control.should_stop and control.stop_status == RunStatus.STOPPED_EARLY
    assert "2 evaluations" in control.stop_reason and "step 4" in control.stop_reason


def test_progress_bar_follows_the_events(capsys):
    bar = ProgressBarCallback(disable=False)
    handler = CallbackHandler([bar])
    state, control = TrainerState(run_name="demo", max_steps=4, step=1), TrainerControl()
    handler.call("on_train_begin", state, control)
    for s in (2, 3, 4):
        state.step = s
        handler.call("on_step_end", state, control)
    handler.call("on_log", state, control, logs={"train_loss": 2.5, "tokens_per_sec": 1234.0})
    assert bar.bar.n == 4 and bar.bar.postfix == "loss=2.5000, tok_s=1,234"
    handler.call("on_train_end", state, control, status=RunStatus.COMPLETED, error=None)
    assert bar.bar is None and "demo" in capsys.readouterr().err


@pytest.mark.slow
def test_progress_bar_saved_text_is_its_final_state(tmp_path):
    """GitHub and nbviewer show a widget's text/plain: it must be the finished bar, not 0/30."""
    import os
    from pathlib import Path

    import nbformat

    from utils.notebook_exec import execute_notebook

    code = """from types import SimpleNamespace
from utils.training.engine.progress import ProgressBarCallback
bar, state = ProgressBarCallback(), SimpleNamespace(max_steps=30, step=0, run_name="r", elapsed_s=12.0,
                                                    tokens_seen=3840)
bar.on_train_begin(state, None)
for _ in range(30):
    bar.on_step_end(state, None)
bar.on_train_end(state, None)"""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path / "bar.ipynb")
    root = str(Path(__file__).resolve().parents[1])
    nb = execute_notebook(tmp_path / "bar.ipynb", {}, workdir=tmp_path, timeout_per_cell=120,
                          env={"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)})
    texts = [o["data"]["text/plain"] for o in nb.cells[0].outputs if "text/plain" in o.get("data", {})]
    assert len(texts) == 1 and "30/30" in texts[0] and "100%" in texts[0]
    # One throughput, stated (throughput.py), and no stray " ," before tqdm's postfix.
    assert "30/30, 320 tokens/s (3,840 tokens / 12.0 s wall time)" in texts[0] and " ," not in texts[0]
