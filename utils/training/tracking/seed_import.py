"""`runs import`: a seed notebook experiments.db copied into an ExperimentDB of ours.

The rules (names, steps, timestamps) are in seed_db.py's docstring; this module is how
the file is read and what happens to rows that do not fit:
- The source is never opened in place. Its file and any `-wal`, `-shm` or `-journal`
  beside it are copied to a temporary folder (again if a writer changed them meanwhile)
  and the copy is read: a live WAL database gives every committed row, a hot journal is
  rolled back on the copy, and the source stays byte-identical.
- One bad row never blocks the others. A run whose id is not an integer is skipped; a
  blank or non-text name gets "seed-run-ID"; a metric row whose step, epoch or value is
  not a finite number in range (text, a blob, inf, 2**70), or whose name is missing, is
  skipped; each is listed in the report. Config JSON that cannot be parsed (or is nested
  too deeply) is kept as text.
- Rows that meet at one (our metric name, step) are all kept: the first under our name, a
  later one under its seed name (train/learning_rate beside learning_rate, both "lr");
  one that cannot be kept that way (the same seed name twice at one step) is dropped and
  listed with its value. rows read = points stored + rows skipped + rows dropped.
- A run already imported from the same source (the resolved path, the source run_id and
  its created_at) is skipped, so importing a file that grew adds only its new runs.
- Each run is written whole or not at all; Ctrl-C removes every run of this import.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.training.contracts import RunStatus
from utils.training.tracking import seed_db, seed_points
from utils.training.tracking.db_file import SEED_TABLES, SQLITE_MAGIC, DatabaseFileError
from utils.training.tracking.seed_db import STATUS_MAP

STEP_LIMIT = 2**62  # steps below this: our int64 step arrays, with room for step + 1
COMPANIONS = ("-wal", "-shm", "-journal")  # SQLite's files beside a database
_FIX = "Give the path of the seed notebook's experiments.db"


@dataclass
class ImportReport:
    source: Path
    sha256: str
    imported: list[tuple[int, int, str]] = field(default_factory=list)  # (source run_id, our run_id, name)
    renamed: dict[int, tuple[str, str]] = field(default_factory=dict)  # source run_id -> (seed name, ours)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # already imported from this source
    rows_read: int = 0  # metric rows of the imported runs
    metrics: int = 0  # points written (rows_read - bad rows - dropped)
    kept_as_seed_name: int = 0  # of `metrics`: stored under the seed's name (ours taken at that step)
    epoch_placed: int = 0  # epoch-only points given a step
    artifacts: int = 0
    bad_runs: list[str] = field(default_factory=list)  # runs not imported, each with why
    bad_rows: list[str] = field(default_factory=list)  # metric/artifact rows skipped, each with why
    dropped: list[str] = field(default_factory=list)  # rows that met another at one (name, step)
    notes: list[str] = field(default_factory=list)  # imported, with a change (config kept as text)

    def __str__(self) -> str:
        lines = [f"imported {len(self.imported)} run(s), {self.metrics} metric points "
                 f"({self.epoch_placed} epoch-only placed on the step axis), {self.artifacts} artifacts "
                 f"from {self.source}"]
        if self.kept_as_seed_name:
            lines.append(f"  {self.kept_as_seed_name} point(s) kept under the seed's metric name: our name "
                         "already had a point at that step")
        for src, (old, new) in self.renamed.items():
            why = ("the name was taken" if isinstance(old, str) and old.strip() and not old.startswith("<")
                   else "the name was blank" if isinstance(old, str) and not old.strip() else "the name was not text")
            lines.append(f"  run {src} {old!r} renamed {new!r} ({why})")
        for src, name in self.skipped:
            lines.append(f"  run {src} {name!r} skipped: already imported from this file")
        lines += [f"  skipped {m}" for m in self.bad_runs + self.bad_rows]
        lines += [f"  dropped {m}" for m in self.dropped]
        lines += [f"  note: {m}" for m in self.notes]
        return "\n".join(lines)


# -- reading ------------------------------------------------------------------------------
@contextmanager
def seed_snapshot(path: Path, attempts: int = 5) -> Iterator[sqlite3.Connection]:
    """A connection to a private copy of the seed database at `path` (with its -wal,
    -shm and -journal), taken while none of them changed; the source is only read."""
    if path.is_symlink() and not path.exists():
        raise DatabaseFileError(path, f"is a symlink to {os.readlink(path)}, which does not exist", _FIX)
    if not path.is_file():
        raise DatabaseFileError(path, "does not exist or is not a file", _FIX)
    with open(path, "rb") as f:
        if not f.read(16).startswith(SQLITE_MAGIC):
            raise DatabaseFileError(path, "is not a SQLite database", _FIX)
    real = path.resolve()  # a symlink's target: its -wal and -journal lie beside the target
    with tempfile.TemporaryDirectory(prefix="seed_import_") as tmp:
        copy = Path(tmp) / "seed.db"
        for _ in range(attempts):
            before = _stamp(real)
            for suffix in ("", *COMPANIONS):
                src, dest = Path(f"{real}{suffix}"), Path(f"{copy}{suffix}")
                dest.unlink(missing_ok=True)
                if src.is_file():
                    shutil.copyfile(src, dest)
            if _stamp(real) == before:
                break
        else:
            raise DatabaseFileError(path, f"changed during each of {attempts} tries to copy it (a notebook is "
                                    "writing it)", "Stop the notebook's run, or wait for it to finish, and import again")
        con = sqlite3.connect(copy)  # not read-only: SQLite replays the copied WAL / journal here
        con.row_factory = sqlite3.Row
        try:
            try:
                check = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
            except sqlite3.DatabaseError as e:
                check = [str(e)]
            if check != ["ok"]:
                raise DatabaseFileError(path, f"is a damaged SQLite database ({'; '.join(check)})",
                                        f"Import from a good copy of it; `sqlite3 {path} 'PRAGMA integrity_check'` "
                                        "lists the damage. It was left unchanged")
            yield con
        finally:
            con.close()


def _stamp(path: Path) -> list[tuple[int, int] | None]:
    out = []
    for suffix in ("", *COMPANIONS):
        try:
            st = os.stat(f"{path}{suffix}")
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return out


def _tables(con: sqlite3.Connection, path: Path) -> dict[str, set[str]]:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    cols = {t: {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')} for t in tables
            if t in (*SEED_TABLES, "artifacts")}
    if not all(need <= cols.get(t, set()) for t, need in SEED_TABLES.items()) or "run_id" not in cols["metrics"]:
        if "metric_blocks" in tables:
            what = "is a database of this project, not the seed's (open it with ExperimentDB directly)"
        else:
            what = f"is not a seed experiments database (tables: {', '.join(sorted(tables)) or 'none'})"
        raise DatabaseFileError(path, what, _FIX)
    return cols


def read_seed_db(path: str | Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(runs, metrics, artifacts) rows of a seed database, as stored (not checked), read
    from a copy (seed_snapshot)."""
    path = Path(path)
    with seed_snapshot(path) as con:
        try:
            cols = _tables(con, path)
            runs = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY rowid")]
            metrics = [dict(r) for r in con.execute("SELECT * FROM metrics ORDER BY rowid")]
            artifacts = [dict(r) for r in con.execute("SELECT * FROM artifacts ORDER BY rowid")] if (
                "artifacts" in cols) else []
        except sqlite3.DatabaseError as e:
            raise DatabaseFileError(path, f"could not be read ({e})", "Restore it from a backup") from e
    return runs, metrics, artifacts


# -- checking rows ----------------------------------------------------------------------------
def as_int(x: Any, limit: int = STEP_LIMIT) -> int | None:
    """An integer in [0, limit) from an int, an integral finite float or integer text, else None
    (steps, epochs and run ids of the seed are never negative)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, float):
        if not math.isfinite(x) or x != int(x):
            return None
        x = int(x)
    elif isinstance(x, str):
        try:
            x = int(x.strip())
        except ValueError:
            return None
    if not isinstance(x, int) or not 0 <= x < limit:
        return None
    return x


def as_value(x: Any) -> float | None:
    """A metric value: a number (inf and NaN kept: a diverged run logs them; NULL is NaN), else None."""
    if x is None:
        return math.nan
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:  # an integer beyond float's range
            return None
    return None


def _show(x: Any) -> str:
    return f"{x!r:.40}"


def check_point(p: dict) -> tuple[dict | None, str]:
    """A seed metric row with step/epoch as ints and value as a float, or (None, why)."""
    name = p.get("metric_name")
    if not isinstance(name, str) or not name.strip():
        return None, f"metric name {_show(name)} is not text"
    out = dict(p)
    for key in ("step", "epoch"):
        if p.get(key) is not None:
            out[key] = as_int(p[key])
            if out[key] is None:
                return None, f"{name} {key} {_show(p[key])} is not an integer in [0, 2**62)"
    value = as_value(p.get("value"))
    if value is None:
        return None, f"{name} value {_show(p.get('value'))} is not a number"
    out["value"] = value
    return out, ""


def parse_json(text: Any) -> tuple[Any, bool]:
    """(parsed JSON, True) or ({"raw": text}, False) for text that is not JSON, nested too deeply
    or not text at all."""
    if text is None or text == "":
        return {}, True
    if not isinstance(text, str):
        return {"raw": _show(text)}, False
    try:
        value = json.loads(text)
        json.dumps(value)  # what log_run will do with it: nesting that parses may still not serialise
        return value, True
    except (ValueError, RecursionError):
        return {"raw": text}, False


def _run_name(run: dict, src_id: int) -> str:
    name = run.get("run_name")
    return name if isinstance(name, str) and name.strip() else f"seed-run-{src_id}"


# -- importing -------------------------------------------------------------------------------
def import_seed_db(db, path: str | Path) -> ImportReport:
    """Copy a seed experiments.db into `db` (an ExperimentDB of ours); see the module docstring."""
    path = Path(path)
    if path.resolve() == db.path.resolve():
        raise DatabaseFileError(path, f"is this workspace's own database ({db.path}"
                                f"{', through a symlink' if path.is_symlink() else ''})",
                                "Import from the seed notebook's experiments.db at another path")
    source = str(path.resolve())
    with seed_snapshot(path) as con:
        report = ImportReport(source=path, sha256=_sha256(con))
        cols = _source(path, lambda: _tables(con, path))
        runs = _rows(con, path, "SELECT * FROM runs ORDER BY rowid")
        ids = {as_int(r.get("run_id")) for r in runs} - {None}
        for stray in _rows(con, path, "SELECT run_id, COUNT(*) AS n FROM metrics GROUP BY run_id"):
            if as_int(stray["run_id"]) not in ids:
                report.bad_rows.append(f"{stray['n']} metric row(s) of run id {_show(stray['run_id'])}, which is "
                                       "not in runs")
        done = _already_imported(db, source)
        created: list[int] = []
        try:
            for run in runs:
                src_id = as_int(run.get("run_id"))
                if src_id is None:
                    report.bad_runs.append(f"run {_show(run.get('run_id'))} {_show(run.get('run_name'))}: "
                                           "its run_id is not an integer")
                    continue
                if (src_id, str(run.get("created_at"))) in done or (src_id, None) in done:
                    report.skipped.append((src_id, _run_name(run, src_id)))
                    continue
                # A column without a type keeps 1, 1.0 and '1' apart: rows of this run in any of them.
                same = (src_id, float(src_id), str(src_id))
                ts = "timestamp" if "timestamp" in cols["metrics"] else "NULL"
                sql = (f"SELECT metric_name, value, step, epoch, {ts} FROM metrics WHERE run_id IN (?, ?, ?) "
                       "ORDER BY rowid")
                # Streamed: fetchmany into columns, no dict per row (a 500,000-point run in tens of MB).
                points = _source(path, lambda sql=sql, same=same: seed_points.read_points(
                    con.execute(sql, same), check_point))
                artifacts = _rows(con, path, "SELECT * FROM artifacts WHERE run_id IN (?, ?, ?) ORDER BY rowid",
                                  same) if "artifacts" in cols else []
                _import_run(db, run, src_id, points, artifacts, source, report, created)
                del points  # one run's columns in memory at a time
        except BaseException:
            for run_id in created:  # an interrupt, a full disk (or a bug): no run of this import is left behind
                db.delete_run(run_id)
            raise
    return report


def _source(path: Path, read):
    """read() on the source's copy; its sqlite3 errors are the source's (DatabaseFileError naming
    it), not those of the database written to."""
    try:
        return read()
    except sqlite3.DatabaseError as e:
        raise DatabaseFileError(path, f"could not be read ({e})", "Restore it from a backup; it was left "
                                "unchanged") from e


def _rows(con: sqlite3.Connection, path: Path, sql: str, params: tuple = ()) -> list[dict]:
    return _source(path, lambda: [dict(r) for r in con.execute(sql, params)])


def _import_run(db, run: dict, src_id: int, points: seed_points.RunPoints, artifacts: list[dict], source: str,
                report: ImportReport, created: list[int]) -> None:
    """One seed run, written whole or not at all (a run that fails is removed and listed)."""
    name = _run_name(run, src_id)
    given = run.get("run_name")
    ours = db.unique_run_name(name)
    if ours != given:
        report.renamed[src_id] = (given if isinstance(given, str) else f"<{_show(given)}>", ours)
    config, ok = parse_json(run.get("config"))
    info = {"imported_from": source, "source_sha256": report.sha256, "source_run_id": src_id,
            "source_created_at": str(run.get("created_at")), "notes": run.get("notes") or "",
            **{k: run[k] for k in ("sweep_id", "sweep_params", "gist_id", "gist_revision", "gist_sha256")
               if run.get(k) is not None}}
    if not ok:
        info["config_not_json"] = True
        report.notes.append(f"run {src_id} {ours!r}: config is not readable JSON; kept as text under 'raw'")
    info = json.loads(json.dumps(info, default=str))  # blobs and odd types as text
    run_id = db.log_run(ours, config if isinstance(config, dict) else {"value": config}, run_info=info)
    created.append(run_id)
    try:
        placed = seed_points.place(points)
        _write_run(db, run_id, run, placed, artifacts)
    except (ValueError, TypeError, OverflowError, RecursionError, KeyError) as e:
        db.delete_run(run_id)
        created.remove(run_id)
        report.renamed.pop(src_id, None)
        report.bad_runs.append(f"run {src_id} {name!r}: {type(e).__name__}: {e}")
        return
    report.rows_read += points.rows_read
    report.metrics += len(placed.step)
    report.kept_as_seed_name += placed.as_seed
    report.epoch_placed += placed.placed
    report.artifacts += len(artifacts)
    report.bad_rows += [f"run {src_id} {ours!r} metric row: {why}" for why in points.bad]
    report.dropped += [f"run {src_id} {ours!r}: {d}" for d in placed.dropped]
    report.imported.append((src_id, run_id, ours))


def _write_run(db, run_id: int, run: dict, points: seed_points.PlacedRun, artifacts: list[dict]) -> None:
    created_at = seed_db.timestamp(run.get("created_at"))
    seed_points.write(db, run_id, points, created_at)
    for a in artifacts:
        meta, _ = parse_json(a.get("metadata"))
        db.log_artifact(run_id, str(a.get("artifact_type") or "artifact"), str(a.get("filepath") or ""),
                        meta=(meta if isinstance(meta, dict) else {"metadata": meta}) if a.get("metadata") else None)
    with db.transaction():
        db.conn.execute("UPDATE runs SET created_at = ?, updated_at = ? WHERE run_id = ?",
                        (created_at or 0.0, created_at or 0.0, run_id))
        # Artifacts keep the seed's times too (log_artifact stamped them now).
        for a, (art_id,) in zip(artifacts, db.conn.execute(
                "SELECT artifact_id FROM artifacts WHERE run_id = ? ORDER BY artifact_id", (run_id,))):
            t = seed_db.timestamp(a.get("created_at"))
            if t is not None:
                db.conn.execute("UPDATE artifacts SET created_at = ? WHERE artifact_id = ?", (t, art_id))
    status = run.get("status")
    ours = STATUS_MAP.get(status, status) if isinstance(status, str) else None
    ours = ours if ours in RunStatus.ALL else RunStatus.FAILED
    db.update_run_status(run_id, ours, **seed_points.summary(points), **(
        {"seed_status": str(status)} if status != ours else {}))


def _sha256(con: sqlite3.Connection) -> str:
    """sha256 of the snapshot's database file (provenance; dedupe is by source run)."""
    path = con.execute("PRAGMA database_list").fetchone()[2]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _already_imported(db, source: str) -> set[tuple[int, str | None]]:
    """(source run_id, created_at) of the runs already imported from `source` (created_at
    None for imports made before it was recorded: matched by run id alone)."""
    out = set()
    for (info,) in db.conn.execute("SELECT run_info_json FROM runs WHERE run_info_json LIKE ?",
                                   ('%"imported_from"%',)):
        d = json.loads(info) if info else {}
        if d.get("imported_from") == source and d.get("source_run_id") is not None:
            out.add((int(d["source_run_id"]), d.get("source_created_at")))
    return out
