"""How an experiments database may be opened where it lies: read-only, damaged or behind a
symlink. Each problem is a DatabaseFileError naming the
file and the way out, raised before anything is written.

- `connect_read_only`: the reading commands' connection (`mode=ro`: works on a read-only
  mount, writes nothing to the database); a page that fails `PRAGMA quick_check` is
  reported as damage, with the way back.
- `check_writable`: the writing commands' check, made up front (a read-only mount or
  folder is refused before any data or model is built).
(Which journal a database gets on a network or FUSE file system is db_fs.py's.)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from utils.training.tracking.db_file import DatabaseFileError, check_link, damaged

READ_ONLY_FIX = ("Copy the workspace to a writable folder and give that with --workspace (the reading commands "
                 "`runs list`, `runs plot`, `runs compare` work where it is)")


def connect_read_only(path: Path, check: bool = True) -> sqlite3.Connection:
    """A read-only connection to an existing database, its pages checked (quick_check)."""
    path = Path(path)
    check_link(path)
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA quick_check(5)" if check else "PRAGMA schema_version").fetchall()
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise
            # A WAL database on a read-only mount without its -shm: nobody can be writing it,
            # so it may be read as it lies.
            conn.close()
            conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
            rows = conn.execute("PRAGMA quick_check(5)" if check else "PRAGMA schema_version").fetchall()
    except sqlite3.DatabaseError as e:
        raise damaged(path, str(e)) from e
    if check and rows != [("ok",)]:
        conn.close()
        raise damaged(path, "; ".join(str(r[0]) for r in rows))
    return conn


def check_health(path: Path) -> None:
    """An existing database is ours (db_file.check_database_file's message: else) and its
    pages pass quick_check (damaged(): else)."""
    from utils.training.tracking.db_file import check_database_file
    from utils.training.tracking.db_schema import SCHEMA_VERSION

    path = Path(path)
    if check_database_file(path, SCHEMA_VERSION, writable=False) == "ours":
        connect_read_only(path).close()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def check_writable(path: Path, what: str = "experiments database") -> None:
    """`path` (a file, or a folder) and the folder it is in can be written, or the nearest
    folder that exists can (the rest is created there). As root os.access still reports a
    read-only mount (EROFS)."""
    path = Path(path)
    check_link(path)
    if path.exists():
        targets = [path, path.parent] if path.is_file() else [path]
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        targets = [parent]
    for target in targets:
        if not _writable(target):
            raise DatabaseFileError(path, f"cannot be written: {target} is read-only (the {what} of a writing "
                                    "command)", READ_ONLY_FIX)
