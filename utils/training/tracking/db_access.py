"""How an experiments database may be opened where it lies: read-only, damaged, behind a
symlink, or on a network file system. Each problem is a DatabaseFileError naming the
file and the way out, raised before anything is written.

- `connect_read_only`: the reading commands' connection (`mode=ro`: works on a read-only
  mount, writes nothing to the database); a page that fails `PRAGMA quick_check` is
  reported as damage, with the way back.
- `check_writable`: the writing commands' check, made up front (a read-only mount or
  folder is refused before any data or model is built).
- `journal_mode_for`: WAL needs shared memory that network and FUSE file systems (Colab's
  Drive mount, NFS, SMB, 9p) do not give reliably; there SQLite's rollback journal is used.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from utils.training.tracking.db_file import DatabaseFileError

DAMAGED_FIX = ("Restore it from your copy of it (the Drive mirror, if the notebook keeps one: delete the local "
               "file and the next run restores it from there, or copy it back), or start a new workspace; "
               "`sqlite3 {path} 'PRAGMA integrity_check'` lists the damage. It was left unchanged")
READ_ONLY_FIX = ("Copy the workspace to a writable folder and give that with --workspace (the reading commands "
                 "`runs list`, `runs plot`, `runs compare` work where it is)")
NETWORK_FS = ("fuse", "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "sshfs", "davfs", "afs", "ceph", "glusterfs")
MOUNTS = "/proc/mounts"


def damaged(path: Path, detail: str) -> DatabaseFileError:
    return DatabaseFileError(path, f"is a damaged SQLite database ({detail})", DAMAGED_FIX.format(path=path))


def check_link(path: Path) -> None:
    """A symlink at the database path that leads nowhere is an error, not a new database."""
    if path.is_symlink() and not path.exists():
        raise DatabaseFileError(path, f"is a symlink to {os.readlink(path)}, which does not exist",
                                "Point it at the experiments database, or remove the link to start a new one")


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


def refuse_write_error(path: Path, e: BaseException) -> DatabaseFileError | None:
    """The DatabaseFileError for an OSError(EROFS/EACCES) or a read-only sqlite3 error met
    while writing `path`, or None for any other error."""
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return DatabaseFileError(path, f"cannot be written ({e.strerror}: {e.filename or path})", READ_ONLY_FIX)
    if isinstance(e, sqlite3.OperationalError) and ("readonly" in str(e) or "read-only" in str(e)):
        return DatabaseFileError(path, f"cannot be written ({e})", READ_ONLY_FIX)
    return None


# -- network and FUSE file systems --------------------------------------------------------------
def read_mounts() -> list[tuple[str, str]]:
    """(mount point, fstype) of each mount (/proc/mounts; none where it does not exist)."""
    try:
        with open(MOUNTS, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:  # octal escapes in mount points: "\040" is a space
            out.append((parts[1].encode().decode("unicode_escape"), parts[2]))
    return out


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, fstype) of the longest mount point above `path` (("", "") if unknown)."""
    target = str(Path(path).resolve())
    best = ("", "")
    for point, fstype in read_mounts():
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return best


def journal_mode_for(path: Path) -> tuple[str, str]:
    """("wal", "") on a local disk; ("delete", why) on a network or FUSE file system."""
    point, fstype = filesystem_of(path)
    if fstype.split(".")[0] in NETWORK_FS or fstype.startswith("fuse"):
        return "delete", (f"{path} is on a {fstype} file system ({point}), where SQLite's WAL mode is unsafe: "
                          "using a rollback journal (journal_mode=DELETE)")
    return "wal", ""
