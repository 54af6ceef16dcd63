"""One trainer per run: `train.lock` in the run's checkpoint folder, held with fcntl.flock
while a process trains the run. The kernel drops the lock when that process ends however
it ends (SIGKILL included), so a dead process never keeps it; the file itself stays and
only says who held it last (pid, host, since when)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

LOCK_NAME = "train.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run's lock."""

    def __init__(self, path: Path, holder: str):
        self.path, self.holder = path, holder
        super().__init__(f"is being trained by another process ({holder or 'holder unknown'}; lock file {path}). "
                         "Wait for it to finish or stop it, or give this run another --run-name")


class RunLock:
    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self.supported = True  # False where the file system has no flock (then nothing is held)

    def acquire(self) -> RunLock:
        """Take the lock or raise RunLockedError naming the holder (never waits)."""
        import fcntl  # POSIX only; imported here so the module imports everywhere

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise RunLockedError(self.path, holder) from None
        except OSError:  # ENOLCK / EOPNOTSUPP: a file system without flock; train unguarded
            os.close(fd)
            self.supported = False
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
