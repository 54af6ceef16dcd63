"""TrainingSession: one training run wired together.

The notebook, the `train` command and every HPO trial run the same steps:

    session = TrainingSession(config, workspace)   # nothing heavy yet
    session.prepare()      # data + tokenizer (cached) and the model (the database row comes with train())
    session.summary()      # parameters, FLOPs/token, tokens planned vs Chinchilla, memory
    result = session.train()   # resumes from the newest valid checkpoint if there is one
    session.export()       # save_pretrained model + tokenizer under runs/NAME/model

The session only assembles: data.py makes batches, models.py the model, trainer.py
runs the loop, and the callbacks (metrics sinks, plots, early stopping) do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.training.config import ConfigError, Problem, TrainingConfig
from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState
from utils.training.workspace import Workspace

# Chinchilla's compute-optimal budget (Hoffmann et al. 2022, table 3): ~20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20


@dataclass
class TrackingOptions:
    """Where metrics go besides SQLite (always on) and the JSON run log (always on)."""

    wandb_project: str = ""  # "" = no W&B
    wandb_entity: str = ""
    wandb_mode: str = "online"  # online | offline | disabled (online falls back on its own)
    wandb_tags: tuple[str, ...] = ()
    # Kept for callers that set it; None = the config's wandb_timeout_s (the one bound).
    wandb_init_timeout_s: float | None = None
    # The key itself, when the caller resolved it (the notebook does, in the foreground, so a
    # hidden prompt can work); None = the sink looks in Colab Secrets and the environment.
    # Never shown: excluded from repr.
    wandb_api_key: str | None = field(default=None, repr=False)
    live_plot: bool = False  # LivePlotter in Jupyter/Colab (text table when headless)
    live_plot_interval_s: float = 2.0
    viz_interval: int = 0  # the seven-chart training report every N steps; 0 = off
    progress_bar: bool = True


class TrainingSession:
    def __init__(
        self,
        config: TrainingConfig,
        workspace: Workspace | str | Path,
        *,
        tracking: TrackingOptions | None = None,
        callbacks: list[TrainerCallback] | tuple[TrainerCallback, ...] = (),
        db: Any = None,
        data: Any = None,
        corpus: Any = None,
        data_options: dict[str, Any] | None = None,
        dist: Any = None,
        log: Callable[[str], None] = print,
    ):
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
        self.workspace.create()
        self.requested_config = config
        self.config = config  # becomes the resolved config (real vocab size) in prepare()
        self.tracking = tracking or TrackingOptions()
        self.extra_callbacks = list(callbacks)
        self._db = db
        self._owns_db = db is None
        self.data = data
        self.corpus = corpus  # a TextCorpus already loaded (e.g. uploaded files); None = from the config
        self.data_options = dict(data_options or {})
        self.dist = dist
        self.log = log
        self.model = None
        self.trainer = None
        self.result = None
        self.parameters: dict[str, int] = {}
        self._samples = _LastSamples()
        self.flops_per_token = 0.0

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

    # --- steps -----------------------------------------------------------------------
    def prepare(self) -> TrainingSession:
        """Data (tokenizer and token files cached under datasets/), the resolved config
        and the model. Safe to call twice."""
        from utils.training.data.pipeline import prepare_data
        from utils.training.engine.models import build_model, count_parameters, flops_per_token

        if self.data is None:
            rank = self.dist.rank if self.dist else 0
            world = self.dist.world_size if self.dist else 1
            # Under DDP rank 0 builds the tokenizer and token caches first; the others then read them.
            ddp = self.dist is not None and self.dist.is_distributed
            if ddp and not self.dist.is_main:
                self.dist.barrier()
            # Each rank draws its share of the global batch per micro-step (rank_batch).
            micro, _ = self.requested_config.rank_batch(world)
            self.data = prepare_data(
                self.requested_config.replace(batch_size=micro),
                self.workspace.root,
                rank=rank,
                world_size=world,
                corpus=self.corpus,
                **self.data_options,
            )
            if ddp and self.dist.is_main:
                self.dist.barrier()
        # The tokenizer decides the real vocabulary (a BPE trained on a small corpus may
        # stop short of the target; GPT-2's is 50257).
        self.config = self.requested_config.replace(vocab_size=self.data.vocab_size)
        if self.model is None:
            self.model = build_model(self.config)
        self.parameters = count_parameters(self.model)
        self.flops_per_token = flops_per_token(self.config, self.parameters["non_embedding"])
        return self

    def summary(self) -> dict[str, Any]:
        """The numbers of the notebook's summary card, all computed from this run's
        config, model and data (no guesses)."""
        if self.model is None:
            self.prepare()
        from utils.training.engine.trainer import resolve_precision
        from utils.training.runtime import detect_runtime

        cfg = self.config
        rt = detect_runtime()
        precision = resolve_precision(cfg.precision, cfg.use_amp, "cuda" if rt.device == "cuda" else "cpu",
                                      rt.bf16_supported)
        train_tokens = self.data.stats.get("train_tokens")  # None when streaming (mode chunk): size unknown
        if train_tokens is None and not (cfg.max_steps or cfg.max_tokens):
            raise ConfigError([Problem("max_steps", cfg.max_steps, "streaming (mode chunk) does not know the corpus "
                                       "size, so epochs cannot set the budget: set max_steps or max_tokens")])
        max_steps = cfg.resolve_max_steps(train_tokens or 0)
        planned = max_steps * cfg.tokens_per_step
        optimal = CHINCHILLA_TOKENS_PER_PARAM * self.parameters["total"]
        return {
            "run_name": cfg.run_name,
            "model_family": cfg.model_family,
            "parameters": self.parameters["total"],
            "non_embedding_parameters": self.parameters["non_embedding"],
            "flops_per_token": self.flops_per_token,
            "max_steps": max_steps,
            "tokens_per_step": cfg.tokens_per_step,
            "tokens_planned": planned,
            "chinchilla_tokens": optimal,
            "chinchilla_pct": 100.0 * planned / optimal,
            "epochs_planned": planned / train_tokens if train_tokens else None,
            "precision": precision,
            "memory_estimate_gb": estimate_training_memory_gb(cfg, self.parameters["total"], precision),
            "train_tokens": train_tokens,
            "bytes_per_token": self.data.bytes_per_token,
            "synthetic_data": bool(self.data.stats.get("synthetic", False)),
            "caveat": self.caveat,
        }

    @property
    def caveat(self) -> str:
        """"smoke preset: not a result" and the like (style.caveat), "" for a real run: the
        summary card, the figures and the CLI's lines all say it."""
        from utils.training.viz.style import caveat

        synthetic = bool(self.data is not None and self.data.stats.get("synthetic", False))
        return caveat(self.requested_config.preset, synthetic or self.requested_config.data_source == "synthetic")

    def check_memory(self) -> None:
        """Refuse (ConfigError naming the fields) a run whose minimum training memory
        exceeds the device's memory or memory_limit_gb: without this, a batch_size of
        65536 allocates for many seconds and dies with the allocator's error."""
        from utils.training.engine.trainer import resolve_precision
        from utils.training.runtime import detect_runtime

        cfg = self.config
        rt = detect_runtime()
        on_gpu = rt.device == "cuda"
        precision = resolve_precision(cfg.precision, cfg.use_amp, "cuda" if on_gpu else "cpu", rt.bf16_supported)
        need = minimum_training_memory_gb(cfg, self.parameters["total"], precision)
        device = f"{rt.gpu_name} ({rt.gpu_memory_gb:.1f} GiB)" if on_gpu else f"this machine ({rt.ram_gb:.1f} GiB RAM)"
        limit = cfg.memory_limit_gb or (rt.gpu_memory_gb if on_gpu else rt.ram_gb)
        where = f"memory_limit_gb = {cfg.memory_limit_gb:g}" if cfg.memory_limit_gb else device
        if limit and need > limit:
            raise ConfigError([Problem(
                "batch_size", cfg.batch_size,
                f"this run needs at least {need:.1f} GiB ({_memory_parts(cfg, self.parameters['total'], precision)}) "
                f"and {where} allows {limit:.1f}: lower batch_size (raise gradient_accumulation_steps to keep the "
                "tokens per step), block_size, d_model or n_layer, or set memory_limit_gb")])

    def resume_step(self) -> int | None:
        """The step the next train() continues from (newest valid checkpoint, local or
        mirrored), or None for a fresh start."""
        from utils.training.engine.checkpoint import CheckpointManager
        from utils.training.engine.trainer import CHECKPOINT_KEYS

        name = self.config.run_name
        path = CheckpointManager(self.workspace.checkpoint_run_dir(name) / "checkpoints",
                                 keep=self.config.keep_checkpoints,
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
        """The default callbacks, in order: metrics (first: it enriches the logs), plots,
        early stopping, database backup, then the caller's."""
        from utils.training.tracking.metrics import MetricsTracker
        from utils.training.tracking.run_log import RunLogWriter

        cbs: list[TrainerCallback] = []
        if self.is_main:
            from utils.training.tracking.experiment_db import ExperimentDBSink

            sinks: list[Any] = [
                ExperimentDBSink(self.db, self.config.run_name, self.config.to_dict()),
                RunLogWriter(self.run_dir / "run.json", db=self.db),
            ]
            t = self.tracking
            if t.wandb_project and t.wandb_mode != "disabled":
                from utils.training.tracking.wandb_logger import WandbSink

                sinks.append(
                    WandbSink(
                        t.wandb_project,
                        entity=t.wandb_entity or None,
                        run_name=self.config.run_name,
                        config=self.config.to_dict(),
                        tags=t.wandb_tags,
                        mode=t.wandb_mode,
                        init_timeout_s=(self.config.wandb_timeout_s if t.wandb_init_timeout_s is None
                                        else t.wandb_init_timeout_s),
                        run_dir=str(self.run_dir),
                        api_key=t.wandb_api_key,
                    )
                )
            world = self.dist.world_size if self.dist else 1
            cbs.append(MetricsTracker(sinks, flops_per_token=self.flops_per_token, world_size=world))
            if t.live_plot:
                from utils.training.viz.live_plotting import LivePlotter

                cbs.append(LivePlotter(min_interval_s=t.live_plot_interval_s, save_path=self.run_dir / "live.png",
                                       caveat=self.caveat))
            if t.viz_interval > 0:
                from utils.training.viz.report import TrainingReport

                cbs.append(TrainingReport(self.run_dir, viz_interval=t.viz_interval, caveat=self.caveat))
            if self.db.mirror_path is not None:
                cbs.append(DatabaseBackup(self.db))
        return cbs + [self._samples] + self.extra_callbacks

    def train(self):
        """Run (or resume) training; returns the trainer's TrainResult."""
        from utils.training.engine.trainer import Trainer

        if self.model is None:
            self.prepare()
        self.check_memory()
        # The trainer resumes from the newest valid checkpoint here or in the mirror (Drive),
        # so a fresh Colab VM continues from Drive.
        ckpt_run_dir = self.workspace.checkpoint_run_dir(self.config.run_name)
        mirror = self.workspace.checkpoint_mirror_dir(self.config.run_name)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.run_dir / "config.json")
        self.trainer = Trainer(
            self.config,
            self.model,
            self.data.train,
            self.data.val,
            run_dir=ckpt_run_dir,
            callbacks=self.callbacks(),
            tokenizer=self.data.tokenizer,
            bytes_per_token=self.data.bytes_per_token,
            sample_prompts=self.sample_prompts(),
            sample_references=self.sample_references(),
            mirror_dir=mirror,
            dist=self.dist,
            run_info=self.run_info(),
            progress_bar=self.tracking.progress_bar,
        )
        self.result = self.trainer.train()
        return self.result

    def export(self, out_dir: str | Path | None = None) -> Path:
        """save_pretrained of model and tokenizer (loadable by AutoModelForCausalLM)."""
        if self.trainer is None:
            raise RuntimeError("export() needs a trained model: call train() first")
        out = Path(out_dir) if out_dir else self.run_dir / "model"
        self.trainer.export(out)
        return out

    def close(self) -> None:
        if self._owns_db and self._db is not None:
            self._db.close()  # opened with open_local: closing also backs up to the mirror
            self._db = None

    # --- pieces ----------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        from utils.training.runtime import detect_runtime

        rt = detect_runtime()
        on_gpu = rt.device == "cuda"
        # The trainer adds run_name, config_hash, world_size, parameters, precision, ...
        return {
            "run_dir": str(self.run_dir),  # the durable run folder (run.json, viz, model), not the checkpoints'
            "train_tokens": self.data.stats.get("train_tokens"),
            "model": {
                "family": self.config.model_family,
                "n_params": self.parameters.get("total", 0),
                "n_params_non_embedding": self.parameters.get("non_embedding", 0),
                "flops_per_token": self.flops_per_token,
                "n_layer": self.config.n_layer,
                "d_model": self.config.d_model,
                "n_head": self.config.n_head,
                "block_size": self.config.block_size,
                "vocab_size": self.config.vocab_size,
            },
            "hardware": {
                "device": rt.device,
                "gpu_name": rt.gpu_name,
                "n_gpus": (self.dist.world_size if self.dist else 1) if on_gpu else 0,  # one GPU per rank
                "gpu_memory_gb": rt.gpu_memory_gb,
                "cpu_count": rt.cpu_count,
                "ram_gb": rt.ram_gb,
                "colab": rt.colab,
                "torch": rt.torch,
            },
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


def format_summary(s: dict[str, Any]) -> str:
    """The summary card as aligned text (the notebook prints it; the CLI prints a line)."""
    from utils.training.viz.style import chinchilla_share

    synthetic = "  (SYNTHETIC DATA: numbers are not about text)" if s["synthetic_data"] else ""
    rows = [
        ("run", f"{s['run_name']} ({s['model_family']}){synthetic}"),
        *([("note", s["caveat"])] if s.get("caveat") else []),
        ("parameters", f"{s['parameters']:,} ({s['non_embedding_parameters']:,} non-embedding)"),
        ("FLOPs per token", f"{s['flops_per_token'] / 1e6:,.1f} M (6N + 12LHQT, PaLM appendix B)"),
        ("steps", f"{s['max_steps']:,} x {s['tokens_per_step']:,} tokens"),
        ("tokens planned", f"{s['tokens_planned']:,}" + (f" = {s['epochs_planned']:.2f} epochs of {s['train_tokens']:,}"
                                                         if s["train_tokens"] else " (streamed corpus: size unknown)")),
        ("Chinchilla-optimal", f"{s['chinchilla_tokens']:,} tokens (20/parameter): plan is {chinchilla_share(s['tokens_planned'], s['parameters'])}"),
        ("memory estimate", f"{s['memory_estimate_gb']:.2f} GiB in {s['precision']} (weights, AdamW, activations, "
                            "logits)"),
        ("bytes per token", f"{s['bytes_per_token']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def context_claim(val_loss: float, se: float, unigram_entropy: float) -> str:
    """What val_loss says against the corpus's unigram entropy (the loss of the best model
    that ignores context), claimed only beyond 2 standard errors of the evaluation."""
    gap = unigram_entropy - val_loss
    head = (f"val_loss {val_loss:.3f} (standard error {se:.3f}) against the corpus's unigram entropy "
            f"{unigram_entropy:.3f} nats/token: ")
    if not se == se:  # NaN: one sequence evaluated, no error estimate
        return head + "no standard error (one evaluated sequence): no claim"
    if gap > 2 * se:
        return head + "below it by more than 2 standard errors, so the model uses context"
    if gap < -2 * se:
        return head + "above it by more than 2 standard errors: not yet better than ignoring context"
    return head + "within 2 standard errors of it: no claim either way (evaluate on more batches)"


def _prefix(doc: str, chars: int) -> str:
    """Cut at a word boundary near `chars` characters so prompts end cleanly."""
    if len(doc) <= chars:
        return doc[: max(1, len(doc) // 2)]
    cut = doc.rfind(" ", 0, chars)
    return doc[: cut if cut > 0 else chars]


class _LastSamples(TrainerCallback):
    """Keeps the most recent text samples for the notebook to print."""

    def __init__(self) -> None:
        self.samples: list[dict] = []

    def on_sample(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.samples = list(kwargs.get("samples", []))


class DatabaseBackup(TrainerCallback):
    """Copies the live SQLite database to the durable folder (Drive) with the SQLite
    backup API after every checkpoint and at the end, so a dead runtime loses at most
    what happened since the last checkpoint."""

    def __init__(self, db):
        self.db = db  # an ExperimentDB opened with a mirror_path

    def on_save(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.db.backup_to()

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.db.backup_to()


def estimate_training_memory_gb(cfg: TrainingConfig, n_params: int, precision: str) -> float:
    """Training memory, GiB: weights + gradients + AdamW moments in fp32 (16 bytes per
    parameter) plus activations per layer of s·b·h·(34 + 5·a·s/h) bytes for 16-bit
    activations without recomputation (Korthikanti et al. 2022, eq. 1), doubled when
    `precision` is fp32, plus the logits (b·s·V·4 bytes, twice for the loss and its gradient)."""
    s, b, h, a, L, V = cfg.block_size, cfg.batch_size, cfg.d_model, cfg.n_head, cfg.n_layer, cfg.vocab_size
    bytes_per_act = 2.0 if precision == "fp32" else 1.0
    activations = L * s * b * h * (34 + 5 * a * s / h) * bytes_per_act
    logits = 2 * b * s * V * 4
    return (16 * n_params + activations + logits) / 2**30


def _memory_terms(cfg: TrainingConfig, n_params: int, precision: str) -> tuple[float, float, float]:
    """(weights + gradients + AdamW, activations, logits) in bytes, the lower bound: the
    activations without the attention-score term, which fused attention (SDPA) never
    stores; what remains is kept by any implementation."""
    s, b, h, L, V = cfg.block_size, cfg.batch_size, cfg.d_model, cfg.n_layer, cfg.vocab_size
    bytes_per_act = 2.0 if precision == "fp32" else 1.0
    return 16.0 * n_params, L * s * b * h * 34 * bytes_per_act, 2.0 * b * s * V * 4


def minimum_training_memory_gb(cfg: TrainingConfig, n_params: int, precision: str) -> float:
    """GiB a training step needs at least (see _memory_terms): a run above the device's
    memory cannot fit, whatever the attention implementation."""
    return sum(_memory_terms(cfg, n_params, precision)) / 2**30


def _memory_parts(cfg: TrainingConfig, n_params: int, precision: str) -> str:
    w, a, lg = (x / 2**30 for x in _memory_terms(cfg, n_params, precision))
    return (f"weights, gradients and AdamW {w:.1f}; activations {a:.1f} from n_layer x block_size x batch_size x "
            f"d_model; logits {lg:.1f} from batch_size x block_size x vocab_size")
