"""Reader of our own run log (runs/NAME/run.json, written by tracking/run_log.py) into a
RunRecord. Its run_info was written by several versions of the library (and by the
Hugging Face callback), so a fact may sit under an older key: each is read here once
and stored under our name."""

from __future__ import annotations

from pathlib import Path

from utils.training.tracking.readers.keys import NUMBER, SUMMARY_NUMBERS, check_fields, first_present
from utils.training.tracking.run_log_format import check_records
from utils.training.tracking.run_record import RunRecord, records_frame


def read_run_log(doc: dict, path: Path) -> RunRecord:
    """A run log document (already parsed) -> RunRecord. RunLogError when a record is bad."""
    check_records(doc, path)
    check_fields(doc, path, {"name": str, "status": str, "config": dict, "run_info": dict, "summary": dict,
                             "checkpoints": list, "samples": list})
    config, info = doc.get("config") or {}, doc.get("run_info") or {}
    check_fields(info, path, {"hardware": dict, "data": dict, "max_steps": NUMBER}, "run_info.")
    check_fields(doc.get("summary") or {}, path, dict.fromkeys(SUMMARY_NUMBERS, NUMBER), "summary.")
    check_fields(config, path, {"warmup_steps": NUMBER, "warmup_iters": NUMBER, "warmup_ratio": NUMBER,
                                "max_steps": NUMBER}, "config.")
    return RunRecord(
        name=doc.get("name") or path.stem,
        source="run_log",
        config=config,
        model=model_facts(config, info),
        hardware=hardware_facts(info),
        train=records_frame(doc.get("train", [])),
        eval=records_frame(doc.get("eval", [])),
        checkpoints=list(doc.get("checkpoints", [])),
        samples=list(doc.get("samples", [])),
        summary=dict(doc.get("summary") or {}),
        status=doc.get("status", "unknown"),
        warmup_steps=warmup_steps(config, info),
        path=str(path),
        caveat=caveat(config, info),
        max_grad_norm=first_present(config, "max_grad_norm", "grad_clip"),  # ours; older logs: grad_clip
    )


def model_facts(config: dict, info: dict) -> dict:
    """RunRecord.model from a run's config and run_info (ours, any version)."""
    return {
        "name": first_present(info, "model_name") or first_present(config, "model_name"),
        "family": first_present(info, "model_family", "family") or config.get("model_family"),
        "n_params": first_present(info, "n_params", "parameters", "num_params"),
        "flops_per_token": info.get("flops_per_token"),
    }


def hardware_facts(info: dict) -> dict:
    """RunRecord.hardware from a run's run_info (ours, any version)."""
    hw = info.get("hardware") or {}  # the session's hardware facts (runtime.detect_runtime)
    return {
        "device": first_present(info, "device", "device_name"),
        # No GPU name on CPU runs: plots then say "cpu", never "1x cpu" as if it were a GPU.
        "gpu_name": first_present(info, "gpu_name") or hw.get("gpu_name") or None,
        "n_gpus": first_present(info, "world_size", "n_gpus", default=1),
        "peak_flops": first_present(info, "peak_flops", "peak_flops_per_gpu"),
        # True when the GPU was not in the peak table and a stand-in peak was used for MFU.
        "peak_estimated": bool(info.get("peak_flops_estimated", False)),
        # GiB (runtime's gpu_memory_gb holds GiB despite its name)
        "gpu_memory_gib": first_present(info, "gpu_memory_gb", "gpu_memory_gib") or hw.get("gpu_memory_gb") or None,
    }


def warmup_steps(config: dict, info: dict) -> int | None:
    """Warmup length as the run had it: given outright, or our warmup_ratio of max_steps."""
    given = first_present(config, "warmup_steps", "warmup_iters")
    if given is not None:
        return int(given)
    max_steps = first_present(info, "max_steps") or first_present(config, "max_steps")
    if config.get("warmup_ratio") is None or not max_steps:
        return None
    from utils.training.config import warmup_steps_for

    return warmup_steps_for(float(config["warmup_ratio"]), int(max_steps))


def caveat(config: dict, info: dict) -> str:
    """The figure caveat of a smoke or synthetic-data run ("" for a real run)."""
    from utils.training.text import caveat as text_caveat

    synthetic = bool((info.get("data") or {}).get("synthetic")) or config.get("data_source") == "synthetic"
    return text_caveat(str(config.get("preset") or ""), synthetic)
