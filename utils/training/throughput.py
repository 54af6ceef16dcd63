"""A run's throughput and what it was measured on: one definition, one wording.

One run shows one throughput: the tokens it trained on over its wall time (the trainer's
elapsed_s, evaluation, sampling and checkpoints included: the time a user waits for those
tokens). The card line, the progress bar, the dashboard, the run analysis, the comparison
bars and its table all use `run_throughput` (figures through viz.series.record_throughput). The per-log `tokens_per_sec` curve is a
different measure (the steps of one log interval, evaluation excluded) and is labelled so.

Labels say what was measured on what device: "tokens/s on CPU", "tokens/s on 1 GPU",
"tokens/s, 4 GPUs together", never "(all GPUs)" for a CPU run.
"""

from __future__ import annotations

import math

from utils.training.text import duration, human

DEFINITION = "tokens seen / wall time"


def run_throughput(tokens: float | None, seconds: float | None) -> float:
    """Tokens over wall time (tokens/s); NaN when either is unknown or the time is 0."""
    if tokens is None or seconds is None or not seconds or tokens != tokens or seconds != seconds:
        return math.nan
    return float(tokens) / float(seconds)


def throughput_text(tokens: float | None, seconds: float | None) -> str:
    """'304 tokens/s (15,360 tokens / 50.6 s wall time)': the number with its definition."""
    tps = run_throughput(tokens, seconds)
    if tps != tps:
        return "throughput n/a"
    return f"{tps:,.0f} tokens/s ({tokens:,.0f} tokens / {duration(seconds)} wall time)"


def hardware_of(run_info: dict | None) -> dict:
    """The RunRecord.hardware keys (device, gpu_name, n_gpus) from a trainer's run_info."""
    info = run_info or {}
    if isinstance(info.get("hardware"), dict) and info["hardware"].get("device"):
        return dict(info["hardware"])
    device = str(info.get("device") or "").split(":")[0]
    gpu = info.get("gpu_name") or ""
    return {"device": device, "gpu_name": gpu, "n_gpus": int(info.get("world_size") or 1) if gpu else 0}


def measured_on(hardware: dict | None) -> str:
    """'on CPU', 'on 1 GPU', ', 4 GPUs together', 'on MPS'; '' when the device is unknown."""
    hw = hardware or {}
    if hw.get("gpu_name"):
        n = int(hw.get("n_gpus") or 1)
        return "on 1 GPU" if n == 1 else f", {n} GPUs together"
    device = str(hw.get("device") or "").split(":")[0]
    if device == "cuda":
        return "on GPU"
    return f"on {device.upper()}" if device else ""


def throughput_label(hardware: dict | None, what: str = "tokens/s") -> str:
    """An axis label: 'tokens/s on CPU', 'tokens/s, 4 GPUs together'; plain 'tokens/s' if unknown."""
    where = measured_on(hardware)
    return what if not where else f"{what}{'' if where.startswith(',') else ' '}{where}"


def short(tps: float) -> str:
    """'304 tokens/s' (human: '12.3K tokens/s'); 'n/a' for NaN."""
    return "n/a" if tps != tps else f"{human(tps)} tokens/s"
