"""Reader of llm-foundry (nanoGPT-style) training logs into a RunRecord, our names at
read time (docs/run_log_format.md, "Reading runs"): per-GPU tokens/s becomes
tokens_per_sec_per_gpu with tokens_per_sec for all GPUs; memory in 1e9-byte GB becomes
GiB in our `*_gb` columns; the lr, tokens_seen and elapsed_s it does not log are derived
(and listed in RunRecord.derived); `grad_clip` is our max_grad_norm."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from utils.training.tracking.readers.keys import NUMBER, SUMMARY_NUMBERS, check_fields, first_present
from utils.training.tracking.run_log_format import RunLogError
from utils.training.tracking.run_record import RunRecord, records_frame

GB_TO_GIB = 1e9 / 2**30  # llm-foundry writes memory in 1e9-byte GB; we store and plot GiB


def is_llm_foundry(doc: dict) -> bool:
    """An llm-foundry log is told apart by its `training_iterations` list."""
    return "training_iterations" in doc


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


def read_llm_foundry(doc: dict, path: Path) -> RunRecord:
    """An llm-foundry log document (already parsed) -> RunRecord."""
    check_fields(doc, path, {"run_name": str, "config": dict, "startup_info": dict, "metadata": dict,
                             "summary": dict, "training_iterations": list, "eval_steps": list, "checkpoints": list})
    config = dict(doc.get("config") or {})
    check_fields(doc.get("summary") or {}, path, dict.fromkeys(SUMMARY_NUMBERS, NUMBER), "summary.")
    check_fields(config, path, dict.fromkeys(("learning_rate", "min_lr", "warmup_iters", "lr_decay_iters",
                                              "batch_size", "block_size", "gradient_accumulation_steps",
                                              "grad_clip"), NUMBER), "config.")
    for kind in ("training_iterations", "eval_steps", "checkpoints"):
        for i, rec in enumerate(doc.get(kind) or []):
            if not isinstance(rec, dict) or isinstance(rec.get("iter"), bool) or not isinstance(rec.get("iter"), int):
                raise RunLogError(f"{path}: {kind} record {i} has no integer 'iter': {str(rec)[:80]}")
            check_fields(rec, path, dict.fromkeys(("loss", "time_ms", "val_loss", "train_loss", "lr"), NUMBER),
                         f"{kind}[{i}].")
    startup = doc.get("startup_info") or {}
    hw = startup.get("hardware") or {}
    n_gpus = int(first_present(hw, "num_gpus", default=None) or (doc.get("metadata") or {}).get("world_size") or 1)
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
    ev = records_frame(evals)
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
        max_grad_norm=config.get("grad_clip"),
    )

