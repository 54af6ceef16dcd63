"""The one atomic write. Every file the library writes that a reader may see while it
is being written (checkpoints, token files, run logs, configs, figures, database
copies) goes through here, so a SIGKILL or a full disk at any moment leaves the old
file or the new one, never half of one.

How: write to a hidden temp file in the same folder (a rename is atomic only within
one file system), fsync it, rename it over the final name, fsync the folder (so the
rename itself survives a power cut). On any error the temp file is removed and the
old file is left as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"  # temp names: ".NAME.PID.tmp"; `is_temp_name` recognises them


def temp_path(path: str | os.PathLike) -> Path:
    """Hidden, per-process temp name beside `path` (two processes never share one)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """A leftover of an atomic write that was killed (safe to delete when found)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames in folder `path` durable. Windows cannot open folders for fsync."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, durable: bool = True,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """`with atomic_open(p, "w") as f: f.write(...)`: `p` appears complete when the block
    ends, and is untouched if it raises. durable=False skips both fsyncs (figures and
    other files that are cheap to redo: atomic, but not promised across a power cut)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = temp_path(path)
    if encoding is None and mode == "w":
        encoding = "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temp file behind
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    with atomic_open(path, "wb", durable=durable) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    with atomic_open(path, "w", durable=durable) as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True, indent: int | None = 2) -> None:
    """allow_nan stays on: NaN and infinity are stored as themselves (json reads them)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n", durable=durable)


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike, *, durable: bool = True) -> None:
    """Copy `src` to `dest` so that `dest` is never seen half-copied."""
    with open(src, "rb") as fin, atomic_open(dest, "wb", durable=durable) as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
