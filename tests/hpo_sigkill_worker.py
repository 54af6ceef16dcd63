"""One `python -m utils.training hpo ARGS` worker that SIGKILLs itself when the first
training step of trial N ends: a worker killed at a step the test knows, rather than
after a sleep that a loaded machine stretches.

    python tests/hpo_sigkill_worker.py N hpo ARGS...
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.training.cli import build_parser  # noqa: E402
from utils.training.engine.callbacks import TrainerCallback  # noqa: E402
from utils.training.hpo.cli import storage_spec, study_job  # noqa: E402
from utils.training.hpo.storage import open_storage  # noqa: E402


class SigkillInTrial(TrainerCallback):
    def __init__(self, storage, study_name: str, number: int):
        self.storage, self.study_name, self.number = storage, study_name, number

    def on_step_end(self, state, control, **kwargs) -> None:
        if state.run_name != f"{self.study_name}-t{self.number}":
            return
        if hasattr(self.storage, "record_heartbeat"):
            # The heartbeat thread's first beat, made certain: the trial is known alive
            # once, so its silence afterwards is what marks it failed.
            study_id = self.storage.get_study_id_from_name(self.study_name)
            self.storage.record_heartbeat(self.storage.get_trial_id_from_study_id_trial_number(study_id, self.number))
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    number, args = int(sys.argv[1]), build_parser().parse_args(sys.argv[2:])
    job = study_job(args, storage_spec(args))
    job.run(callbacks=[SigkillInTrial(open_storage(job.storage), job.study_name, number)])
