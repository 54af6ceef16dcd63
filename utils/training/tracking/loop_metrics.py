"""MetricsTracker's calls for a training loop of your own (the seed notebook's API).

A mixin of metrics.MetricsTracker: the same object that is a callback of our Trainer can
be called by hand from any loop:

    tracker = MetricsTracker([ExperimentDBSink(db, "my-run", config)], use_wandb=False)
    tracker.log_scalar("train/batch_loss", loss.item())          # step auto-increments
    tracker.log_epoch(epoch, {"loss": tl, "accuracy": ta}, {"loss": vl, "accuracy": va},
                      learning_rate=lr, gradient_norm=gn, epoch_duration=seconds)
    tracker.close()                                               # the run row: completed
    tracker.get_summary()                                         # one row per epoch

Everything goes on ONE step axis: log_scalar's steps (explicit or counted), and each
epoch at the step reached when it is logged (the epoch number, if no scalar was logged).
W&B gets the same steps, never a smaller one than it already has (the seed logged batches
and epochs on two counters, which W&B drops). Sinks receive our metric names
(seed_db.SEED_TO_OURS: train/loss -> train_loss, ...), so runs plot and the dashboard read
them; get_summary() keeps the seed's column names.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from typing import Any

import pandas as pd

from utils.training.tracking.seed_db import SEED_TO_OURS

SUMMARY_COLUMNS = ("epoch", "train/loss", "train/perplexity", "train/accuracy", "val/loss", "val/perplexity",
                   "val/accuracy", "learning_rate", "gradient_norm", "epoch_duration")
PERPLEXITY_MAX_LOSS = 100.0  # exp(100) ~ 2.7e43: beyond that a perplexity means nothing


class LoopTracking:
    """log_scalar / log_epoch / get_summary / ... (module docstring)."""

    def _init_loop_tracking(self, use_wandb: bool, gradient_accumulation_steps: int) -> None:
        if int(gradient_accumulation_steps) < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps!r}")
        self.use_wandb = bool(use_wandb)
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.metrics_history: list[dict[str, Any]] = []  # one dict per log_epoch
        self._step_rows: list[dict[str, Any]] = []
        self._global_step = 0  # the next auto step of log_scalar
        self._last_step: int | None = None  # the largest step logged so far (one axis for all)
        self._wandb_step = -1
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
        if not isinstance(metric_name, str) or not metric_name:
            raise ValueError(f"metric_name must be a non-empty string, got {metric_name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if hasattr(value, "item"):
                value = value.item()  # a 0-d tensor or numpy scalar
            else:
                raise ValueError(f"value must be a number, got {type(value).__name__}")
        with self._lock:
            if step is None:
                step = self._global_step
            self._global_step = max(self._global_step, int(step) + 1)
            effective = int(step) // self.gradient_accumulation_steps
            self._step_rows.append({"step": int(step), "effective_step": effective, "metric": metric_name,
                                    "value": float(value), "timestamp": datetime.now().isoformat()})
            self._last_step = effective if self._last_step is None else max(self._last_step, effective)
        if int(step) % self.gradient_accumulation_steps == 0:  # one point per optimizer step
            self._emit(effective, {metric_name: float(value)}, commit=commit)

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
        row.update(self._gpu_metrics())
        self.metrics_history.append(row)
        step = self._last_step if self._last_step is not None else int(epoch)
        self._emit(step, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
        acc = row["val/accuracy"]
        print(f"Epoch {epoch}: train_loss={row['train/loss']:.4f} val_loss={row['val/loss']:.4f} "
              f"val_ppl={row['val/perplexity']:.2f}" + ("" if math.isnan(acc) else f" val_acc={acc:.4f}"))
        return row

    def _gpu_metrics(self) -> dict[str, float]:
        import torch

        if not torch.cuda.is_available():
            return {}
        out = {"system/gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20}  # MiB (the seed's name)
        from utils.training.tracking.metrics import nvml_handle

        handle = nvml_handle(torch.cuda.current_device())
        if handle is not None:
            import pynvml

            try:
                out["system/gpu_utilization"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                pass  # the driver refused: the column is left out, as on a machine without NVML
        return out

    def _emit(self, step: int, metrics: dict[str, float], commit: bool = True) -> None:
        """To the sinks (our names) and W&B (the seed's names, a step that never goes back)."""
        if self.sinks:
            self._start_sinks()
            ours = {SEED_TO_OURS.get(k, k): v for k, v in metrics.items()}
            val = {k: v for k, v in ours.items() if k.startswith("val_")}
            train = {k: v for k, v in ours.items() if k not in val}
            for sink in self.sinks:  # a run log keeps train and eval records apart
                if train:
                    sink.write(step, train, "train")
                if val:
                    sink.write(step, val, "eval")
        if self.use_wandb:
            self._to_wandb(step, metrics, commit)

    def _to_wandb(self, step: int, metrics: dict[str, float], commit: bool) -> None:
        try:
            import wandb
        except ImportError:
            print("MetricsTracker: wandb is not installed (pip install wandb); W&B logging is off")
            self.use_wandb = False
            return
        if wandb.run is None:
            return  # no wandb.init(): nothing to log to (the seed's call raised and printed here)
        self._wandb_step = max(self._wandb_step, int(step))
        wandb.log(dict(metrics), step=self._wandb_step, commit=commit)

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
        best = min(val) if val else None
        summary = {"best_val_loss": best, "final_step": self._last_step,
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
