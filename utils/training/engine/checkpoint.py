"""Checkpoint files: atomic writes, retention, an optional mirror folder.

One file per checkpoint, `step_NNNNNNNN.pt`, written by torch.save and loadable with
torch.load(weights_only=True): the state dict holds only tensors and plain Python
types (the trainer turns RNG states into those).

Integrity: beside each checkpoint, `step_NNNNNNNN.pt.sha256` holds the SHA-256 of its
bytes, hashed while they are written and put in place before the checkpoint is. A
load hashes the file and skips it (naming it) when the hash differs: flipped bytes
would otherwise load and continue from damaged weights or optimizer state. A file
that torch refuses to unpickle (not ours, or tampered with), or that lacks a key
the trainer needs, is skipped the same way, and the next older one is used.
Checkpoints written before checksums existed (no .sha256 file) load unverified.

Crash safety: every file here is written with utils.training.io's atomic write (a
temp file in the same folder, fsynced, renamed over its final name, the folder
fsynced so that the rename itself survives a power cut). A kill at any moment leaves
either the old set of files or the old set plus one complete new file; the temp
files of killed writes (io's names, and `step_N.pt.tmp-PID` of older versions) are
swept away by the next manager.

The mirror (Google Drive in Colab) is a copy made after the local file verified, in
a background thread, checked by hash; a failing or hanging mirror is reported once
and never stops training.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import sys
import threading
from pathlib import Path

import torch

from utils.training.io import atomic_open, atomic_write_bytes, is_temp_name, temp_path

_NAME = re.compile(r"^step_(\d{8})\.pt$")
# The temp names of versions before io.py (`step_00000005.pt.tmp-1234`): still swept.
LEGACY_TMP_MARK = ".tmp-"
_BEST_FILE = "best.json"
_SUM_SUFFIX = ".sha256"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def checksum_path(path: Path) -> Path:
    """The file holding the SHA-256 (hex) of checkpoint `path`."""
    return path.with_name(path.name + _SUM_SUFFIX)


class _HashingWriter:
    """A write-only file object that hashes what passes through it (torch.save takes any
    object with write()): the checksum costs no second read of a multi-GB file."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, data) -> int:
        self.h.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_checksum(path: Path) -> str | None:
    """The hex SHA-256 recorded beside checkpoint `path`; None for one written before
    checksums existed (no .sha256 file)."""
    try:
        return checksum_path(path).read_text().strip().lower()
    except FileNotFoundError:
        return None


def non_finite_tensors(state: dict) -> list[str]:
    """Names of floating tensors in a (model) state dict holding NaN or infinity."""
    bad = []
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            bad.append(name)
    return bad


class CheckpointManager:
    """Writes, finds and loads the checkpoints of one run.

    ckpt_dir: run_dir / "checkpoints"; keep: how many of the newest to keep (the best
    one is kept on top of those); mirror_dir: a second folder that receives copies.
    """

    def __init__(self, ckpt_dir, keep: int = 3, mirror_dir=None, mirror_timeout_s: float = 120.0,
                 required_keys: tuple[str, ...] = (), validate=None):
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"keep_checkpoints: {keep!r} is not allowed; use an integer >= 1")
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.mirror_dir = Path(mirror_dir) if mirror_dir else None
        self.mirror_timeout_s = mirror_timeout_s
        self.required_keys = tuple(required_keys)  # a checkpoint missing one of these is skipped
        self.validate = validate  # state -> None, or why the checkpoint cannot be used (then skipped)
        self._mirror_thread: threading.Thread | None = None
        self._mirror_error_reported = False
        self._cache: tuple[Path, dict] | None = None  # (path, state) of the last verified read
        self.best_step = self._read_best()
        self._sweep_temp_files()

    # -- writing -------------------------------------------------------------------

    def save(self, state_dict: dict, step: int, is_best: bool = False) -> Path:
        """Write `state_dict` as step_NNNNNNNN.pt atomically, verify it by reading it
        back, prune old files, then mirror. Returns the verified path.

        Refuses (ValueError) a state whose model weights are not finite: a checkpoint
        with NaNs would poison every resume after it.
        """
        if state_dict.get("step") != step:
            state_dict = {**state_dict, "step": step}  # how a read-back proves it is this file
        bad = non_finite_tensors(state_dict.get("model", {}))
        if bad:
            raise ValueError(
                f"refusing to save checkpoint at step {step}: non-finite values in {', '.join(bad[:5])}"
            )
        path = self.dir / checkpoint_name(step)
        # On any error (disk full, a kill signal turned into an exception) nothing already
        # saved is touched; only atomic_open's own temp file goes.
        with atomic_open(path, "wb") as f:
            w = _HashingWriter(f)
            torch.save(state_dict, w)
            # The checksum is in place before the checkpoint (renamed when this block ends):
            # a checkpoint never exists without its own checksum (an orphaned one is swept).
            atomic_write_bytes(checksum_path(path), (w.h.hexdigest() + "\n").encode())
        self._verify(path, step)
        if is_best:
            self.best_step = step
            atomic_write_bytes(self.dir / _BEST_FILE, json.dumps({"step": step}).encode())
        self._prune(newest_verified=path)
        self._start_mirror(path)
        return path

    def _verify(self, path: Path, step: int) -> None:
        state = self._read(path)
        if state is None or state.get("step") != step:
            path.unlink(missing_ok=True)
            raise OSError(f"checkpoint {path} did not read back correctly after writing; it was removed")

    def _prune(self, newest_verified: Path) -> None:
        steps = sorted(self._steps(self.dir))
        keep = set(steps[-self.keep:])
        if self.best_step is not None:
            keep.add(self.best_step)
        keep.add(int(_NAME.match(newest_verified.name).group(1)))
        for s in steps:
            if s not in keep:
                (self.dir / checkpoint_name(s)).unlink(missing_ok=True)
                checksum_path(self.dir / checkpoint_name(s)).unlink(missing_ok=True)

    # -- finding and reading -------------------------------------------------------

    @staticmethod
    def _steps(folder: Path) -> list[int]:
        if not folder.is_dir():
            return []
        return [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]

    def checkpoints(self) -> list[Path]:
        """Local checkpoint files, oldest first (not verified)."""
        return [self.dir / checkpoint_name(s) for s in sorted(self._steps(self.dir))]

    def latest_valid(self) -> Path | None:
        """The newest checkpoint that loads, looking in the run folder and the mirror
        (a fresh Colab runtime has only the mirror). None when there is none."""
        candidates = [(s, self.dir / checkpoint_name(s)) for s in self._steps(self.dir)]
        if self.mirror_dir is not None:
            candidates += [(s, self.mirror_dir / checkpoint_name(s)) for s in self._steps(self.mirror_dir)]
        for step, path in sorted(candidates, key=lambda c: (c[0], c[1].parent == self.dir), reverse=True):
            state = self._read(path, keep=True)  # None: _read said why
            if state is None:
                continue
            missing = [k for k in self.required_keys if k not in state]
            if state.get("step") != step:
                print(f"Checkpoint {path} holds step {state.get('step')!r}, not {step}; skipped", file=sys.stderr)
            elif missing:
                print(f"Checkpoint {path} is incomplete (no {', '.join(missing)}); skipped", file=sys.stderr)
            elif self.validate is not None and (why := self.validate(state)):
                print(f"Checkpoint {path} cannot be used ({why}); skipped", file=sys.stderr)
            else:
                if _expected_checksum(path) is None:  # deleted, or written before checksums: say so
                    print(f"Checkpoint {path} has no checksum file ({checksum_path(path).name}): used unverified",
                          file=sys.stderr)
                return path
            self._cache = None
        return None

    def load(self, path) -> dict:
        """The state dict in `path`, on CPU, read with weights_only=True."""
        path = Path(path)
        if self._cache is not None and self._cache[0] == path:
            state, self._cache = self._cache[1], None
            return state
        return torch.load(path, map_location="cpu", weights_only=True)

    def _read(self, path: Path, keep: bool = False) -> dict | None:
        """The state in `path`, or None if it does not load or fails its checksum.
        keep: hold it for the load() that follows latest_valid() (one read, not two)."""
        try:
            data = path.read_bytes()
            expected = _expected_checksum(path)
        except OSError as e:
            print(f"Checkpoint {path} is unreadable: {e.__class__.__name__}: {e}", file=sys.stderr)
            return None
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            print(f"Checkpoint {path} fails its checksum ({checksum_path(path).name}): the file is damaged; "
                  "skipped", file=sys.stderr)
            return None
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's own message suggests weights_only=False, i.e. running whatever code the
            # file holds: never repeat that advice.
            print(f"Checkpoint {path} is refused: it holds objects other than tensors and plain Python types "
                  "(not written by this trainer, or tampered with); skipped", file=sys.stderr)
            return None
        except (RuntimeError, OSError, EOFError, ValueError, KeyError, AttributeError, TypeError, IndexError) as e:
            # Truncated zip, missing records: an unreadable checkpoint, not a crash.
            print(f"Checkpoint {path} is unreadable ({e.__class__.__name__}); skipped", file=sys.stderr)
            return None
        if not isinstance(state, dict):
            print(f"Checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict; skipped",
                  file=sys.stderr)
            return None
        self._cache = (path, state) if keep else None
        return state

    def _read_best(self) -> int | None:
        try:
            step = json.loads((self.dir / _BEST_FILE).read_text())["step"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def _sweep_temp_files(self) -> None:
        for p in self.dir.iterdir():
            orphan_sum = p.name.endswith(_SUM_SUFFIX) and not (self.dir / p.name[: -len(_SUM_SUFFIX)]).exists()
            killed = is_temp_name(p.name) or LEGACY_TMP_MARK in p.name
            if killed or orphan_sum:  # a killed write, or one killed before its rename
                p.unlink(missing_ok=True)

    # -- the mirror ----------------------------------------------------------------

    def _report_mirror_problem(self, message: str) -> None:
        if not self._mirror_error_reported:
            self._mirror_error_reported = True
            print(f"Checkpoint mirror {self.mirror_dir}: {message}. Training continues; "
                  "checkpoints are still written locally.", file=sys.stderr)

    def _start_mirror(self, path: Path) -> None:
        if self.mirror_dir is None:
            return
        if self._mirror_thread is not None and self._mirror_thread.is_alive():
            self._report_mirror_problem(f"the previous copy has not finished (hung?); skipped {path.name}")
            return
        keep = {p.name for p in self.checkpoints()}
        self._mirror_thread = threading.Thread(
            target=self._mirror_copy, args=(path, keep), name="checkpoint-mirror", daemon=True
        )
        self._mirror_thread.start()

    def _mirror_copy(self, path: Path, keep: set[str]) -> None:
        try:
            self.mirror_dir.mkdir(parents=True, exist_ok=True)
            dest = self.mirror_dir / path.name
            # Not io.atomic_copy: the copy is verified by hash on the mirror's side before
            # its rename, and shutil.copyfile lets the kernel copy (multi-GB files to Drive).
            tmp = temp_path(dest)
            try:
                shutil.copyfile(path, tmp)
                expected = _expected_checksum(path) or _sha256(path)
                if _sha256(tmp) != expected:
                    raise OSError(f"hash mismatch after copying {path.name}")
                # The checksum first, as locally: a mirrored checkpoint is verified on load too.
                atomic_write_bytes(checksum_path(dest), (expected + "\n").encode())
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            for p in self.mirror_dir.iterdir():
                base = p.name[: -len(_SUM_SUFFIX)] if p.name.endswith(_SUM_SUFFIX) else p.name
                if _NAME.match(base) and base not in keep:
                    p.unlink(missing_ok=True)
        except OSError as e:
            self._report_mirror_problem(f"copy failed ({e})")

    def wait_for_mirror(self, timeout_s: float | None = None) -> bool:
        """Wait for the pending mirror copy; False (and reported once) if it hangs."""
        t = self._mirror_thread
        if t is None:
            return True
        t.join(self.mirror_timeout_s if timeout_s is None else timeout_s)
        if t.is_alive():
            self._report_mirror_problem("a copy is still running at the end of training")
            return False
        return True
