"""Our tracking, live plot and dashboard for a Hugging Face `transformers.Trainer` run.

    from utils.training.hf import ExperimentCallback
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      callbacks=[ExperimentCallback("workspace/experiments.db")])
    trainer.train()   # -> a run row + metrics in experiments.db, OUTPUT_DIR/NAME/run.json,
                      #    the live figure in the notebook, OUTPUT_DIR/NAME/dashboard.png at the end

The callback translates the Trainer's events into ours and hands them to the same
callbacks our own Trainer uses: MetricsTracker (writing the sinks of tracking.sinks.sinks_for:
the database, the run log, W&B when `reporting` asks for it) and LivePlotter. Metric names
become ours: loss -> train_loss, learning_rate -> lr, grad_norm, eval_loss -> val_loss
(eval_X -> val_X), so `runs list/plot/compare db:NAME` read the run.

A new run whose name is already in the database gets "-2", "-3", ...; each run has its
own folder OUTPUT_DIR/NAME (a run.json directly in OUTPUT_DIR with the run's own name is
continued where it is). `trainer.train(resume_from_checkpoint=...)` continues the run of
the checkpoint (its name is saved in the checkpoint's trainer_state.json, as an
ExportableState): the points after the checkpoint's step are dropped, and the same row
and run.json go on.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback as _HFCallback
    from transformers.trainer_callback import ExportableState
except ImportError as e:  # transformers is in requirements-training.txt
    raise ImportError("utils.training.hf needs transformers: pip install transformers") from e

from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState
from utils.training.tracking.experiment_db import ExperimentDB
from utils.training.tracking.metrics import MetricsTracker
from utils.training.tracking.run_log_format import is_run_log
from utils.training.tracking.sinks import ReportingOptions, sinks_for
from utils.training.viz.live_plotting import LivePlotter

HF_TO_OURS = {"loss": "train_loss", "learning_rate": "lr", "grad_norm": "grad_norm", "epoch": "epoch"}


class ExperimentCallback(_HFCallback, ExportableState):
    def __init__(self, db: ExperimentDB | str | os.PathLike = "experiments.db", run_name: str | None = None,
                 run_dir: str | os.PathLike | None = None, live_plot: bool | LivePlotter = True,
                 dashboard: bool = True, config: dict | None = None, reporting: ReportingOptions | None = None):
        """db: an ExperimentDB or its path; run_name: default the TrainingArguments'
        run_name or output folder name; run_dir: the folder that holds each run's folder
        (run.json, dashboard.png; default: args.output_dir); live_plot: True, False or a
        LivePlotter of yours; reporting: W&B settings (default: no W&B)."""
        self._own_db = not isinstance(db, ExperimentDB)
        self.db = ExperimentDB(db) if self._own_db else db
        self.run_name, self.run_dir, self.dashboard = run_name, run_dir, dashboard
        self._given_run_dir = run_dir
        self.extra_config = dict(config or {})
        self.reporting = reporting or ReportingOptions()
        self.reporting.check()
        self.plotter = live_plot if isinstance(live_plot, LivePlotter) else (LivePlotter() if live_plot else None)
        self.tracker: MetricsTracker | None = None
        self.run_state = TrainerState()
        self.control = TrainerControl()
        self.run_folder: Path | None = None  # this run's run.json and dashboard.png
        self.dashboard_path: Path | None = None
        self._t0 = time.monotonic()

    def state(self) -> dict:
        """Saved in each checkpoint's trainer_state.json: a resume continues this run (and
        TrainingArguments(restore_callback_states_from_checkpoint=True) rebuilds the callback)."""
        given = self._given_run_dir
        return {"args": {"db": str(self.db.path), "run_name": self.run_name,
                         "run_dir": None if given is None else str(given), "live_plot": self.plotter is not None,
                         "dashboard": self.dashboard, "config": json.loads(json.dumps(self.extra_config, default=str))},
                "attributes": {}}

    # -- the Trainer's events --------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs: Any) -> None:
        base = self.run_name or getattr(args, "run_name", None) or Path(args.output_dir).name or "hf-run"
        run_id, name = None, base
        if state.global_step > 0:  # resumed from a checkpoint: continue the run that wrote it
            name = _saved_run_name(state, type(self).__name__) or base
            run_id = self.db.find_run(name) if state.is_world_process_zero else None
        if run_id is None and state.is_world_process_zero:
            name = self.db.unique_run_name(name)
        saved = getattr(state, "stateful_callbacks", None)
        if isinstance(saved, dict):  # a checkpoint written without this callback: the Trainer's save looks it up
            saved.setdefault(type(self).__name__, {"args": {}, "attributes": {}})
        self.run_name = name
        self.run_dir = Path(self.run_dir or args.output_dir)
        self.run_folder = _run_folder(self.run_dir, name)
        config = {**args.to_sanitized_dict(), **self.extra_config}
        if model is not None and getattr(model, "config", None) is not None:
            config["model_config"] = {k: v for k, v in model.config.to_dict().items()
                                      if isinstance(v, (int, float, str, bool)) or v is None}
        sinks = sinks_for(self.reporting, run_name=name, config=config, db=self.db, db_run_id=run_id,
                          run_log_path=self.run_folder / "run.json", run_dir=self.run_folder)
        self.tracker = MetricsTracker(sinks, world_size=args.world_size, device=args.device)
        resumed = int(state.global_step) if run_id is not None else None
        self.run_state = TrainerState(run_name=name, step=state.global_step, max_steps=state.max_steps,
                                  world_size=args.world_size, is_world_process_zero=state.is_world_process_zero,
                                  resumed_from_step=resumed)
        if resumed is not None:
            self._restore_best(run_id, resumed)
        run_info = {"run_dir": str(self.run_folder), "device": str(args.device), "source": "transformers.Trainer",
                    "n_params": sum(p.numel() for p in model.parameters()) if model is not None else None}
        self._t0 = time.monotonic()
        for cb in self._callbacks():
            cb.on_train_begin(self.run_state, self.control, config=config, run_info=run_info)

    def _restore_best(self, run_id: int, step: int) -> None:
        """The best evaluation up to the checkpoint's step, so the run's best_val_loss
        counts the evaluations before the resume."""
        val = self.db.get_metrics(run_id, "val_loss")
        val = val[val["step"] <= step]
        if len(val):
            i = val["value"].idxmin()
            self.run_state.best_val_loss, self.run_state.best_step = float(val["value"][i]), int(val["step"][i])

    def on_step_end(self, args, state, control, **kwargs: Any) -> None:
        self._sync_before_save(control)

    def on_log(self, args, state, control, logs=None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        self._sync(state)
        if "loss" not in logs:
            return  # eval logs come through on_evaluate; the final summary (train_runtime, ...) at the end
        ours = {HF_TO_OURS.get(k, k): float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        ours["step"] = state.global_step
        ours["elapsed_s"] = self.run_state.elapsed_s
        # Counted only with TrainingArguments(include_num_input_tokens_seen=True); None is left out.
        ours["tokens_seen"] = self.run_state.tokens_seen or None
        for cb in self._callbacks():
            cb.on_log(self.run_state, self.control, logs=ours)
        self._sync_before_save(control)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs: Any) -> None:
        self._sync(state)
        ours = {("val_" + k[5:] if k.startswith("eval_") else k): float(v) for k, v in (metrics or {}).items()
                if isinstance(v, (int, float))}
        if "val_loss" not in ours:
            return
        ours["step"] = state.global_step
        if ours["val_loss"] < self.run_state.best_val_loss:
            self.run_state.best_val_loss, self.run_state.best_step = ours["val_loss"], state.global_step
        self.run_state.last_val_loss = ours["val_loss"]
        for cb in self._callbacks():
            cb.on_evaluate(self.run_state, self.control, metrics=ours)
        self._sync_before_save(control)

    def on_save(self, args, state, control, **kwargs: Any) -> None:
        self._sync(state)
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"  # the Trainer's folder name
        if self.tracker is not None:
            self.tracker.on_save(self.run_state, self.control, checkpoint_path=str(path))

    def on_train_end(self, args, state, control, **kwargs: Any) -> None:
        self._sync(state)
        status = RunStatus.COMPLETED if state.global_step >= state.max_steps else RunStatus.STOPPED_EARLY
        try:
            for cb in self._callbacks():
                cb.on_train_end(self.run_state, self.control, status=status)
            if self.dashboard and state.is_world_process_zero:
                from utils.training.viz.dashboard import TrainingDashboard

                self.dashboard_path = TrainingDashboard.from_db(self.db, self.run_name).save(
                    self.run_folder / "dashboard.png")
        finally:
            if self._own_db:
                self.db.close()

    # -- helpers --------------------------------------------------------------------------
    def _sync_before_save(self, control) -> None:
        """The Trainer saves a checkpoint after this step's log and evaluation: what is
        logged up to it is made durable first, as a resume from it never logs it again."""
        if control.should_save and self.tracker is not None:
            self.tracker.on_before_save(self.run_state, self.control)

    def _callbacks(self) -> list[TrainerCallback]:
        return [cb for cb in (self.tracker, self.plotter) if cb is not None]

    def _sync(self, state) -> None:
        """Our state follows the Trainer's counters."""
        self.run_state.step = int(state.global_step)
        self.run_state.epoch = float(state.epoch or 0.0)
        self.run_state.elapsed_s = time.monotonic() - self._t0
        self.run_state.tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if state.max_steps:
            self.run_state.max_steps = int(state.max_steps)

    @property
    def best_val_loss(self) -> float:
        return self.run_state.best_val_loss if math.isfinite(self.run_state.best_val_loss) else math.nan


def _saved_run_name(state, key: str) -> str | None:
    """The run name this callback saved in the checkpoint's trainer_state.json (None when
    the checkpoint was written without it)."""
    saved = (getattr(state, "stateful_callbacks", None) or {}).get(key)
    if isinstance(saved, list):
        saved = saved[-1] if saved else None
    name = saved.get("args", {}).get("run_name") if isinstance(saved, dict) else None
    return name if isinstance(name, str) and name else None


def _run_folder(run_dir: Path, name: str) -> Path:
    """run_dir/NAME, or run_dir itself when its run.json is this run's (the one-run layout)."""
    flat = run_dir / "run.json"
    try:
        doc = json.loads(flat.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return run_dir / name
    return run_dir if is_run_log(doc) and doc.get("name") == name else run_dir / name
