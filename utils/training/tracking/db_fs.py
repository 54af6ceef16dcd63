"""Which file system a database lies on, and the journal it gets there. SQLite's WAL
needs shared memory that network and FUSE file systems (Colab's Drive mount, NFS, SMB,
9p, sshfs) do not give reliably; on those the database uses the rollback journal
(journal_mode=DELETE). Found from /proc/mounts for the database's path."""

from __future__ import annotations

from pathlib import Path

NETWORK_FS = ("fuse", "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "sshfs", "davfs", "afs", "ceph", "glusterfs")
MOUNTS = "/proc/mounts"


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
