"""What is at an experiments-database path, found without writing a byte.

ExperimentDB calls check_database_file before it connects: a directory, a read-only file,
a non-SQLite or truncated file, or a SQLite database of another schema (the seed
notebook's included) raises DatabaseFileError naming the file, what it is and what to do;
the file is left byte-identical (its schema is read through an immutable read-only
connection, before any write or PRAGMA journal_mode)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


class DatabaseFileError(ValueError):
    """The file at the database path is not one this class may open: not SQLite, truncated,
    a directory, read-only, or a database of another schema (left exactly as it was)."""

    def __init__(self, path: str | os.PathLike, what: str, fix: str):
        self.path, self.what, self.fix = Path(path), what, fix
        super().__init__(f"{self.path} {what}. {fix}")

    def _render_traceback_(self) -> list[str]:
        """A notebook shows the message, not a stack of library frames."""
        return [f"DatabaseFileError: {self}"]


class NewerDatabaseError(DatabaseFileError, RuntimeError):
    """A database written by a newer version of this project (a RuntimeError, as before,
    and a DatabaseFileError: the command line's exit 2 naming the file)."""


DAMAGED_FIX = ("Restore it from your copy of it (the Drive mirror, if the notebook keeps one: delete the local "
               "file and the next run restores it from there, or copy it back), or start a new workspace; "
               "`sqlite3 {path} 'PRAGMA integrity_check'` lists the damage. It was left unchanged")


def damaged(path: Path, detail: str) -> DatabaseFileError:
    """The error for a database whose pages fail SQLite's checks: the file, the way back."""
    return DatabaseFileError(path, f"is a damaged SQLite database ({detail})", DAMAGED_FIX.format(path=path))


def check_link(path: Path) -> None:
    """A symlink at the database path that leads nowhere is an error, not a new database."""
    if path.is_symlink() and not path.exists():
        raise DatabaseFileError(path, f"is a symlink to {os.readlink(path)}, which does not exist",
                                "Point it at the experiments database, or remove the link to start a new one")


SQLITE_MAGIC = b"SQLite format 3\x00"
SEED_TABLES = {"runs": {"run_id", "run_name", "config"}, "metrics": {"metric_name", "value", "step", "epoch"}}


def _import_hint(path: Path) -> str:
    return (f"To bring its runs into this project's database, keep it where it is (or rename it, e.g. "
            f"seed_experiments.db, if ours should live at this path) and run: python -m utils.training runs "
            f"import {path} [--workspace DIR]  (in Python: ExperimentDB(OUR_PATH).import_db({str(path)!r}))")


def check_database_file(path: str | os.PathLike, schema_version: int, writable: bool = True) -> str:
    """What is at `path`, read without writing a byte: "new" (missing or empty file) or
    "ours". Anything else raises DatabaseFileError naming the file, what it is and the fix.
    The schema is read through an immutable read-only connection, so a database of another
    schema is left byte-identical (no WAL switch, no journal, no migration). writable=False:
    a reader's check (a read-only file is fine)."""
    path = Path(path)
    check_link(path)
    if path.is_dir():
        raise DatabaseFileError(path, "is a directory, not an experiments database file",
                                f"Give the path of a .db file, for example {path / 'experiments.db'}")
    if not path.exists():
        return "new"
    try:
        if writable:
            os.close(os.open(path, os.O_RDWR))
    except PermissionError as e:
        raise DatabaseFileError(path, f"is read-only ({e.strerror})",
                                "Copy it to a writable folder and open the copy, or make it writable") from e
    with open(path, "rb") as f:
        head = f.read(100)
    if not head:
        return "new"  # SQLite treats an empty file as an empty database
    if not head.startswith(SQLITE_MAGIC):
        raise DatabaseFileError(path, f"is not a SQLite database (it starts with {head[:16]!r})",
                                "Move it aside or give another path; this file was left unchanged")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    n_pages = int.from_bytes(head[28:32], "big")
    valid_count = head[24:28] == head[92:96]  # the in-header size is valid only when these match
    size = path.stat().st_size
    # With a -wal file beside it a writer may be checkpointing (header ahead of the file
    # size for a moment): only a database nobody writes is judged by its header's size.
    writer = path.with_name(path.name + "-wal").exists()
    short = valid_count and n_pages and size < n_pages * page_size and not writer
    if len(head) < 100 or size < page_size or short:
        raise DatabaseFileError(path, f"is a truncated SQLite database ({size} bytes; its header says "
                                f"{n_pages} pages of {page_size} bytes)",
                                "Restore it from a backup (the Drive mirror, if you use one); it was left unchanged")
    try:
        version, tables, columns = _read_schema(path, immutable=True)
    except sqlite3.DatabaseError:
        # A live WAL database read as immutable can look inconsistent mid-checkpoint; a plain
        # read-only connection sees it through its WAL (and writes nothing to the file).
        try:
            version, tables, columns = _read_schema(path, immutable=False)
        except sqlite3.DatabaseError as e:
            raise damaged(path, str(e)) from e
    if version > schema_version:
        raise NewerDatabaseError(path, f"has schema version {version}; this code reads up to {schema_version}",
                                 "Update the project, or open a copy made by this version")
    if not tables:
        return "new"
    if "config_json" in columns.get("runs", set()) and "metric_blocks" in tables:
        return "ours"
    if all(need <= columns.get(t, set()) for t, need in SEED_TABLES.items()):
        raise DatabaseFileError(path, "is an experiments database written by the seed notebook "
                                "(transformer-builder-colab-templates schema: runs.config, metrics.metric_name); "
                                "it was left unchanged", _import_hint(path))
    raise DatabaseFileError(path, f"is a SQLite database of another schema (tables: {', '.join(sorted(tables))}); "
                            "it was left unchanged", "Give the path of an experiments database of this project, "
                            "or a new file")


def _read_schema(path: Path, immutable: bool) -> tuple[int, set[str], dict[str, set[str]]]:
    """(user_version, table names, {table: column names}) through a read-only connection."""
    ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if immutable else ''}", uri=True)
    try:
        version = ro.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in ro.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        columns = {t: {r[1] for r in ro.execute(f"PRAGMA table_info({_quote(t)})")} for t in tables}
    finally:
        ro.close()
    return version, tables, columns


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
