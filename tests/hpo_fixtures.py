"""The cheap real training loop the study tests run (tests/test_hpo.py, tests/test_figures.py):
gradient descent on a linear regression that speaks the callback contract exactly as the
trainer does (events, control.stop, on_train_end in finally), and its search space."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from utils.training.config import TrainingConfig
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import CallbackHandler, TrainerCallback, TrainerControl, TrainerState

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.2},
    "schedule": {"type": "categorical", "choices": ["cosine", "linear"]},
}


def toy_config(**kw) -> TrainingConfig:
    return TrainingConfig.preset("smoke", max_steps=kw.pop("max_steps", 12), eval_interval=kw.pop("eval_interval", 3),
                                 **kw)


# --------------------------------------------------------------------------- a cheap real loop


class Teardown(TrainerCallback):
    """Writes runs/NAME/teardown.json from on_train_end: proof that teardown ran, and how."""

    def __init__(self, workspace: Path):
        self.workspace = Path(workspace)

    def on_train_end(self, state, control, **kw):
        d = self.workspace / "runs" / state.run_name
        d.mkdir(parents=True, exist_ok=True)
        (d / "teardown.json").write_text(json.dumps({"status": kw["status"], "step": state.step}))


def toy_train(config: TrainingConfig, callbacks: list, workspace_dir: Path, hook=None) -> SimpleNamespace:
    """Linear regression by gradient descent, evaluated every eval_interval steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=64)
    w = np.zeros(4)
    handler = CallbackHandler([*callbacks, Teardown(workspace_dir)])
    state, control = TrainerState(run_name=config.run_name, max_steps=config.max_steps), TrainerControl()
    run_dir = Path(workspace_dir) / "runs" / config.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(Path(workspace_dir) / "executions.log", "a") as f:  # one line per execution of a trial
        f.write(config.run_name + "\n")
    status, error, val = RunStatus.COMPLETED, None, math.nan
    handler.call("on_train_begin", state, control, config=config, model=None, run_info={})
    try:
        for step in range(1, config.max_steps + 1):
            grad = 2 * x.T @ (x @ w - y) / len(y) + config.weight_decay * w
            w = w - config.learning_rate * grad
            state.step = step
            handler.call("on_step_end", state, control)
            if step % config.eval_interval == 0 or step == config.max_steps:
                val = float(np.mean((x @ w - y) ** 2))
                state.last_val_loss = val
                handler.call("on_evaluate", state, control, metrics={"step": step, "val_loss": val})
            if hook is not None:
                hook(config, state)
            if control.should_stop:
                status = control.stop_status
                break
    except BaseException as e:
        status, error = RunStatus.FAILED, e
        raise
    finally:
        handler.call("on_train_end", state, control, status=status, error=error)
    return SimpleNamespace(status=status, state=state, final_metrics={"val_loss": val})
