"""The runtime dies at a checkpoint: with FAKE_COLAB_DIE_AT_STEP=N the kernel process exits
(os._exit, as when Colab recycles a VM) right after the checkpoint of step N and the
database backup are on Drive. Deterministic: the mirror copy is awaited first, so Drive
holds exactly what a runtime that died there would have left.

With FAKE_COLAB_DEATH_NOTE=PATH it also writes its last words to PATH.

Test stand-in only: it wraps two library methods, once, when google.colab is imported.
"""

import os
import sys


def install(die_at_step: int) -> None:
    from utils.training import checkpoint, session

    start_mirror = checkpoint.CheckpointManager._start_mirror
    on_save = session.DatabaseBackup.on_save

    def start_mirror_and_wait(self, path):
        start_mirror(self, path)
        if self._mirror_thread is not None:
            self._mirror_thread.join()

    def back_up_then_die(self, state, control, **kwargs):
        on_save(self, state, control, **kwargs)
        if state.step == die_at_step:
            message = f"fake Colab: the runtime dies after the checkpoint of step {state.step}"
            # os._exit can beat the kernel's output thread to the socket, so the printed line
            # may never reach the notebook: the note file (outside the VM) is what tests read.
            note = os.environ.get("FAKE_COLAB_DEATH_NOTE")
            if note:
                with open(note, "w") as f:
                    f.write(message + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            print(message, flush=True)
            sys.stderr.flush()
            os._exit(137)

    checkpoint.CheckpointManager._start_mirror = start_mirror_and_wait
    session.DatabaseBackup.on_save = back_up_then_die


if os.environ.get("FAKE_COLAB_DIE_AT_STEP"):
    install(int(os.environ["FAKE_COLAB_DIE_AT_STEP"]))
