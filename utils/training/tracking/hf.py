"""Our tracking, live plot and dashboard for a Hugging Face `transformers.Trainer` run.

    from utils.training.tracking.hf import ExperimentCallback
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      callbacks=[ExperimentCallback("workspace/experiments.db")])
    trainer.train()   # -> a run row + metrics in experiments.db, OUTPUT_DIR/run.json,
                      #    the live figure in the notebook, OUTPUT_DIR/dashboard.png at the end

The callback translates the Trainer's events into ours and hands them to the same
callbacks our own Trainer uses: MetricsTracker (writing ExperimentDBSink and RunLogWriter)
and LivePlotter. Metric names become ours: loss -> train_loss, learning_rate -> lr,
grad_norm, eval_loss -> val_loss (eval_X -> val_X), so `runs list/plot/compare db:NAME`
read the run. A run name already in the database gets "-2", "-3", ...

Not recorded: a Trainer run that raises never calls on_train_end, so its row stays
"running" (our own Trainer closes its runs from a `finally`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback as _HFCallback
except ImportError as e:  # transformers is in requirements-training.txt
    raise ImportError("utils.training.tracking.hf needs transformers: pip install transformers") from e

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState
from utils.training.tracking.db_sink import ExperimentDBSink
from utils.training.tracking.experiment_db import ExperimentDB
from utils.training.tracking.metrics import MetricsTracker
from utils.training.tracking.run_log import RunLogWriter
from utils.training.viz.live_plotting import LivePlotter

HF_TO_OURS = {"loss": "train_loss", "learning_rate": "lr", "grad_norm": "grad_norm", "epoch": "epoch"}


class ExperimentCallback(_HFCallback):
    def __init__(self, db: ExperimentDB | str | os.PathLike = "experiments.db", run_name: str | None = None,
                 run_dir: str | os.PathLike | None = None, live_plot: bool | LivePlotter = True,
                 dashboard: bool = True, config: dict | None = None, trackio_project: str = "",
                 trackio_dir: str | os.PathLike | None = None):
        """db: an ExperimentDB or its path; run_name: default the TrainingArguments'
        run_name or output folder name; run_dir: where run.json and dashboard.png go
        (default: args.output_dir); live_plot: True, False or a LivePlotter of yours;
        trackio_project: also log to this local Trackio project, stored in trackio_dir
        (default: Trackio's own folder)."""
        self._own_db = not isinstance(db, ExperimentDB)
        self.db = ExperimentDB(db) if self._own_db else db
        self.run_name, self.run_dir, self.dashboard = run_name, run_dir, dashboard
        self.extra_config = dict(config or {})
        self.trackio_project, self.trackio_dir = trackio_project, trackio_dir
        self.plotter = live_plot if isinstance(live_plot, LivePlotter) else (LivePlotter() if live_plot else None)
        self.tracker: MetricsTracker | None = None
        self.state = TrainerState()
        self.control = TrainerControl()
        self.dashboard_path: Path | None = None
        self._t0 = time.monotonic()

    # -- the Trainer's events --------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs: Any) -> None:
        name = self.run_name or getattr(args, "run_name", None) or Path(args.output_dir).name or "hf-run"
        if state.is_world_process_zero:
            name = self.db.unique_run_name(name)
        self.run_name = name
        self.run_dir = Path(self.run_dir or args.output_dir)
        config = {**args.to_sanitized_dict(), **self.extra_config}
        if model is not None and getattr(model, "config", None) is not None:
            config["model_config"] = {k: v for k, v in model.config.to_dict().items()
                                      if isinstance(v, (int, float, str, bool)) or v is None}
        sinks = [ExperimentDBSink(self.db, name, config), RunLogWriter(self.run_dir / "run.json", config=config,
                                                                       name=name)]
        if self.trackio_project:
            from utils.training.tracking.trackio_sink import TrackioSink

            sinks.append(TrackioSink(self.trackio_project, name, config, self.trackio_dir))
        self.tracker = MetricsTracker(sinks, use_wandb=False, world_size=args.world_size, device=args.device)
        self.state = TrainerState(run_name=name, step=state.global_step, max_steps=state.max_steps,
                                  world_size=args.world_size, is_world_process_zero=state.is_world_process_zero)
        run_info = {"run_dir": str(self.run_dir), "device": str(args.device), "source": "transformers.Trainer",
                    "n_params": sum(p.numel() for p in model.parameters()) if model is not None else None}
        self._t0 = time.monotonic()
        for cb in self._callbacks():
            cb.on_train_begin(self.state, self.control, config=config, run_info=run_info)

    def on_log(self, args, state, control, logs=None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        self._sync(state)
        if "loss" not in logs:
            return  # eval logs come through on_evaluate; the final summary (train_runtime, ...) at the end
        ours = {HF_TO_OURS.get(k, k): float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        ours["step"] = state.global_step
        ours["elapsed_s"] = self.state.elapsed_s
        # Counted only with TrainingArguments(include_num_input_tokens_seen=True); None is left out.
        ours["tokens_seen"] = self.state.tokens_seen or None
        for cb in self._callbacks():
            cb.on_log(self.state, self.control, logs=ours)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs: Any) -> None:
        self._sync(state)
        ours = {("val_" + k[5:] if k.startswith("eval_") else k): float(v) for k, v in (metrics or {}).items()
                if isinstance(v, (int, float))}
        if "val_loss" not in ours:
            return
        ours["step"] = state.global_step
        if ours["val_loss"] < self.state.best_val_loss:
            self.state.best_val_loss, self.state.best_step = ours["val_loss"], state.global_step
        self.state.last_val_loss = ours["val_loss"]
        for cb in self._callbacks():
            cb.on_evaluate(self.state, self.control, metrics=ours)

    def on_save(self, args, state, control, **kwargs: Any) -> None:
        self._sync(state)
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"  # the Trainer's folder name
        if self.tracker is not None:
            self.tracker.on_save(self.state, self.control, checkpoint_path=str(path))

    def on_train_end(self, args, state, control, **kwargs: Any) -> None:
        self._sync(state)
        status = RunStatus.COMPLETED if state.global_step >= state.max_steps else RunStatus.STOPPED_EARLY
        try:
            for cb in self._callbacks():
                cb.on_train_end(self.state, self.control, status=status)
            if self.dashboard and state.is_world_process_zero:
                from utils.training.viz.dashboard import TrainingDashboard

                self.dashboard_path = TrainingDashboard.from_db(self.db, self.run_name).save(
                    self.run_dir / "dashboard.png")
        finally:
            if self._own_db:
                self.db.close()

    # -- helpers --------------------------------------------------------------------------
    def _callbacks(self) -> list[TrainerCallback]:
        return [cb for cb in (self.tracker, self.plotter) if cb is not None]

    def _sync(self, state) -> None:
        """Our state follows the Trainer's counters."""
        self.state.step = int(state.global_step)
        self.state.epoch = float(state.epoch or 0.0)
        self.state.elapsed_s = time.monotonic() - self._t0
        self.state.tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if state.max_steps:
            self.state.max_steps = int(state.max_steps)

    @property
    def best_val_loss(self) -> float:
        return self.state.best_val_loss if math.isfinite(self.state.best_val_loss) else math.nan
