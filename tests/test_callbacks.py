"""Concrete callbacks: checkpoint cadence, early stopping, the progress bar."""

from __future__ import annotations

from utils.training.callbacks import (
    CallbackHandler,
    CheckpointCallback,
    EarlyStoppingCallback,
    ProgressBarCallback,
    RunStatus,
    TrainerControl,
    TrainerState,
)


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
