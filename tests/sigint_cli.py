"""`python -m utils.training ARGS`, with a stop signal at a known point: the process sends
SIGINT (or, with --signal TERM, SIGTERM, as Colab and torchrun stop a process) to itself
when optimizer step N ends (a real signal, delivered as a terminal's would be, but at a
step the test knows rather than after a sleep that a loaded machine stretches). With
--broken-teardown a plotting callback's on_train_end fails as a half-imported matplotlib
made it fail (KeyError: 'Figure:kwdoc'). With --as-main the command runs as
`python -m utils.training` does (its stop handlers set first).

    python tests/sigint_cli.py N [--signal TERM] [--broken-teardown] [--as-main] train --test ...
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.training import session as session_module  # noqa: E402
from utils.training.cli import main  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402


class SignalAtStep(TrainerCallback):
    def __init__(self, step: int, signum: int = signal.SIGINT):
        self.step, self.signum = step, signum

    def on_step_end(self, state, control, **kwargs) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)


class BrokenTeardown(TrainerCallback):
    def on_train_end(self, state, control, **kwargs) -> None:
        raise KeyError("Figure:kwdoc")


if __name__ == "__main__":
    step, argv = int(sys.argv[1]), sys.argv[2:]
    signum, broken, as_main = signal.SIGINT, False, False
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag == "--signal":
            signum = getattr(signal, "SIG" + argv.pop(0))
        elif flag == "--broken-teardown":
            broken = True
        elif flag == "--as-main":
            as_main = True
    extra = [SignalAtStep(step, signum)] + ([BrokenTeardown()] if broken else [])
    default_callbacks = session_module.TrainingSession.callbacks
    session_module.TrainingSession.callbacks = lambda self: default_callbacks(self) + extra
    if as_main:
        sys.argv = ["utils.training", *argv]
        runpy.run_module("utils.training", run_name="__main__", alter_sys=True)
    sys.exit(main(argv))
