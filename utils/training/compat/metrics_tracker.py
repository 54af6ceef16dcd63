"""The seed notebook's MetricsTracker: the core tracker (tracking/metrics.py) plus the calls
a training loop of your own makes.

    tracker = MetricsTracker([ExperimentDBSink(db, "my-run", config)], use_wandb=False)
    tracker.log_scalar("train/batch_loss", loss.item())          # step auto-increments
    tracker.log_epoch(epoch, {"loss": tl, "accuracy": ta}, {"loss": vl, "accuracy": va},
                      learning_rate=lr, gradient_norm=gn, epoch_duration=seconds)
    tracker.close()                                               # the run row: completed
    tracker.get_summary()                                         # one row per epoch

Everything goes on ONE step axis: log_scalar's steps (explicit or counted), and each
epoch at the step reached when it is logged (the epoch number, if no scalar was logged).
`use_wandb=True` adds the W&B sink for the run the caller's code started (wandb.init),
which never sends a smaller step than it already sent. The other sinks receive our metric
names (seed_db.SEED_TO_OURS: train/loss -> train_loss, ...), so runs plot and the
dashboard read them; W&B and get_summary() keep the seed's names.

Every module this needs is imported here, at the top: log_epoch and the constructor run
no import statement but wandb's.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import torch

from utils.training.contracts import MetricsSink
from utils.training.tracking.metrics import MetricsTracker as CoreMetricsTracker
from utils.training.tracking.seed_db import SEED_TO_OURS
from utils.training.tracking.sinks import ReportingOptions, sinks_for
from utils.training.tracking.wandb_logger import WandbRunSink

SUMMARY_COLUMNS = ("epoch", "train/loss", "train/perplexity", "train/accuracy", "val/loss", "val/perplexity",
                   "val/accuracy", "learning_rate", "gradient_norm", "epoch_duration")
PERPLEXITY_MAX_LOSS = 100.0  # exp(100) ~ 2.7e43: beyond that a perplexity means nothing
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT_S = 5.0


def _number(value: Any) -> float:
    """A one-element tensor or numpy scalar as a float; anything else is refused."""
    try:
        number = value.item()
    except (AttributeError, RuntimeError, ValueError):
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"value must be numeric (a number or a one-element tensor), got "
                         f"{type(value).__name__} {value!r:.40}")
    return float(number)


class MetricsTracker(CoreMetricsTracker):
    """MetricsTracker(use_wandb=True, gradient_accumulation_steps=1) as the seed calls it,
    or MetricsTracker([sink, ...], use_wandb=...) to record the run in our stores too."""

    def __init__(self, sinks_or_use_wandb: Sequence[MetricsSink] | bool = (), gradient_accumulation_steps: int = 1,
                 *, use_wandb: bool | None = None, **core: Any):
        if isinstance(sinks_or_use_wandb, bool):  # the seed's first argument is use_wandb
            sinks, wandb_on = (), sinks_or_use_wandb
        else:
            sinks, wandb_on = list(sinks_or_use_wandb), True
        if use_wandb is not None:
            wandb_on = bool(use_wandb)
        if isinstance(gradient_accumulation_steps, bool) or int(gradient_accumulation_steps) < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps!r}")
        sinks = list(sinks) + sinks_for(ReportingOptions(wandb_attach=wandb_on), run_name="")
        super().__init__(sinks, **core)
        self.use_wandb = wandb_on
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.metrics_history: list[dict[str, Any]] = []  # one dict per log_epoch
        self._step_rows: list[dict[str, Any]] = []
        self._global_step = 0  # the next auto step of log_scalar
        self._last_step: int | None = None  # the largest step logged so far (one axis for all)
        self._started = False
        self._lock = threading.Lock()  # log_scalar may be called from DataLoader worker threads

    # -- the seed's computations ---------------------------------------------------------
    @staticmethod
    def compute_perplexity(loss: float) -> float:
        """exp(loss), with the loss clipped at 100 so a diverged run gives a number, not inf."""
        return math.exp(min(float(loss), PERPLEXITY_MAX_LOSS))

    @staticmethod
    def compute_accuracy(logits: Any, labels: Any, ignore_index: int = -100) -> float:
        """Share of positions where argmax(logits) equals the label, ignoring `ignore_index`.
        logits [..., vocab], labels [...] (already aligned: shift them for next-token accuracy)."""
        mask = labels != ignore_index
        total = int(mask.sum().item())
        if total == 0:
            raise ZeroDivisionError(f"every label is ignore_index ({ignore_index}): no token to score")
        correct = ((logits.argmax(dim=-1) == labels) & mask).sum().item()
        return correct / total

    # -- logging -------------------------------------------------------------------------
    def log_scalar(self, metric_name: str, value: float, step: int | None = None, commit: bool = True) -> None:
        """One point of `metric_name` at `step` (default: the next step). `commit` is taken
        for the seed's signature; every point is sent at its step."""
        if not isinstance(metric_name, str) or not metric_name:
            raise ValueError(f"metric_name must be a non-empty string, got {metric_name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            value = _number(value)
        with self._lock:
            if step is None:
                step = self._global_step
            self._global_step = max(self._global_step, int(step) + 1)
            effective = int(step) // self.gradient_accumulation_steps
            self._step_rows.append({"step": int(step), "effective_step": effective, "metric": metric_name,
                                    "value": float(value), "timestamp": datetime.now().isoformat()})
            self._last_step = effective if self._last_step is None else max(self._last_step, effective)
        if int(step) % self.gradient_accumulation_steps == 0:  # one point per optimizer step
            self._emit(effective, {metric_name: float(value)})

    def log_epoch(self, epoch: int, train_metrics: dict, val_metrics: dict, learning_rate: float = math.nan,
                  gradient_norm: float = math.nan, epoch_duration: float = math.nan) -> dict[str, Any]:
        """One row of get_summary(); `loss` required in both dicts, `accuracy` optional."""
        for which, d in (("train_metrics", train_metrics), ("val_metrics", val_metrics)):
            if not isinstance(d, dict) or "loss" not in d:
                raise ValueError(f"{which} must be a dict with a 'loss' key, got {d!r}")
        row: dict[str, Any] = {"epoch": int(epoch)}
        for prefix, d in (("train", train_metrics), ("val", val_metrics)):
            row[f"{prefix}/loss"] = float(d["loss"])
            row[f"{prefix}/perplexity"] = self.compute_perplexity(d["loss"])
            row[f"{prefix}/accuracy"] = float(d["accuracy"]) if d.get("accuracy") is not None else math.nan
        row.update({"learning_rate": float(learning_rate), "gradient_norm": float(gradient_norm),
                    "epoch_duration": float(epoch_duration)})
        if torch.cuda.is_available():
            row["system/gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20  # MiB
            row["system/gpu_utilization"] = self._get_gpu_utilization()  # percent
        self.metrics_history.append(row)
        step = self._last_step if self._last_step is not None else int(epoch)
        self._emit(step, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
        acc = row["val/accuracy"]
        print(f"Epoch {epoch}: train_loss={row['train/loss']:.4f} val_loss={row['val/loss']:.4f} "
              f"val_ppl={row['val/perplexity']:.2f}" + ("" if math.isnan(acc) else f" val_acc={acc:.4f}"))
        return row

    def _get_gpu_utilization(self) -> float:
        """The first GPU's utilization in percent, as nvidia-smi reports it; 0.0 when it
        cannot be had (no nvidia-smi, an error, a timeout, output that is not a number)."""
        # Found on PATH here: subprocess's own PATH search runs an import statement per call.
        executable = shutil.which(NVIDIA_SMI[0])
        if executable is None:
            return 0.0
        try:
            out = subprocess.run([executable, *NVIDIA_SMI[1:]], capture_output=True, text=True, check=True,
                                 timeout=NVIDIA_SMI_TIMEOUT_S).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return 0.0

    def _emit(self, step: int, metrics: dict[str, float]) -> None:
        """W&B gets the seed's names in one point; the other sinks ours, train and eval apart."""
        self._start_sinks()
        ours = {SEED_TO_OURS.get(k, k): v for k, v in metrics.items()}
        val = {k: v for k, v in ours.items() if k.startswith("val_")}
        train = {k: v for k, v in ours.items() if k not in val}
        for sink in self.sinks:
            if isinstance(sink, WandbRunSink):
                sink.write(step, dict(metrics))
                continue
            if train:
                sink.write(step, train, "train")
            if val:
                sink.write(step, val, "eval")

    def _start_sinks(self) -> None:
        if self._started:
            return
        self._started = True
        for sink in self.sinks:
            sink.start({"started_at": time.time(), "source": "MetricsTracker (own loop)"})

    def close(self, status: str = "completed") -> None:
        """Flush and close the sinks (the database run row gets `status` and a summary)."""
        if not self._started:
            return
        val = [r["val/loss"] for r in self.metrics_history]
        summary = {"best_val_loss": min(val) if val else None, "final_step": self._last_step,
                   "final_train_loss": self.metrics_history[-1]["train/loss"] if self.metrics_history else None}
        for sink in self.sinks:
            sink.close(status, dict(summary))
        self._started = False

    # -- reading back --------------------------------------------------------------------
    def get_summary(self) -> pd.DataFrame:
        """One row per log_epoch call: SUMMARY_COLUMNS (+ system/gpu_* on a GPU)."""
        if not self.metrics_history:
            return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
        return pd.DataFrame(self.metrics_history)

    def get_best_epoch(self, metric: str = "val/loss", mode: str = "min") -> int:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        df = self.get_summary()
        if metric not in df or df[metric].dropna().empty:
            raise ValueError(f"no values of {metric!r} logged (columns: {list(df.columns)})")
        idx = df[metric].idxmin() if mode == "min" else df[metric].idxmax()
        return int(df.loc[idx, "epoch"])

    def get_step_metrics(self) -> pd.DataFrame:
        """Columns step, effective_step, metric, value, timestamp; sorted by step."""
        with self._lock:
            df = pd.DataFrame(self._step_rows, columns=["step", "effective_step", "metric", "value", "timestamp"])
        return df.sort_values("step", kind="stable").reset_index(drop=True)
