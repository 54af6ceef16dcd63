"""The loop's cadence (engine/callbacks.py's FlowCallback): which flags the FlowCallback raises at which
steps, how a stop ends a run, the DDP hold, and the handler lowering each flag when
its event is sent. Pure host-side objects: no model, milliseconds."""

from __future__ import annotations

import pytest

from utils.training.compat.callbacks import CheckpointCallback
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import FLAGS, CallbackHandler, FlowCallback, TrainerControl, TrainerState


def raised(control: TrainerControl) -> set[str]:
    return {f for f in FLAGS if getattr(control, f)}


def walk(flow: FlowCallback, max_steps: int, world_size: int = 1) -> dict[int, set[str]]:
    """Steps 1..max_steps through a handler; every raised flag is answered by its event."""
    state = TrainerState(max_steps=max_steps, world_size=world_size)
    control, handler = TrainerControl(), CallbackHandler([flow])
    handler.call("on_train_begin", state, control)
    seen = {}
    for step in range(1, max_steps + 1):
        state.step = step
        handler.call("on_step_end", state, control)
        if raised(control):
            seen[step] = raised(control)
        for event, flag in (("on_log", "should_log"), ("on_evaluate", "should_evaluate"),
                            ("on_sample", "should_sample"), ("on_save", "should_save")):
            if getattr(control, flag):
                handler.call(event, state, control)
        assert not raised(control) - {"should_stop"}, "the handler lowers each flag its event answers"
    return seen


def test_intervals_and_the_last_step():
    seen = walk(FlowCallback(log_interval=2, eval_interval=4, checkpoint_interval=3, sample_interval=5), 10)
    assert seen == {
        2: {"should_log"}, 3: {"should_save"}, 4: {"should_log", "should_evaluate"}, 5: {"should_sample"},
        6: {"should_log", "should_save"}, 8: {"should_log", "should_evaluate"}, 9: {"should_save"},
        10: {"should_log", "should_evaluate", "should_sample", "should_save"},  # the last step gets each
    }


def test_no_validation_data_means_no_evaluation_and_zero_means_never():
    seen = walk(FlowCallback(log_interval=0, eval_interval=2, checkpoint_interval=0, evaluate=False), 4)
    assert seen == {4: {"should_log", "should_sample", "should_save"}}


def test_from_config_reads_the_intervals():
    from engine_fixtures import tiny_config

    flow = FlowCallback.from_config(tiny_config(log_interval=3, eval_interval=6, checkpoint_interval=4,
                                                sample_interval=0, time_limit_s=9.0))
    assert (flow.intervals.log, flow.intervals.eval, flow.intervals.checkpoint, flow.intervals.sample) == (3, 6, 4, 0)
    assert flow.time_limit_s == 9.0
    assert [s for s in range(1, 13) if flow.logs_at(s, 10)] == [3, 6, 9, 10, 11, 12]


@pytest.mark.parametrize("status,expected", [
    (RunStatus.STOPPED_EARLY, {"should_stop", "should_evaluate", "should_sample", "should_save"}),
    (RunStatus.PRUNED, {"should_stop", "should_save"}),  # a pruned trial is saved, not scored again
])
def test_a_stop_ends_the_run_like_its_last_step(status, expected):
    flow = FlowCallback(log_interval=10, eval_interval=10, checkpoint_interval=10)
    state, control = TrainerState(step=7, max_steps=100), TrainerControl()
    control.stop(status, "asked")
    flow.on_step_end(state, control)
    assert raised(control) == expected


def test_a_stop_does_not_redo_what_this_step_already_did():
    flow = FlowCallback(log_interval=10, eval_interval=10, checkpoint_interval=10)
    state = TrainerState(step=7, max_steps=100, last_eval_step=7, last_sample_step=7, last_save_step=7)
    control = TrainerControl()
    control.stop(RunStatus.STOPPED_EARLY, "early stopping")  # e.g. raised in on_evaluate at step 7
    flow.on_evaluate(state, control)
    assert raised(control) == {"should_stop"}


def test_time_limit_stops_on_rank_zero(monkeypatch):
    import utils.training.engine.flow as flow_module

    clock = {"t": 100.0}
    monkeypatch.setattr(flow_module.time, "perf_counter", lambda: clock["t"])
    flow, control = FlowCallback(log_interval=50, time_limit_s=5.0), TrainerControl()
    state = TrainerState(step=1, max_steps=100)
    flow.on_train_begin(state, control)
    flow.on_step_end(state, control)
    assert not control.should_stop
    clock["t"] += 6.0
    state.step = 2
    flow.on_step_end(state, control)
    assert control.should_stop and control.stop_status == RunStatus.STOPPED_EARLY and "time limit" in control.stop_reason
    assert control.should_save and control.should_evaluate  # ends like a completed run


def test_ddp_holds_flags_raised_between_cadence_steps():
    """A flag raised by a rank-0-only callback at a step the other ranks do not sync at
    waits for the next cadence step (else rank 0 would enter a collective alone)."""
    flow = FlowCallback(log_interval=5, eval_interval=100, checkpoint_interval=100)
    state, control = TrainerState(step=3, max_steps=100, world_size=2), TrainerControl()
    control.stop(RunStatus.PRUNED, "trial pruned")
    control.should_evaluate = True
    flow.on_step_end(state, control)
    assert raised(control) == set() and control.stop_status == RunStatus.PRUNED
    state.step = 4
    flow.on_step_end(state, control)
    assert raised(control) == set()
    control.stop_status = RunStatus.COMPLETED  # what a fresh stop() would have overwritten is restored
    state.step = 5
    flow.on_step_end(state, control)
    assert raised(control) == {"should_log", "should_stop", "should_evaluate", "should_save"}
    assert control.stop_status == RunStatus.PRUNED and control.stop_reason == "trial pruned"


def test_the_handler_lowers_the_flag_before_the_callbacks_run():
    from utils.training.engine.callbacks import TrainerCallback

    class AskAgain(TrainerCallback):
        def on_save(self, state, control, **kw):
            assert not control.should_save
            control.should_save = True  # a callback may ask again

    state, control = TrainerState(), TrainerControl(should_log=True, should_save=True, should_sample=True)
    handler = CallbackHandler([AskAgain()])
    handler.call("on_log", state, control, logs={})
    handler.call("on_sample", state, control, samples=[])
    assert raised(control) == {"should_save"}
    handler.call("on_save", state, control, checkpoint_path="x")
    assert control.should_save


def test_checkpoint_callback_is_intervals_only():
    cb, state, control = CheckpointCallback(3), TrainerState(max_steps=6, step=6), TrainerControl()
    cb.on_step_end(state, control)
    assert raised(control) == {"should_save"}
    with pytest.raises(ValueError, match="checkpoint_interval"):
        CheckpointCallback(0)
