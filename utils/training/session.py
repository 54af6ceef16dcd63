"""TrainingSession: one training run wired together.

The notebook, the `train` command and every HPO trial run the same steps:

    session = TrainingSession(config, workspace)   # nothing heavy yet
    session.prepare()      # data + tokenizer (cached) and the model (the database row comes with train())
    session.summary()      # parameters, FLOPs/token, tokens planned vs Chinchilla, memory
    result = session.train()   # resumes from the newest valid checkpoint if there is one
    session.export()       # save_pretrained model + tokenizer under runs/NAME/model

The session only assembles: data/ makes batches, engine/ the model and the loop, the
run facts (engine/run_facts.py: parameters, FLOPs, precision, device) are measured once
in prepare() and handed to the summary card (summary.py), the memory check
(engine/memory.py) and the trainer; the callbacks (metrics sinks, plots, early stopping)
do the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.training.config import TrainingConfig
from utils.training.config_rules import ConfigError, Problem, require_valid
from utils.training.contracts import RunStatus
from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.memory import memory_problem
from utils.training.engine.run_facts import RunFacts
from utils.training.registries import DATA_SOURCES
from utils.training.run_callbacks import DatabaseBackup, LastSamples
from utils.training.summary import summary_card
from utils.training.tracking.sinks import ReportingOptions, sinks_for
from utils.training.workspace import Workspace

if TYPE_CHECKING:
    from utils.training.data.pipeline import PreparedData
    from utils.training.data.sources import TextCorpus
    from utils.training.engine.distributed import DistributedContext
    from utils.training.tracking.experiment_db import ExperimentDB



class TrainingSession:
    def __init__(
        self,
        config: TrainingConfig,
        workspace: Workspace | str | Path,
        *,
        tracking: ReportingOptions | None = None,
        callbacks: list[TrainerCallback] | tuple[TrainerCallback, ...] = (),
        db: ExperimentDB | None = None,
        data: PreparedData | None = None,
        corpus: TextCorpus | None = None,
        data_options: dict[str, Any] | None = None,
        dist: DistributedContext | None = None,
        device_ops: Any = None,
    ):
        require_valid(config)
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
        self.workspace.create()
        self.requested_config = config
        self.config = config  # becomes the resolved config (real vocab size) in prepare()
        self.tracking = tracking or ReportingOptions()
        self.tracking.check()  # a bad W&B mode fails here, before any data is prepared
        self.extra_callbacks = list(callbacks)
        self._db = db
        self._owns_db = db is None
        self.data = data
        self._data_given = data is not None
        self.corpus = corpus  # a TextCorpus already loaded (e.g. uploaded files); None = from the config
        self.data_options = dict(data_options or {})
        self.dist = dist
        self.model = None
        self.trainer = None
        self.result = None
        self.facts: RunFacts | None = None  # measured once, in prepare()
        self.device_ops = device_ops  # engine.batch_size.DeviceOps (tests inject one); None: the device's
        self.batch = None  # engine.batch_size.BatchChoice, made in prepare()
        self._samples = LastSamples()
        self._callbacks: list[TrainerCallback] | None = None  # built once, by callbacks()

    # --- paths -----------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.workspace.run_dir(self.config.run_name)

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    @property
    def db(self):
        if self._db is None and self.is_main:
            from utils.training.tracking.experiment_db import ExperimentDB

            self._db = ExperimentDB.open_local(self.workspace.db_path, self.workspace.db_mirror_path)
        return self._db

    # --- the run facts, as the notebook reads them -------------------------------------
    @property
    def parameters(self) -> dict[str, int]:
        """{'total', 'non_embedding'} parameters (empty before prepare())."""
        if self.facts is None:
            return {}
        return {"total": self.facts.n_params, "non_embedding": self.facts.n_params_non_embedding}

    @property
    def flops_per_token(self) -> float:
        return self.facts.flops_per_token if self.facts is not None else 0.0

    # --- steps -----------------------------------------------------------------------
    def prepare(self) -> TrainingSession:
        """Data (tokenizer and token files cached under datasets/), the resolved config,
        the model and the run facts. Safe to call twice. ConfigError (naming max_steps)
        when the corpus size is unknown (streaming) and epochs would set the budget."""
        from utils.training.engine.models import build_model
        from utils.training.engine.run_facts import measure_run_facts

        self.tracking.check()  # options changed since the session was made are checked before the data
        if self.data is None:
            self.data = self._prepare_data(self.requested_config)
        # The tokenizer decides the real vocabulary (a BPE trained on a small corpus may
        # stop short of the target; GPT-2's is 50257).
        self.config = self.requested_config.replace(vocab_size=self.data.vocab_size)
        if self.model is None:
            self.model = build_model(self.config)
        if self.batch is None:
            self._choose_batch()
        if self.facts is None:
            ddp = self.dist is not None and self.dist.is_distributed
            self.facts = measure_run_facts(self.config, self.model, device=self.dist.device if ddp else None,
                                           world_size=self.dist.world_size if self.dist else 1,
                                           train_tokens=self.data.stats.get("train_tokens"), batch=self.batch)
        return self

    def _prepare_data(self, config: TrainingConfig) -> PreparedData:
        from utils.training.data.pipeline import prepare_data

        rank = self.dist.rank if self.dist else 0
        world = self.dist.world_size if self.dist else 1
        # Under DDP rank 0 builds the tokenizer and token caches first; the others then read them.
        ddp = self.dist is not None and self.dist.is_distributed
        if ddp and not self.dist.is_main:
            self.dist.barrier()
        # Each rank draws its share of the global batch per micro-step (rank_batch).
        micro, _ = config.rank_batch(world)
        data = prepare_data(config.replace(batch_size=micro), self.workspace.root, rank=rank, world_size=world,
                            corpus=self.corpus, **self.data_options)
        if ddp and self.dist.is_main:
            self.dist.barrier()
        return data

    def _choose_batch(self) -> None:
        """batch_size="auto": the micro-batch measured on the device (rank 0's choice for
        all ranks), or the checkpointed run's; the config becomes that number, with the
        accumulation that keeps the global batch, and the batches are drawn anew at that
        size when it differs (token files are cached). A number is kept as given."""
        from utils.training.engine.batch_size import choose_batch, ops_for

        world = self.dist.world_size if self.dist else 1
        choice = None
        if self.is_main:
            ops = self.device_ops or ops_for(self.dist.device if self.dist is not None else None)
            choice = choose_batch(self.config, self.model, ops, world_size=world, stored=self._stored_batch())
        self.batch = self.dist.broadcast_object(choice) if self.dist is not None else choice
        if self.batch.how == "config":
            return
        drawn, _ = self.config.rank_batch(world)  # the batch size the batches were made with
        self.config = self.config.replace(**self.batch.config_values())
        if self.batch.micro_batch != drawn:  # batches of the chosen size (the token caches are reused)
            if self._data_given:
                raise ConfigError([Problem("batch_size", "auto", f"the data handed to the session draws batches of "
                                           f"{drawn} sequences and {self.batch.micro_batch} were chosen: let the "
                                           "session prepare the data, or give batch_size as a number")])
            self.data = self._prepare_data(self.requested_config.replace(**self.batch.config_values()))
        if self.is_main and self.batch.how != "config":
            b = self.batch
            print(f"Batch: micro-batch {b.micro_batch} x accumulation {b.accumulation} x {b.world_size} process"
                  f"{'es' if b.world_size != 1 else ''} ({b.note})", flush=True)

    def _stored_batch(self) -> tuple[int, int] | None:
        """(batch_size, gradient_accumulation_steps) of the config this run last trained
        with, when "auto" resumes a checkpoint: the same micro-batch continues it."""
        if self.config.batch_size != "auto" or self.resume_step() is None:
            return None
        path = self.workspace.run_config_path(self.config.run_name)
        try:
            saved = TrainingConfig.load(path)
        except ConfigError:
            return None
        return saved.batch_size, saved.gradient_accumulation_steps

    def summary(self, seconds_per_step: float | None = None) -> dict[str, Any]:
        """The numbers of the notebook's summary card, all computed from this run's
        config, run facts and data (no guesses); with a measured `seconds_per_step`, whether
        the planned steps fit the runtime's time limit (summary.time_fit)."""
        if self.model is None:
            self.prepare()
        return summary_card(self.config, self.facts, self.data.stats, self.data.bytes_per_token, self.caveat,
                            seconds_per_step=seconds_per_step)

    @property
    def caveat(self) -> str:
        """"smoke preset: not a result" and the like (text.caveat), "" for a real run: the
        summary card, the figures and the CLI's lines all say it."""
        from utils.training.text import caveat

        synthetic = bool(self.data is not None and self.data.stats.get("synthetic", False))
        source = DATA_SOURCES.get(self.requested_config.data_source)
        return caveat(self.requested_config.preset, synthetic or bool(source.facts.get("synthetic")))

    def check_memory(self) -> None:
        """Refuse (ConfigError naming the fields) a run whose minimum training memory
        exceeds the device's memory or memory_limit_gb (engine.memory.memory_problem)."""
        if self.facts is None:
            self.prepare()
        problem = memory_problem(self.config, self.facts)
        if problem:
            raise ConfigError([problem])

    def resume_step(self) -> int | None:
        """The step the next train() continues from (newest valid checkpoint, local or
        mirrored), or None for a fresh start."""
        from utils.training.engine.checkpoint import CheckpointManager
        from utils.training.engine.trainer import CHECKPOINT_KEYS

        name = self.config.run_name
        path = CheckpointManager(self.workspace.checkpoint_dir(name), keep=self.config.keep_checkpoints,
                                 mirror_dir=self.workspace.checkpoint_mirror_dir(name),
                                 required_keys=CHECKPOINT_KEYS).latest_valid()
        return None if path is None else int(path.stem.split("_")[1])

    def resume_line(self) -> str:
        step = self.resume_step()
        if step is None:
            return f"Starting run {self.config.run_name} from step 0 (no checkpoint in {self.run_dir})."
        return f"Resuming run {self.config.run_name} from step {step} (newest valid checkpoint)."

    def last_samples(self) -> list[dict]:
        """The text samples of the final evaluation (empty before train())."""
        return list(self._samples.samples)

    def callbacks(self) -> list[TrainerCallback]:
        """The default callbacks, in order: the system sampler (its readings join the logs),
        metrics (then: it enriches the logs and writes them), plots,
        early stopping, database backup, then the caller's. Built once, on the first call
        (train() makes it, after prepare(): the sinks take the resolved config); later
        calls return the same list, so no second set of sinks opens a second run."""
        if self._callbacks is None:
            self._callbacks = self._build_callbacks()
        return self._callbacks

    def _build_callbacks(self) -> list[TrainerCallback]:
        from utils.training.tracking.metrics import MetricsTracker

        cbs: list[TrainerCallback] = []
        if self.is_main:
            name = self.config.run_name
            t = self.tracking
            sinks = sinks_for(t, run_name=name, config=self.config.to_dict(), db=self.db,
                              run_log_path=self.workspace.run_log_path(name), run_dir=self.run_dir,
                              wandb_timeout_s=self.config.wandb_timeout_s, trackio_dir=self.workspace.trackio_dir)
            world = self.dist.world_size if self.dist else 1
            if t.system_interval_s > 0:  # before the tracker: its readings go into the logs it writes
                from utils.training.tracking.system_monitor import SystemMonitor

                cbs.append(SystemMonitor(t.system_interval_s))
            cbs.append(MetricsTracker(sinks, flops_per_token=self.flops_per_token, world_size=world))
            if t.live_plot:
                from utils.training.viz.live_plotting import LivePlotter

                cbs.append(LivePlotter(min_interval_s=t.live_plot_interval_s,
                                       save_path=self.workspace.live_plot_path(name), caveat=self.caveat))
            if t.viz_interval > 0:
                from utils.training.viz.report import TrainingReport

                cbs.append(TrainingReport(self.run_dir, viz_interval=t.viz_interval, caveat=self.caveat))
            if self.db.mirror_path is not None:
                cbs.append(DatabaseBackup(self.db))
        return cbs + [self._samples] + self.extra_callbacks

    def train(self, *, on_interrupt: str = "raise"):
        """Run (or resume) training; returns the trainer's TrainResult.

        A Ctrl-C (or SIGTERM, see engine/signals.py) checkpoints the current step and marks
        the run interrupted, then: "raise" re-raises the KeyboardInterrupt (the command
        line's exit 130/143); "report" (the notebook's Kernel > Interrupt) prints one line and
        returns the interrupted run's TrainResult, so later cells can draw it, except that a
        SIGTERM (the runtime being stopped) then closes the session and ends the process."""
        if on_interrupt not in ("raise", "report"):
            raise ValueError(f"on_interrupt must be 'raise' or 'report', got {on_interrupt!r}")
        try:
            return self._train()
        except KeyboardInterrupt as stop:
            if on_interrupt == "raise" or self.trainer is None:
                raise
            from utils.training.engine import signals
            from utils.training.engine.trainer import TrainResult

            step = self.trainer.state.step
            print(f"{signals.describe(stop)} at step {step}: its checkpoint is kept; run this cell again to "
                  "resume", flush=True)
            if isinstance(stop, signals.Terminated):
                self.close()
                signals.terminate_now()
            self.result = TrainResult(RunStatus.INTERRUPTED, self.trainer.state, error=signals.describe(stop))
            return self.result

    def _train(self):
        from utils.training.engine.trainer import Trainer

        if self.model is None:
            self.prepare()
        self.check_memory()
        name = self.config.run_name
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.workspace.run_config_path(name))
        # The trainer resumes from the newest valid checkpoint here or in the mirror (Drive),
        # so a fresh Colab VM continues from Drive.
        self.trainer = Trainer(
            self.config,
            self.model,
            self.data.train,
            self.data.val,
            run_dir=self.workspace.checkpoint_run_dir(name),
            callbacks=self.callbacks(),
            tokenizer=self.data.tokenizer,
            bytes_per_token=self.data.bytes_per_token,
            sample_prompts=self.sample_prompts(),
            sample_references=self.sample_references(),
            mirror_dir=self.workspace.checkpoint_mirror_dir(name),
            dist=self.dist,
            run_info=self.run_info(),
            progress_bar=self.tracking.progress_bar,
            run_facts=self.facts,
        )
        self.result = self.trainer.train()
        return self.result

    def export(self, out_dir: str | Path | None = None) -> Path:
        """save_pretrained of model and tokenizer (loadable by AutoModelForCausalLM)."""
        if self.trainer is None:
            raise RuntimeError("export() needs a trained model: call train() first")
        out = Path(out_dir) if out_dir else self.workspace.export_dir(self.config.run_name)
        self.trainer.export(out)
        return out

    def close(self) -> None:
        if self._owns_db and self._db is not None:
            self._db.close()  # opened with open_local: closing also backs up to the mirror
            self._db = None

    # --- pieces ----------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        """What the session adds to the trainer's run_info: the durable run folder, the
        data's stats and the run facts nested as "model" and "hardware" (the trainer adds
        the flat facts, run_name, the checkpoint folder, ...)."""
        if self.facts is None:
            self.prepare()
        return {
            "run_dir": str(self.run_dir),  # the durable run folder (run.json, viz, model), not the checkpoints'
            "train_tokens": self.facts.train_tokens,
            "model": self.facts.model(self.config),
            "hardware": self.facts.hardware(),
            "data": dict(self.data.stats),
        }

    def sample_prompts(self, n: int = 3) -> list[str]:
        """Fixed prompts: the first words of the first validation documents (held-out
        text, so the continuation is a real test)."""
        return [prompt for prompt, _ in self._sample_pairs(n)]

    def sample_references(self, n: int = 3) -> list[str]:
        """What follows each prompt in its document: greedy samples are scored against it."""
        return [reference for _, reference in self._sample_pairs(n)]

    def _sample_pairs(self, n: int, prompt_chars: int = 24) -> list[tuple[str, str]]:
        docs = list(getattr(self.data, "val_documents", []) or [])[:n]
        return [(p, d[len(p):]) for d in docs for p in [_prefix(d, prompt_chars)]]


def _prefix(doc: str, chars: int) -> str:
    """Cut at a word boundary near `chars` characters so prompts end cleanly."""
    if len(doc) <= chars:
        return doc[: max(1, len(doc) // 2)]
    cut = doc.rfind(" ", 0, chars)
    return doc[: cut if cut > 0 else chars]
