"""The event contract between the training loop and everything around it.

The loop (trainer.py) knows only the events below. Tracking, plotting, checkpoint
scheduling, early stopping and pruning are callbacks: they read `TrainerState` and
steer the loop only through `TrainerControl` (the split Hugging Face's Trainer uses).
When to log, evaluate, sample and save is itself a callback's decision (flow.py's
FlowCallback); the handler lowers each `should_*` flag when the event answering it is
sent, before the callbacks run (so one of them may raise it again).

Events, in the order a run sees them:

    on_train_begin(state, control, config=..., model=..., run_info=...)
    on_step_end(state, control)                     every optimizer step; no host sync here
    on_log(state, control, logs=...)                when control.should_log (every log_interval steps)
    on_evaluate(state, control, metrics=...)        when control.should_evaluate (every eval_interval, at the end)
    on_sample(state, control, samples=...)          when control.should_sample (every sample_interval, at the end)
    on_before_save(state, control)                  before a checkpoint is written: make logs durable
    on_save(state, control, checkpoint_path=...)    when control.should_save, after the checkpoint verified
    on_train_end(state, control, status=..., error=...)   always, from a `finally`

Under DDP, user callbacks run on rank 0 only; on the other ranks on_sample gets
samples=[] and on_save checkpoint_path=None (rank 0 generates and writes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from utils.training.contracts import RunStatus  # noqa: F401  (re-exported: callbacks steer with it)


@dataclass
class TrainerState:
    """What callbacks may read. Saved in every checkpoint (`to_dict`), so a resumed
    run continues its counters, its best score and its tracking ids."""

    run_name: str = "run"
    step: int = 0  # optimizer steps completed
    max_steps: int = 0  # the run's step budget
    tokens_seen: int = 0  # training tokens consumed, all ranks
    elapsed_s: float = 0.0  # training wall time, summed over resumes
    epoch: float = 0.0  # tokens_seen / training tokens in the corpus
    best_val_loss: float = math.inf
    best_step: int = -1
    last_val_loss: float = math.nan
    evals_without_improvement: int = 0
    resumed_from_step: int | None = None  # None on a fresh start
    last_eval_step: int = -1  # the step of the last evaluation (-1: none yet)
    last_sample_step: int = -1  # the step of the last text samples (-1: none yet)
    last_save_step: int = -1  # the step of the last checkpoint (-1: none yet)
    # The last evaluation's metrics (val_loss, val_loss_se, ...): a run resumed at its end
    # trains and evaluates nothing more, and still reports what its last evaluation measured.
    last_eval_metrics: dict[str, float] = field(default_factory=dict)
    world_size: int = 1
    # Sequences per forward/backward pass on each rank after an out-of-memory back-off (0:
    # none, the config's): saved with the checkpoint, so a resumed run keeps the smaller pass.
    micro_batch: int = 0
    is_world_process_zero: bool = True
    # Ids that sinks store so a resumed run continues the same rows:
    # {"db_run_id": 3, "wandb_run_id": "a1b2c3"}.
    tracking: dict[str, Any] = field(default_factory=dict)

    def record_evaluation(self, val_loss: float) -> None:
        """An evaluation at this step: the last and best val_loss, the patience count."""
        self.last_val_loss, self.last_eval_step = val_loss, self.step
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step, self.evals_without_improvement = val_loss, self.step, 0
        else:
            self.evals_without_improvement += 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Process-local facts are not restored from a checkpoint.
        d.pop("is_world_process_zero")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainerControl:
    """The only thing callbacks change. The loop reads it after every step and acts on
    the flags; the CallbackHandler lowers each flag when its event is sent."""

    should_stop: bool = False
    stop_status: str = RunStatus.COMPLETED  # status to end with when should_stop is set
    stop_reason: str = ""
    should_save: bool = False  # save a checkpoint after this step
    should_evaluate: bool = False  # evaluate after this step
    should_log: bool = False  # emit on_log after this step
    should_sample: bool = False  # generate text samples (on_sample) after this step

    def stop(self, status: str, reason: str) -> None:
        """Ask the loop to end after the current step with `status` (e.g. pruned)."""
        if status not in RunStatus.ENDED:
            raise ValueError(f"stop status must be one of {RunStatus.ENDED}, got {status!r}")
        self.should_stop = True
        self.stop_status = status
        self.stop_reason = reason


class TrainerCallback:
    """Base class: override the events you need. Every event gets (state, control)
    and keyword arguments; accept **kwargs so new keywords never break a callback."""

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_before_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None: ...


EVENTS = (
    "on_train_begin",
    "on_step_end",
    "on_log",
    "on_evaluate",
    "on_sample",
    "on_before_save",
    "on_save",
    "on_train_end",
)


# The control flag each event answers: lowered by the handler before the callbacks run.
ANSWERS = {"on_log": "should_log", "on_evaluate": "should_evaluate", "on_sample": "should_sample",
           "on_save": "should_save"}


class CallbackHandler:
    """Calls callbacks in list order. `on_train_end` reaches every callback even when
    one of them raises (teardown must run); the first error is re-raised after. An
    event that answers a control flag (ANSWERS) lowers it first, as Hugging Face's
    CallbackHandler does: the loop acts, the handler resets, a callback may ask again."""

    def __init__(self, callbacks: list[TrainerCallback] | tuple[TrainerCallback, ...] = ()):
        self.callbacks: list[TrainerCallback] = list(callbacks)

    def add(self, callback: TrainerCallback) -> None:
        self.callbacks.append(callback)

    def call(self, event: str, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        if event not in EVENTS:
            raise ValueError(f"unknown callback event {event!r}; events are {EVENTS}")
        if event in ANSWERS:
            setattr(control, ANSWERS[event], False)
        if event == "on_train_end":
            return self._call_all(event, state, control, **kwargs)
        for cb in self.callbacks:
            getattr(cb, event)(state, control, **kwargs)
        return control

    def _call_all(self, event: str, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        first_error: BaseException | None = None
        for cb in self.callbacks:
            try:
                getattr(cb, event)(state, control, **kwargs)
            except Exception as e:  # noqa: BLE001 - teardown of the others must still run; re-raised below
                if first_error is None:
                    first_error = e
        if first_error is not None:
            raise first_error
        return control


# ---------------------------------------------------------------------------------------
# Concrete callbacks the trainer adds by default (with flow.FlowCallback). They keep no
# state of their own beyond handles: what must survive a resume lives in TrainerState.
# ---------------------------------------------------------------------------------------


class EarlyStoppingCallback(TrainerCallback):
    """Stops with `stopped_early` after `patience` evaluations without a new best
    val_loss. The trainer keeps the count in state.evals_without_improvement, so the
    patience carries over a resume."""

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"early_stopping_patience must be >= 1 to stop early, got {patience}")
        self.patience = patience

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.evals_without_improvement >= self.patience:
            control.stop(
                RunStatus.STOPPED_EARLY,
                f"val_loss has not improved for {state.evals_without_improvement} evaluations "
                f"(best {state.best_val_loss:.4f} at step {state.best_step})",
            )


class ProgressBarCallback(TrainerCallback):
    """A tqdm.auto bar over optimizer steps with loss and tokens/s. Updated from
    host-side counters only: the loss shown is the one logged at the last log step."""

    def __init__(self, disable: bool = False):
        # Not tqdm's None ("off unless a TTY"): a notebook's output stream is no TTY.
        self.disable = disable
        self.bar = None
        self._display = None  # the notebook widget's display handle

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        from tqdm.auto import tqdm
        from tqdm.notebook import tqdm_notebook

        widget = issubclass(tqdm, tqdm_notebook)  # tqdm.auto picks the widget in a kernel with ipywidgets
        self.bar = tqdm(total=state.max_steps, initial=state.step, desc=state.run_name, unit="step",
                        dynamic_ncols=True, disable=self.disable, **({"display": False} if widget else {}))
        if widget and not self.disable:
            from IPython.display import display

            # Our own display handle, so that on_train_end can refresh the text version too.
            self._display = display(self.bar.container, display_id=True)

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if self.bar is not None and "train_loss" in logs:
            # the system sampler's last reading (tracking/system_monitor.py), when it runs
            system = ({"gpu": f"{logs['gpu_util_pct']:.0f}%"} if "gpu_util_pct" in logs else
                      {"cpu": f"{logs['cpu_pct']:.0f}%"} if "cpu_pct" in logs else {})
            memory = next((f"{logs[k]:.1f}GiB" for k in ("gpu_memory_used_gb", "cpu_rss_gb") if k in logs), None)
            self.bar.set_postfix(loss=f"{logs['train_loss']:.4f}", tok_s=f"{logs.get('tokens_per_sec', 0.0):,.0f}",
                                 **system, **({"mem": memory} if memory else {}), refresh=False)

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or {}
        if self.bar is not None and "val_loss" in metrics:
            self.bar.write(f"step {state.step}: val_loss {metrics['val_loss']:.4f}")

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            from utils.training.viz.style import duration

            # One number for the run's duration: the trainer's wall time (what the summary
            # line, the database and the dashboard show), not the bar's own clock.
            self.bar.bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} {postfix}"
            self.bar.set_postfix_str(f"wall time {duration(state.elapsed_s)}", refresh=True)
            self.bar.close()
            if self._display is not None:
                # A saved notebook (GitHub, nbviewer) shows the widget's text/plain, captured
                # when it was displayed (0%): send the final state as that text.
                self._display.update(self.bar.container)
                self._display = None
            self.bar = None


def __getattr__(name: str) -> Any:
    """CheckpointCallback lives in flow.py now (with all cadence); imported lazily, as
    flow.py imports this module."""
    if name == "CheckpointCallback":
        from utils.training.engine.flow import CheckpointCallback

        return CheckpointCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
