"""`python -m utils.training ARGS`, with a Ctrl-C at a known point: the process sends
SIGINT to itself when optimizer step N ends (a real signal, delivered as a terminal's
would be, but at a step the test knows rather than after a sleep that a loaded
machine stretches). With --broken-teardown a plotting callback's on_train_end fails
as a half-imported matplotlib made it fail (KeyError: 'Figure:kwdoc').

    python tests/sigint_cli.py N [--broken-teardown] train --test ...
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.training import session as session_module  # noqa: E402
from utils.training.cli import main  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402


class SigintAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state, control, **kwargs) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


class BrokenTeardown(TrainerCallback):
    def on_train_end(self, state, control, **kwargs) -> None:
        raise KeyError("Figure:kwdoc")


if __name__ == "__main__":
    step, argv = int(sys.argv[1]), sys.argv[2:]
    extra = [SigintAtStep(step)]
    if argv and argv[0] == "--broken-teardown":
        argv = argv[1:]
        extra.append(BrokenTeardown())
    default_callbacks = session_module.TrainingSession.callbacks
    session_module.TrainingSession.callbacks = lambda self: default_callbacks(self) + extra
    sys.exit(main(argv))
