"""RunRecord: one run, whatever wrote it, in our vocabulary. The readers (readers/) turn
each format into one; the figures read only this. Column and key names are those of
docs/ARCHITECTURE.md ("One vocabulary"): train_loss, val_loss, lr, tokens_per_sec, ...;
`*_gb` memory columns hold GiB (2**30 bytes; the names are a stored data contract)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class RunRecord:
    """One run. `train`/`eval` columns follow docs/ARCHITECTURE.md; every key below is
    filled by the reader under our name, so a consumer never looks for aliases."""

    name: str
    source: str  # "run_log" | "db" | "llm-foundry" | "dataframe"
    config: dict = field(default_factory=dict)  # as the run had it (its own keys)
    model: dict = field(default_factory=dict)  # name, family, n_params, flops_per_token, architecture
    hardware: dict = field(default_factory=dict)  # device, gpu_name, n_gpus, peak_flops (per GPU),
    # peak_estimated, gpu_memory_gib
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
    # Gradient clipping threshold (our max_grad_norm; llm-foundry's grad_clip); None: not
    # recorded; 0: no clipping. Defaults to config["max_grad_norm"].
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.max_grad_norm is None and self.config.get("max_grad_norm") is not None:
            self.max_grad_norm = self.config["max_grad_norm"]

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


def records_frame(records: list[dict]) -> pd.DataFrame:
    """A train/eval DataFrame from records ({"step", "time", metric: value}), sorted by
    step; the records' `time` becomes `wall_time`."""
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame({"step": pd.Series(dtype="int64")})
    if "time" in df and "wall_time" not in df:
        df = df.rename(columns={"time": "wall_time"})
    return df.sort_values("step", kind="stable").reset_index(drop=True)
