"""One JSON file per run (`runs/NAME/run.json`), and reading runs into one model.

`RunLogWriter` is a MetricsSink (docs/ARCHITECTURE.md): it appends records in memory
(cheap) and rewrites the file atomically (temp file + os.replace) at most every
`min_interval_s` seconds, and completely at close. The format is documented in
docs/run_log_format.md.

`load_run(spec)` reads our run logs, ExperimentDB runs ("db:NAME") and llm-foundry
logs into a `RunRecord`, whose DataFrames use the metric vocabulary of
docs/ARCHITECTURE.md; the plots read only `RunRecord`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

FORMAT = "slm-run-log"
VERSION = 1
GB_TO_GIB = 1e9 / 2**30  # llm-foundry writes memory in 1e9-byte GB; we plot GiB


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """JSON-able copy: numbers as float/int, tensors via .item(), dataclasses via to_dict/asdict."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # torch / numpy scalars
        return value.item()
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(value))
    return str(value)


class RunLogWriter:
    """MetricsSink writing `path` (one JSON document per run).

    On resume (the file exists) it loads the document and appends. start() drops the
    records after the step the run resumed from (run_info["resumed_from_step"]; a fresh
    start drops them all), and records at or after a step that is logged again are
    dropped first, so the log holds one record per step, one checkpoint and one set of
    samples per step, however often the run was killed.

    A run log that does not parse (a disk that filled up, a hand edit) is set aside as
    run.json.corrupt-TIME with a warning naming both files, and its records are rebuilt
    from `db` (an ExperimentDB, the source of truth) when one is given.
    """

    def __init__(self, path, min_interval_s: float = 30.0, config: Any = None, name: str | None = None,
                 db: Any = None):
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)  # seconds between two rewrites of the file
        self._last_write = time.monotonic()
        self._dirty = False
        self._loaded = False
        default_name = self.path.parent.name if self.path.name == "run.json" else self.path.stem
        doc = self._read_existing(db, name or default_name)
        if doc is not None:
            self.doc = doc
            self._loaded = True
            self.doc.setdefault("resumes", []).append({"time": _now_iso()})
        else:
            self.doc = {
                "format": FORMAT,
                "version": VERSION,
                "name": name or default_name,
                "status": "running",
                "created_at": _now_iso(),
                "updated_at": None,
                "ended_at": None,
                "config": {},
                "run_info": {},
                "resumes": [],
                "train": [],
                "eval": [],
                "checkpoints": [],
                "samples": [],
                "summary": {},
            }
        if config is not None:
            self.doc["config"] = _plain(config)

    def _read_existing(self, db: Any, name: str) -> dict | None:
        """The document on disk; None when there is none. One that does not parse is set
        aside, and what `db` holds of the run is the new document."""
        if not self.path.exists():
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if isinstance(doc, dict) and doc.get("format") == FORMAT and all(
                    isinstance(doc.get(k), list) for k in ("train", "eval", "checkpoints", "samples")):
                return doc
            problem = "is not a run log of this format"
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            problem = f"does not parse ({type(e).__name__}: {e})"
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        while aside.exists():  # never over an earlier one
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        rebuilt = _doc_from_db(db, name) if db is not None else None
        how = "rebuilt from the experiments database" if rebuilt else "started anew"
        print(f"Run log {self.path} {problem}: set aside as {aside.name}; {how}.", file=sys.stderr, flush=True)
        return rebuilt

    # -- MetricsSink -------------------------------------------------------
    def start(self, run_info: dict) -> None:
        if self._loaded and "resumed_from_step" in (run_info or {}):
            self._drop_after(int(run_info.get("resumed_from_step") or 0))
        # The sinks' ids (db_run_id, wandb_run_id): the W&B sink adds its id to this very
        # dict after this sink started, so it is read again at every write.
        self._tracking = (run_info or {}).get("tracking")
        info = _plain(dict(run_info or {}))
        if "config" in info and not self.doc["config"]:
            self.doc["config"] = info.pop("config")
        if not self.doc["run_info"]:
            self.doc["run_info"] = info
        self.doc["status"] = "running"
        self.doc["ended_at"] = None
        self._write()

    def write(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if kind not in ("train", "eval"):
            raise ValueError(f"kind must be 'train' or 'eval', got {kind!r}")
        records = self.doc[kind]
        step = int(step)
        if records and records[-1]["step"] >= step:
            # Logged again after a resume from an earlier checkpoint: the new run wins.
            records[:] = [r for r in records if r["step"] < step]
        rec = {"step": step, "time": round(time.time(), 3)}
        for k, v in metrics.items():
            if k != "step":
                rec[k] = v if isinstance(v, (int, float, str)) or v is None else _plain(v)
        records.append(rec)
        self._touch()

    def add_samples(self, step: int, samples: list[dict]) -> None:
        step = int(step)
        kept = [s for s in self.doc["samples"] if s.get("step") != step]  # one set per step
        self.doc["samples"] = kept + [{"step": step, **_plain(dict(s))} for s in samples]
        self._touch()

    def add_checkpoint(self, step: int, path: str) -> None:
        kept = [c for c in self.doc["checkpoints"] if c.get("step") != int(step)]
        self.doc["checkpoints"] = kept + [{"step": int(step), "path": str(path), "time": _now_iso()}]
        self._touch()

    def flush(self) -> None:
        """Write what is new, at most every min_interval_s: the tracker flushes at every
        evaluation, and rewriting the whole file each time would grow with the run."""
        if self._dirty and time.monotonic() - self._last_write >= self.min_interval_s:
            self._write()

    def sync(self) -> None:
        """Write what is new now, whatever the throttle (before every checkpoint)."""
        if self._dirty:
            self._write()

    def close(self, status: str, summary: dict) -> None:
        self.doc["status"] = str(status)
        self.doc["summary"] = _plain(dict(summary or {}))
        self.doc["ended_at"] = _now_iso()
        self._write()  # complete at the end, whatever the throttle

    # -- internals ---------------------------------------------------------
    def _drop_after(self, step: int) -> None:
        for key in ("train", "eval", "checkpoints", "samples"):
            self.doc[key] = [r for r in self.doc[key] if not isinstance(r.get("step"), int) or r["step"] <= step]

    def _touch(self) -> None:
        self._dirty = True
        self.flush()

    def _write(self) -> None:
        if getattr(self, "_tracking", None):
            self.doc["tracking"] = _plain(dict(self._tracking))
        self.doc["updated_at"] = _now_iso()
        _atomic_write_json(self.path, self.doc)
        self._last_write = time.monotonic()
        self._dirty = False


def _doc_from_db(db: Any, name: str) -> dict | None:
    """A run log document rebuilt from the experiments database's run `name` (metrics,
    checkpoints, samples), or None when the database does not have it."""
    if db.find_run(name) is None:
        return None
    run = db.get_run(name)
    long = db.get_metrics(name)
    rows: dict[str, dict[int, dict]] = {"train": {}, "eval": {}}
    for metric, step, value in zip(long["metric_name"], long["step"].tolist(), long["value"].tolist()):
        kind = "eval" if str(metric).startswith("val_") else "train"
        rows[kind].setdefault(step, {"step": step})[str(metric)] = value
    checkpoints, samples = [], []
    for kind, path, step, meta in db.get_artifacts(name)[["kind", "path", "step", "meta_json"]].itertuples(
            index=False):
        if kind == "checkpoint":
            checkpoints.append({"step": int(step), "path": path})
        elif kind == "samples":
            samples += [{"step": int(step), **s} for s in json.loads(meta or "{}").get("samples", [])]
    return {
        "format": FORMAT, "version": VERSION, "name": name, "status": run["status"], "created_at": _now_iso(),
        "updated_at": None, "ended_at": None, "config": run["config"], "run_info": run["run_info"],
        "resumes": [], "train": [rows["train"][s] for s in sorted(rows["train"])],
        "eval": [rows["eval"][s] for s in sorted(rows["eval"])], "checkpoints": checkpoints, "samples": samples,
        "summary": {}, "rebuilt_from_db": True,
    }


def _atomic_write_json(path: Path, doc: dict) -> None:
    """A reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)  # NaN/Infinity written as Python's json does
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- the run model ---------------------------------------------------------


@dataclass
class RunRecord:
    """One run, whatever wrote it. `train`/`eval` columns follow docs/ARCHITECTURE.md."""

    name: str
    source: str  # "run_log" | "db" | "llm-foundry"
    config: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # family, n_params, name, architecture
    hardware: dict = field(default_factory=dict)  # device, gpu_name, n_gpus, peak_flops (per GPU), gpu_memory_gib
    train: pd.DataFrame = field(default_factory=pd.DataFrame)
    eval: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    status: str = "unknown"
    lr_derived: bool = False  # lr computed from the config's schedule, not logged
    warmup_steps: int | None = None
    derived: tuple = ()  # every column computed by the reader rather than measured
    path: str | None = None
    caveat: str = ""  # "smoke preset, synthetic tokens: not a result" (style.caveat); "" for a real run

    @property
    def label(self) -> str:
        """Short name for legends: the run's own model name, else the run name."""
        return str(self.model.get("name") or self.name)

    @property
    def n_params(self) -> float:
        return float(self.model.get("n_params") or math.nan)

    def best_val(self) -> tuple[float, int | None]:
        """(best val_loss, its step), or (nan, None) when no eval ran."""
        if self.eval.empty or "val_loss" not in self.eval:
            return math.nan, None
        ev = self.eval.dropna(subset=["val_loss"])
        if ev.empty:
            return math.nan, None
        i = ev["val_loss"].idxmin()
        return float(ev.loc[i, "val_loss"]), int(ev.loc[i, "step"])

    def col(self, name: str, frame: str = "train") -> pd.Series | None:
        """A column with its NaNs dropped, or None when the run never measured it."""
        df = getattr(self, frame)
        if name not in df or df[name].notna().sum() == 0:
            return None
        return df[name]


def _frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame({"step": pd.Series(dtype="int64")})
    if "time" in df and "wall_time" not in df:
        df = df.rename(columns={"time": "wall_time"})
    return df.sort_values("step", kind="stable").reset_index(drop=True)


def _first(d: dict, *keys, default=None):
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return default


def _warmup_steps(config: dict, info: dict) -> int | None:
    """Warmup length as the run had it: given outright, or our warmup_ratio of max_steps."""
    given = _first(config, "warmup_steps", "warmup_iters")
    if given is not None:
        return int(given)
    max_steps = _first(info, "max_steps") or _first(config, "max_steps")
    if config.get("warmup_ratio") is None or not max_steps:
        return None
    from utils.training.config import warmup_steps_for

    return warmup_steps_for(float(config["warmup_ratio"]), int(max_steps))


def _from_run_log(doc: dict, path: Path) -> RunRecord:
    config, info = doc.get("config") or {}, doc.get("run_info") or {}
    hw = info.get("hardware") or {}  # the session's hardware facts (runtime.detect_runtime)
    model = {
        "name": _first(info, "model_name", default=None) or _first(config, "model_name", default=None),
        "family": _first(info, "model_family", "family", default=None) or config.get("model_family"),
        "n_params": _first(info, "n_params", "parameters", "num_params"),
        "flops_per_token": info.get("flops_per_token"),
    }
    hardware = {
        "device": _first(info, "device", "device_name"),
        # No GPU name on CPU runs: plots then say "cpu", never "1x cpu" as if it were a GPU.
        "gpu_name": _first(info, "gpu_name") or hw.get("gpu_name") or None,
        "n_gpus": _first(info, "world_size", "n_gpus", default=1),
        "peak_flops": _first(info, "peak_flops", "peak_flops_per_gpu"),
        # True when the GPU was not in the peak table and a stand-in peak was used for MFU.
        "peak_estimated": bool(info.get("peak_flops_estimated", False)),
        "gpu_memory_gib": _first(info, "gpu_memory_gb", "gpu_memory_gib") or hw.get("gpu_memory_gb") or None,
    }
    return RunRecord(
        name=doc.get("name") or path.stem,
        source="run_log",
        config=config,
        model=model,
        hardware=hardware,
        train=_frame(doc.get("train", [])),
        eval=_frame(doc.get("eval", [])),
        checkpoints=list(doc.get("checkpoints", [])),
        samples=list(doc.get("samples", [])),
        summary=dict(doc.get("summary") or {}),
        status=doc.get("status", "unknown"),
        warmup_steps=_warmup_steps(config, info),
        path=str(path),
        caveat=_caveat(config, info),
    )


def _caveat(config: dict, info: dict) -> str:
    from utils.training.viz.style import caveat

    synthetic = bool((info.get("data") or {}).get("synthetic")) or config.get("data_source") == "synthetic"
    return caveat(str(config.get("preset") or ""), synthetic)


def nanogpt_lr(it: int, config: dict) -> float:
    """llm-foundry's (nanoGPT's) schedule: linear warmup over warmup_iters, cosine to
    min_lr at lr_decay_iters, min_lr after."""
    lr, min_lr = float(config["learning_rate"]), float(config.get("min_lr", 0.0))
    if not config.get("decay_lr", True):
        return lr
    warmup, decay = int(config.get("warmup_iters", 0)), int(config.get("lr_decay_iters", 1))
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def _from_llm_foundry(doc: dict, path: Path) -> RunRecord:
    config = dict(doc.get("config") or {})
    startup = doc.get("startup_info") or {}
    hw = startup.get("hardware") or {}
    n_gpus = int(_first(hw, "num_gpus", default=None) or (doc.get("metadata") or {}).get("world_size") or 1)
    # nanoGPT's gradient_accumulation_steps in the config is global (divided by world size per rank).
    tokens_per_iter = int(config.get("batch_size", 0)) * int(config.get("block_size", 0))
    tokens_per_iter *= int(config.get("gradient_accumulation_steps", 1))
    rows, peak_flops, architecture = [], None, None
    prev_iter, prev_ms, elapsed_ms = None, math.inf, 0.0
    for it in doc.get("training_iterations", []):
        step = int(it["iter"])
        # Wall time between log points is not logged, only the time of the logged
        # iteration (which includes an eval or compile when one ran there). The
        # interval is that time once plus the unlogged iterations at the smaller of
        # the two neighbouring logged times; so elapsed_s is derived (within 0.5%
        # of end_time - start_time on the six logs we have).
        ms = float(it.get("time_ms", math.nan))
        elapsed_ms += ms + (step - prev_iter - 1) * min(ms, prev_ms) if prev_iter is not None else ms
        prev_iter, prev_ms = step, ms
        row = {
            "step": step,
            "train_loss": it.get("loss"),
            "step_time_ms": it.get("time_ms"),
            "tokens_seen": (step + 1) * tokens_per_iter,  # iter i is logged after its step: i + 1 done
            "elapsed_s": elapsed_ms / 1000.0,
            "lr": nanogpt_lr(step, config) if "learning_rate" in config else math.nan,
        }
        mfu = it.get("mfu")
        if isinstance(mfu, dict):  # a float (-100.0) before the first measured interval: not a value
            per_gpu = float(mfu.get("tokens_per_sec", math.nan))
            gpus = float(mfu.get("num_gpus") or n_gpus)
            row.update(
                mfu_pct=mfu.get("mfu_percent"),
                tokens_per_sec_per_gpu=per_gpu,
                tokens_per_sec=per_gpu * gpus,
            )
            peak_flops = mfu.get("hardware_peak_flops", peak_flops)
            architecture = mfu.get("architecture", architecture)
        mem = it.get("memory")
        if isinstance(mem, dict):
            for src, dst in (("allocated_gb", "memory_allocated_gb"), ("reserved_gb", "memory_reserved_gb"),
                             ("max_allocated_gb", "memory_peak_gb")):
                if mem.get(src) is not None:
                    row[dst] = float(mem[src]) * GB_TO_GIB
        rows.append(row)
    train = pd.DataFrame(rows) if rows else pd.DataFrame({"step": pd.Series(dtype="int64")})
    evals = [{"step": int(e["iter"]), "val_loss": e.get("val_loss"), "train_loss": e.get("train_loss"),
              "lr": e.get("lr"), "timestamp": e.get("timestamp")} for e in doc.get("eval_steps", [])]
    ev = _frame(evals)
    if "val_loss" in ev:
        ev["val_perplexity"] = ev["val_loss"].map(math.exp)
    summary = dict(doc.get("summary") or {})
    if summary.get("best_val_loss", 0) >= 1e9:  # llm-foundry's "no eval ran"
        summary["best_val_loss"] = math.nan
    if "train_loss" in train:
        train["train_perplexity"] = train["train_loss"].map(math.exp)
    out_dir = str(config.get("out_dir") or "")
    gpu_mem = hw.get("gpu_memory_gb")
    return RunRecord(
        name=doc.get("run_name") or path.stem,
        source="llm-foundry",
        config=config,
        model={
            "name": out_dir.removeprefix("out-") or None,
            "family": config.get("arch_preset"),
            "architecture": architecture,
            "n_params": (startup.get("model") or {}).get("total_params"),
        },
        hardware={
            "device": (doc.get("metadata") or {}).get("device"),
            "gpu_name": hw.get("gpu_name"),
            "n_gpus": n_gpus,
            "peak_flops": peak_flops,
            "gpu_memory_gib": float(gpu_mem) * GB_TO_GIB if gpu_mem else None,
        },
        train=train,
        eval=ev,
        checkpoints=[{"step": int(c["iter"]), **{k: v for k, v in c.items() if k != "iter"}}
                     for c in doc.get("checkpoints", [])],
        samples=[],
        summary=summary,
        status="completed" if summary and doc.get("end_time") else "interrupted",
        lr_derived=True,
        warmup_steps=config.get("warmup_iters"),
        derived=("lr", "elapsed_s", "tokens_seen", "tokens_per_sec"),
        path=str(path),
    )


def _from_db(db, name: str) -> RunRecord:
    """An ExperimentDB run: metrics in long format, val_* names go to the eval frame."""
    if isinstance(db, (str, Path)):
        from utils.training.tracking.experiment_db import ExperimentDB

        db = ExperimentDB(db)
    run = db.get_run(name)
    if not run:
        raise KeyError(f"no run {name!r} in the experiment database")
    run_id = _first(run, "run_id", "id")
    config = run.get("config") or {}
    if isinstance(config, str):
        config = json.loads(config)
    long = db.get_metrics(run_id)
    if long is not None and not long.empty:
        from utils.training.tracking.seed_db import SEED_TO_OURS

        # Points logged with the seed's names (db.log_metric(run, "val/loss", ...)) plot as ours.
        names = set(long["metric_name"].unique())
        rename = {k: v for k, v in SEED_TO_OURS.items() if k in names and v not in names}
        if rename:
            long = long.assign(metric_name=long["metric_name"].astype(str).replace(rename))
    train, ev = pd.DataFrame({"step": pd.Series(dtype="int64")}), pd.DataFrame({"step": pd.Series(dtype="int64")})
    if long is not None and not long.empty:
        is_val = long["metric_name"].str.startswith("val_")
        wide = {}
        for key, part in (("train", long[~is_val]), ("eval", long[is_val])):
            if part.empty:
                continue
            w = part.pivot_table(index="step", columns="metric_name", values="value", aggfunc="last", dropna=False)
            wide[key] = w.reset_index().rename_axis(columns=None)
        train = wide.get("train", train)
        ev = wide.get("eval", ev)
    info = run.get("run_info") or {}
    if isinstance(info, str):
        info = json.loads(info)
    rec = _from_run_log({"name": run.get("run_name") or run.get("name") or name, "config": config,
                         "run_info": info, "status": run.get("status", "unknown")}, Path(str(name)))
    rec.source, rec.train, rec.eval, rec.path = "db", train, ev, None
    rec.summary = {k: run[k] for k in ("best_val_loss", "final_train_loss", "total_time") if k in run}
    return rec


class RunLogError(ValueError):
    """A file that cannot be read as a run: the message names the file and what is wrong."""


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except UnicodeDecodeError:
        raise RunLogError(f"{path}: not a text file (a run log is JSON)") from None
    except RecursionError:
        raise RunLogError(f"{path}: nested too deeply to be a run log") from None
    except ValueError as e:  # empty, truncated, not JSON, a 5000-digit number
        raise RunLogError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise RunLogError(f"{path}: holds a JSON {type(doc).__name__}, not a run log object")
    return doc


def _check_records(doc: dict, path: Path) -> None:
    """Steps are integers and metric values numbers (or null): a string where a loss
    should be is named here, not found by a plot's traceback."""
    for kind in ("train", "eval"):
        records = doc.get(kind, [])
        if not isinstance(records, list):
            raise RunLogError(f"{path}: {kind!r} is a {type(records).__name__}, not a list of records")
        for i, r in enumerate(records):
            if not isinstance(r, dict) or isinstance(r.get("step"), bool) or not isinstance(r.get("step"), int):
                raise RunLogError(f"{path}: {kind} record {i} has no integer step: {str(r)[:80]}")
            for k, v in r.items():
                if k != "time" and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise RunLogError(f"{path}: {kind} record at step {r['step']}: {k} is {v!r:.60}, not a number")


def load_run(spec, db=None) -> RunRecord:
    """A run log file or run folder, an llm-foundry log (told apart by its keys),
    or "db:NAME" read through `db` (an ExperimentDB or its path). RunLogError (a
    ValueError naming the file) when the file is not a readable run."""
    if isinstance(spec, str) and spec.startswith("db:"):
        if db is None:
            raise ValueError("load_run('db:NAME') needs db= (an ExperimentDB or the path of experiments.db)")
        return _from_db(db, spec[3:])
    path = Path(spec)
    if path.is_dir():
        path = path / "run.json"
    doc = _read_json(path)
    if "training_iterations" in doc:
        return _from_llm_foundry(doc, path)
    if doc.get("format") == FORMAT:
        _check_records(doc, path)
        return _from_run_log(doc, path)
    raise RunLogError(f"{path}: neither a run log ({FORMAT}) nor an llm-foundry log")


def run_log_specs(folder) -> list[Path]:
    """The run logs of a folder: its run.json when it is a run folder (its other JSON
    files, config.json and the report's, are not runs), else its *.json and */run.json."""
    folder = Path(folder)
    if (folder / "run.json").is_file():
        return [folder / "run.json"]
    return sorted(folder.glob("*.json")) + sorted(folder.glob("*/run.json"))


def load_runs(paths_or_folder) -> list[RunRecord]:
    """Every run in a folder (see run_log_specs), or a list of specs."""
    if isinstance(paths_or_folder, (str, Path)) and Path(paths_or_folder).is_dir():
        specs = run_log_specs(paths_or_folder)
    else:
        specs = list(paths_or_folder)
    return [load_run(s) for s in specs]
