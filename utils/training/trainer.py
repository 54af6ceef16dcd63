"""The training loop. It knows only callback events (callbacks.py); everything else
(tracking, plots, checkpoint cadence, early stopping, pruning) steers through the
TrainerControl object.

One optimizer step = the global batch (batch_size * gradient_accumulation_steps
sequences of block_size tokens) whatever the world size: each rank runs `accum`
micro-steps of `micro_batch` sequences, (micro_batch, accum) =
config.rank_batch(world_size). The hot path keeps every per-step number on the
device: losses go into a list of 0-d tensors that is read (one host sync) only at
a "sync point": a log, eval or checkpoint step, the last step, or a
stop. The non-finite check happens there too, before anything is logged or saved,
so a NaN run stops naming its first bad step and never writes a NaN checkpoint.

Resume: train() first looks for the newest valid checkpoint in run_dir and restores
everything an uninterrupted run would have in memory at that step (model,
optimizer, scheduler, scaler, RNG states of every rank, sampler positions, the
TrainerState), so that the continuation is bit-identical on CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .callbacks import (
    CallbackHandler,
    CheckpointCallback,
    EarlyStoppingCallback,
    ProgressBarCallback,
    RunStatus,
    TrainerControl,
    TrainerState,
)
from .checkpoint import CheckpointManager
from .distributed import DistributedContext
from .models import count_parameters, flops_per_token
from .optimizers import adamw_kwargs, build_optimizer, param_groups  # noqa: F401 - re-exported (bench/)
from .sampler import IGNORE_INDEX

CHECKPOINT_FORMAT = 1
# What _maybe_resume reads: a checkpoint lacking one of these is skipped like a damaged one.
CHECKPOINT_KEYS = ("format", "step", "tokens_seen", "model", "optimizer", "scheduler", "rng", "sampler",
                   "trainer_state", "config")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class ResumeError(ValueError):
    """A checkpoint exists but this config may not continue it."""


@dataclass
class TrainResult:
    status: str  # a RunStatus value
    state: TrainerState
    final_metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""  # the message when status is failed


# ---------------------------------------------------------------------------------------
# Device, precision and optimizer selection (pure functions: unit-tested on CPU)
# ---------------------------------------------------------------------------------------


def resolve_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, use_amp: bool, device_type: str, bf16_supported: bool) -> str:
    """-> "fp32" | "bf16" | "fp16". auto: bf16 where the GPU has it (Ampere+), fp16 with
    a GradScaler on older GPUs (T4, V100), fp32 on CPU/MPS."""
    if not use_amp or precision == "fp32":
        return "fp32"
    if precision == "auto":
        if device_type != "cuda":
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if precision == "bf16" and device_type == "cuda" and not bf16_supported:
        raise ValueError("precision: 'bf16' is not supported by this GPU; use 'fp16' or 'auto'")
    if precision == "fp16" and device_type != "cuda":
        raise ValueError(f"precision: 'fp16' needs a CUDA GPU (device is {device_type}); use 'auto' or 'fp32'")
    if precision == "bf16" and device_type not in ("cuda", "cpu"):
        raise ValueError(f"precision: 'bf16' is not supported on {device_type}; use 'auto' or 'fp32'")
    return precision


def autocast_context(device_type: str, precision: str):
    """A fresh autocast context per use; nullcontext in fp32 (no per-step overhead)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def resolve_compile(setting: str, device_type: str, capability: tuple[int, int] | None) -> bool:
    """Whether to torch.compile the model. auto: on CUDA GPUs of capability >= 8.0 (A100,
    L4, H100: fused kernels pay for the compile within a few hundred steps); off on CPU,
    where compiling the cpu preset's model took 52 s for steps 8% faster, paid back only
    after ~3,600 steps (README), on MPS, and on older GPUs (T4), never measured.
    true/false mean on/off."""
    if setting in (True, "on"):
        return True
    if setting in (False, "off"):
        return False
    return device_type == "cuda" and capability is not None and tuple(capability) >= (8, 0)


def build_scheduler(optimizer, config, max_steps: int):
    """Linear warmup over warmup_ratio·max_steps, then the config's schedule down to
    min_lr_ratio·peak (transformers' LambdaLR schedules; state_dict-able)."""
    from transformers import optimization as opt

    warmup = config.warmup_steps(max_steps)
    if config.schedule == "constant" or config.min_lr_ratio >= 1.0:  # no decay to do
        return opt.get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup)
    if config.schedule == "cosine":
        return opt.get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, num_warmup_steps=warmup, num_training_steps=max_steps, min_lr_rate=config.min_lr_ratio
        )
    if config.schedule == "linear":  # polynomial of power 1 = linear, ending at lr_end (absolute)
        return opt.get_polynomial_decay_schedule_with_warmup(
            optimizer, num_warmup_steps=warmup, num_training_steps=max_steps,
            lr_end=config.learning_rate * config.min_lr_ratio, power=1.0,
        )
    raise ValueError(f"schedule: {config.schedule!r} is not one of cosine, linear, constant")


def capture_rng() -> dict:
    """Every RNG this process draws from, as tensors and plain types (weights_only).
    The Mersenne Twister keys (624 words each) go in int64 tensors: as lists of Python
    ints they would cost a restricted-unpickler call per word on every load."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def restore_rng(rng: dict) -> None:
    version, mt, gauss = rng["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, config, model, train_batches, val_batches=None, *, run_dir, callbacks=(),
                 tokenizer=None, bytes_per_token=None, sample_prompts=(), sample_references=(),
                 mirror_dir=None, device=None, dist: DistributedContext | None = None, run_info=None,
                 progress_bar: bool = True, sample_tokens: int = 32):
        self.config = config
        self.dist = dist or DistributedContext()
        self.device = resolve_device(device if device is not None else
                                     (self.dist.device if self.dist.is_distributed else None))
        self.raw_model = model
        self.train_batches, self.val_batches = train_batches, val_batches
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.bytes_per_token = bytes_per_token
        self.sample_prompts, self.sample_references = list(sample_prompts), list(sample_references)
        self.sample_tokens = sample_tokens
        self.user_run_info = dict(run_info or {})
        ws = self.dist.world_size
        # This rank's share of the global batch (ConfigError when ws cannot split it);
        # train_batches must already yield micro_batch sequences (TrainingSession sees to it).
        self.micro_batch, self.accum = config.rank_batch(ws)
        # I/O callbacks live on rank 0 only; the control ones (deterministic functions of
        # the state) run everywhere. Rank 0's control is broadcast at sync points anyway.
        own = [CheckpointCallback(config.checkpoint_interval)]
        if config.early_stopping_patience > 0:
            own.append(EarlyStoppingCallback(config.early_stopping_patience))
        user = list(callbacks) if self.dist.is_main else []
        bar = [ProgressBarCallback()] if progress_bar and self.dist.is_main else []
        self.callbacks = CallbackHandler(user + own + bar)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep=config.keep_checkpoints,
                                             mirror_dir=mirror_dir, required_keys=CHECKPOINT_KEYS,
                                             validate=self._checkpoint_problem)
        self.state = TrainerState(run_name=config.run_name, world_size=ws, is_world_process_zero=self.dist.is_main)
        self.control = TrainerControl()
        self.last_logs: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    # -- setup -----------------------------------------------------------------------

    def _setup(self) -> None:
        cfg, dev = self.config, self.device
        bf16_ok = dev.type == "cuda" and torch.cuda.is_bf16_supported()
        self.precision = resolve_precision(cfg.precision, cfg.use_amp, dev.type, bf16_ok)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
            torch.use_deterministic_algorithms(True, warn_only=True)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.raw_model.to(dev)
        capability = torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None
        self.compiled = resolve_compile(cfg.compile, dev.type, capability)
        # Compiling is lazy: the first training step pays for it (timed apart, see train()).
        self.model = torch.compile(self.raw_model) if self.compiled else self.raw_model
        if self.dist.is_distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [dev.index] if dev.type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids)
        self.optimizer = build_optimizer(self.raw_model, cfg, dev.type)
        # Enabled only for fp16: bf16 has fp32's exponent range and needs no loss scaling.
        self.scaler = torch.amp.GradScaler(dev.type if dev.type == "cuda" else "cpu",
                                           enabled=self.precision == "fp16")
        self.max_steps = self._resolve_max_steps()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.max_steps)
        self.state.max_steps = self.max_steps
        self.train_tokens = self._train_tokens()

    def _train_tokens(self) -> int:
        n = self.user_run_info.get("train_tokens")
        if n is None and hasattr(self.train_batches, "tokens"):
            n = len(self.train_batches.tokens)
        return int(n or 0)

    def _resolve_max_steps(self) -> int:
        cfg = self.config
        if cfg.max_steps > 0:
            return cfg.max_steps
        n = self._train_tokens()
        if n <= 0 and cfg.max_tokens <= 0:
            raise ValueError("max_steps: 0 needs the corpus size to derive the budget from epochs; set max_steps "
                             "or max_tokens, or pass run_info={'train_tokens': N}")
        return cfg.resolve_max_steps(n)

    def _run_info(self) -> dict:
        counts = count_parameters(self.raw_model)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        info = {
            "run_name": self.config.run_name, "checkpoint_dir": str(self.checkpoints.dir),
            "model_family": getattr(self.raw_model.config, "model_type", self.config.model_family),
            "parameters": counts["total"], "non_embedding_parameters": counts["non_embedding"],
            "flops_per_token": flops_per_token(self.config, counts["non_embedding"]),
            "device": str(self.device), "device_name": name, "precision": self.precision,
            "world_size": self.dist.world_size, "max_steps": self.max_steps,
            "tokens_per_step": self.config.tokens_per_step, "config_hash": self.config.config_hash,
            "resumed_from_step": self.state.resumed_from_step, "compiled": self.compiled,
        }
        # The caller's extras (data stats, hardware, the durable run_dir) plus these facts.
        return {**self.user_run_info, **info}

    # -- checkpoints -----------------------------------------------------------------

    def _gather_local_states(self, collective: bool) -> tuple[list, list]:
        mine = (capture_rng(), self.train_batches.state_dict())
        states = self.dist.all_gather_object(mine) if collective else [mine]
        return [s[0] for s in states], [s[1] for s in states]

    def _save_checkpoint(self, collective: bool = True) -> Path | None:
        """All ranks call this (the gather is a collective); rank 0 writes."""
        rngs, samplers = self._gather_local_states(collective)
        if not self.dist.is_main:
            return None
        is_best = self.state.best_step == self.state.step
        self.state.elapsed_s = self._elapsed()
        # What was logged up to this step becomes durable before the checkpoint exists: a
        # resume from it never logs those steps again, so they would be lost for good.
        self.callbacks.call("on_before_save", self.state, self.control)
        ckpt = {
            "format": CHECKPOINT_FORMAT, "step": self.state.step, "tokens_seen": self.state.tokens_seen,
            "model": self.raw_model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rngs, "sampler": samplers, "world_size": self.dist.world_size,
            "trainer_state": self.state.to_dict(), "config": self.config.to_dict(),
            "config_hash": self.config.config_hash,
        }
        path = self.checkpoints.save(ckpt, self.state.step, is_best=is_best)
        self._saved_step = self.state.step
        self.callbacks.call("on_save", self.state, self.control, checkpoint_path=str(path))
        return path

    def _checkpoint_problem(self, state: dict) -> str | None:
        """Why a checkpoint that loaded cannot be resumed from (its saved config does not
        validate), or None. A config that differs is not this: that is a ResumeError."""
        from .config import ConfigError

        try:
            type(self.config).from_dict(state["config"])
        except ConfigError as e:
            return f"its saved config is not valid: {'; '.join(str(p) for p in e.problems[:3])}"
        return None

    def _maybe_resume(self) -> None:
        path = self.checkpoints.latest_valid() if self.dist.is_main else None
        path = self.dist.broadcast_object(str(path) if path else None)
        self._resumed_path = path
        if path is None:
            seed_everything(self.config.random_seed + self.dist.rank)
            return
        ckpt = self.checkpoints.load(path)
        saved = type(self.config).from_dict(ckpt["config"])
        blockers = self.config.resume_blockers(saved)
        if blockers:
            detail = ", ".join(f"{k} ({ckpt['config'][k]!r} -> {getattr(self.config, k)!r})" for k in blockers)
            raise ResumeError(
                f"run {self.config.run_name!r} has a checkpoint at step {ckpt['step']} ({path}) written with a "
                f"different config; these fields change training: {detail}. Use the saved values, a new "
                "run_name, or delete the run folder to start over."
            )
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rank = self.dist.rank
        same_world = ckpt.get("world_size", 1) == self.dist.world_size and rank < len(ckpt["rng"])
        if same_world:
            restore_rng(ckpt["rng"][rank])
        else:  # a different world size cannot continue bit-exactly; keep it reproducible
            seed_everything(self.config.random_seed + rank + ckpt["step"])
        self.train_batches.load_state_dict(ckpt["sampler"][rank if rank < len(ckpt["sampler"]) else 0])
        tracking = self.state.tracking
        self.state = TrainerState.from_dict(ckpt["trainer_state"])
        self.state.tracking = {**ckpt["trainer_state"].get("tracking", {}), **tracking}
        self.state.resumed_from_step = ckpt["step"]
        self.state.run_name = self.config.run_name  # resume-safe: the run may have been renamed
        self.state.world_size = self.dist.world_size
        self.state.is_world_process_zero = self.dist.is_main
        self.state.max_steps = self.max_steps
        self._saved_step = ckpt["step"]
        if self.dist.is_main:
            print(f"Resuming {self.config.run_name} from step {ckpt['step']} (checkpoint {path})", flush=True)

    # -- evaluation and samples --------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and top-1 accuracy over config.eval_batches fixed batches, all ranks."""
        model = self.raw_model
        was_training = model.training
        model.eval()
        # loss sum, correct, tokens; then sequences, and the sum and squared sum of each
        # sequence's mean loss (for the standard error of val_loss across sequences)
        sums = torch.zeros(6, device=self.device, dtype=torch.float64)
        for x, y in self.val_batches.eval_batches(self.config.eval_batches):
            x, y = x.to(self.device), y.to(self.device)
            with autocast_context(self.device.type, self.precision):
                logits = model(input_ids=x, use_cache=False).logits
            rows = y.shape[0]
            logits, y = logits.float().view(-1, logits.size(-1)), y.view(-1)
            real = y != IGNORE_INDEX  # padding targets (sample mode) are neither loss nor accuracy
            token_loss = F.cross_entropy(logits, y, reduction="none", ignore_index=IGNORE_INDEX).view(rows, -1)
            sums[0] += token_loss.sum()
            sums[1] += ((logits.argmax(-1) == y) & real).sum()
            sums[2] += real.sum()
            per_seq_count = real.view(rows, -1).sum(1)
            seq_mean = (token_loss.sum(1) / per_seq_count.clamp(min=1)).double()[per_seq_count > 0]
            sums[3] += seq_mean.numel()
            sums[4] += seq_mean.sum()
            sums[5] += (seq_mean**2).sum()
        model.train(was_training)
        loss_sum, correct, count, n_seq, s1, s2 = self.dist.all_reduce_sum(sums).tolist()
        val_loss = loss_sum / max(count, 1)
        metrics = {"step": self.state.step, "val_loss": val_loss,
                   "val_perplexity": math.exp(min(val_loss, 700.0)), "val_accuracy": correct / max(count, 1)}
        if n_seq > 1:  # standard error of the mean over sequences: what a claim about val_loss must beat
            var = max(0.0, (s2 - s1 * s1 / n_seq) / (n_seq - 1))
            metrics["val_loss_se"] = math.sqrt(var / n_seq)
        if self.bytes_per_token:
            metrics["val_bpb"] = val_loss / math.log(2) / self.bytes_per_token
        return metrics

    @torch.no_grad()
    def generate_samples(self) -> list[dict]:
        """Greedy continuations of the fixed prompts (no RNG drawn: resume stays exact)."""
        if not self.sample_prompts or self.tokenizer is None:
            return []
        model, tok = self.raw_model, self.tokenizer
        was_training = model.training
        model.eval()
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        samples = []
        for i, prompt in enumerate(self.sample_prompts):
            ids = tok(prompt, return_tensors="pt")["input_ids"][:, -(self.config.block_size - 1):].to(self.device)
            n_new = max(1, min(self.sample_tokens, self.config.block_size - ids.size(1)))
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                                 pad_token_id=pad)
            new = out[0, ids.size(1):].tolist()
            accuracy = None
            if i < len(self.sample_references) and self.sample_references[i]:
                ref = tok(self.sample_references[i], add_special_tokens=False)["input_ids"][: len(new)]
                if ref:
                    accuracy = sum(a == b for a, b in zip(new, ref)) / len(ref)
            samples.append({"prompt": prompt, "output": tok.decode(new, skip_special_tokens=True),
                            "accuracy": accuracy})
        model.train(was_training)
        return samples

    # -- the loop ----------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self._elapsed_base + (time.perf_counter() - self._t_start)

    def _check_finite(self) -> None:
        """One host sync: the first non-finite step loss among those not checked yet."""
        if len(self._pending) == self._checked:
            return
        losses = torch.stack(self._pending[self._checked:])
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            first = self._pending_first_step + self._checked + int((~finite).nonzero()[0, 0])
            self._pending.clear()
            raise NonFiniteLossError(
                f"training loss became {losses[~finite][0].item()} at step {first}: stopping before anything "
                "non-finite is saved. Try a lower learning_rate, max_grad_norm > 0, or precision='fp32'."
            )
        self._checked = len(self._pending)

    def _logs(self) -> dict[str, float]:
        losses = torch.stack(self._pending)
        steps = len(self._pending)
        dt = time.perf_counter() - self._t_interval - self._paused_s  # eval, samples, saves, compile excluded
        steps_timed = steps - self._untimed_steps  # the compiling step is not a training step's time
        tokens = steps_timed * self.config.tokens_per_step
        if steps_timed <= 0:  # an interval of only the compiling step: no step time to report
            dt, steps_timed = 0.0, 1
        logs = {
            "step": self.state.step, "train_loss": losses.mean().item(), "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(self._grad_norm), "step_time_ms": 1000.0 * dt / steps_timed,
            "tokens_per_sec": tokens / dt if dt > 0 else 0.0, "tokens_seen": self.state.tokens_seen,
            "elapsed_s": self._elapsed(),
        }
        if self._accuracy is not None:
            logs["train_accuracy"] = float(self._accuracy)
        if self._untimed_steps:
            logs["compile_s"] = self.compile_s
        return logs

    def _train_step(self, want_accuracy: bool) -> None:
        model, accum, dev = self.model, self.accum, self.device
        ddp = self.dist.is_distributed
        total = None
        for micro in range(accum):
            x, y = self.train_batches.next_batch()
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            # Gradients are all-reduced only on the last micro-step of a DDP step.
            sync = model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                with autocast_context(dev.type, self.precision):
                    logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
                self.scaler.scale(loss / accum if accum > 1 else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        if want_accuracy:
            real = y != IGNORE_INDEX
            self._accuracy = ((logits.detach().argmax(-1) == y) & real).sum() / real.sum().clamp(min=1)
        self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm > 0:
            self._grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.max_grad_norm)
        elif want_accuracy:  # only logged at log steps; no clipping asked
            self._grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.raw_model.parameters()
                                                            if p.grad is not None])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self._pending.append(total / accum if accum > 1 else total)

    def _compiling_step(self, want_accuracy: bool) -> None:
        """The first step of a compiled model: tracing and code generation happen here.
        Its wall time is reported as compile_s and kept out of step time and tokens/s."""
        t0 = time.perf_counter()
        self._train_step(want_accuracy)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_s = time.perf_counter() - t0
        self._compile_pending = False
        self._paused_s += self.compile_s
        self._untimed_steps += 1
        if self.dist.is_main:
            print(f"torch.compile: the first step took {self.compile_s:.1f} s (compiling); "
                  "not counted in step time or tokens/s", flush=True)

    def train(self) -> TrainResult:
        self._setup()
        self._saved_step = -1
        self._resumed_path = None  # the checkpoint _maybe_resume continues from
        self._maybe_resume()
        self._elapsed_base = self.state.elapsed_s
        self._t_start = self._t_interval = time.perf_counter()
        self._pending: list[torch.Tensor] = []  # step losses since the last log, on the device
        self._checked = 0  # how many of them passed the finiteness check
        self._paused_s = 0.0  # seconds of eval, samples and saving since the last log
        self._pending_first_step = self.state.step + 1
        self._grad_norm, self._accuracy = torch.zeros(()), None
        self.compile_s, self._untimed_steps = 0.0, 0  # compile time; steps it covers in this log interval
        self._compile_pending = self.compiled
        state, control, cfg = self.state, self.control, self.config
        status, error = RunStatus.COMPLETED, None
        self.raw_model.train()
        try:
            self.callbacks.call("on_train_begin", state, control, config=cfg, model=self.raw_model,
                                run_info=self._run_info())
            if self._resumed_path is not None and self.dist.is_main:
                # A kill between this checkpoint's write and its on_save left it out of the
                # logs; sinks keep one record per step, so announcing it again costs nothing.
                self.callbacks.call("on_save", state, control, checkpoint_path=self._resumed_path)
            while state.step < self.max_steps:
                want_acc = (state.step + 1) % cfg.log_interval == 0 or state.step + 1 == self.max_steps
                if self._compile_pending:
                    self._compiling_step(want_acc)
                else:
                    self._train_step(want_acc)
                state.step += 1
                state.tokens_seen += cfg.tokens_per_step
                if self.train_tokens:
                    state.epoch = state.tokens_seen / self.train_tokens
                self.callbacks.call("on_step_end", state, control)
                if cfg.time_limit_s and time.perf_counter() - self._t_start > cfg.time_limit_s and self.dist.is_main:
                    control.stop(RunStatus.STOPPED_EARLY, f"time limit of {cfg.time_limit_s:g} s reached")
                if self._is_sync_point():
                    self._sync_point()
                if control.should_stop:
                    status = control.stop_status
                    break
            self._finish(status)
        except NonFiniteLossError as e:
            status, error = RunStatus.FAILED, e
            print(f"Run {cfg.run_name} failed: {e}", file=sys.stderr, flush=True)
        except KeyboardInterrupt as e:
            status, error = RunStatus.INTERRUPTED, e
            self._save_on_interrupt()
            raise
        except BaseException as e:
            status, error = RunStatus.FAILED, e
            raise
        finally:
            # Drop the DDP wrapper (the next train() wraps anew): it holds the process group,
            # which DistributedContext.cleanup must free before the interpreter exits.
            self.model = self.raw_model
            state.elapsed_s = self._elapsed()
            self.checkpoints.wait_for_mirror()
            self._train_end(status, error)
        return TrainResult(status, state, self._final_metrics(), error=str(error) if error else "")

    def _is_sync_point(self) -> bool:
        s, cfg, c = self.state.step, self.config, self.control
        if s % cfg.log_interval == 0 or s % cfg.checkpoint_interval == 0 or s >= self.max_steps:
            return True
        if self.val_batches is not None and s % cfg.eval_interval == 0:
            return True
        if cfg.sample_interval and s % cfg.sample_interval == 0:
            return True
        # In DDP a flag set on rank 0 alone waits for the next deterministic sync point.
        return not self.dist.is_distributed and (c.should_stop or c.should_save or c.should_evaluate or c.should_log)

    def _sync_point(self) -> None:
        state, control, cfg = self.state, self.control, self.config
        self._check_finite()
        logged = state.step % cfg.log_interval == 0 or control.should_log or state.step >= self.max_steps
        if logged:  # the mean over every step since the last log, whatever synced in between
            self.last_logs = self._logs()
            self.callbacks.call("on_log", state, control, logs=self.last_logs)
            control.should_log = False
            self._untimed_steps = 0
            self._pending.clear()
            self._checked = 0
            self._pending_first_step = state.step + 1
            self._accuracy = None
        t_work = time.perf_counter()
        if self.val_batches is not None and (state.step % cfg.eval_interval == 0 or control.should_evaluate):
            self._evaluate()
        if cfg.sample_interval and state.step % cfg.sample_interval == 0 and self.dist.is_main:
            self.callbacks.call("on_sample", state, control, samples=self.generate_samples())
            state.last_sample_step = state.step
        if self.dist.is_distributed:
            c = self.dist.broadcast_object((control.should_stop, control.stop_status, control.stop_reason,
                                            control.should_save))
            control.should_stop, control.stop_status, control.stop_reason, control.should_save = c
        if control.should_save and state.step < self.max_steps and not control.should_stop:
            self._save_checkpoint()
            control.should_save = False
        if logged:  # the next interval starts after this sync point's work
            self._t_interval, self._paused_s = time.perf_counter(), 0.0
        else:  # eval, samples and saving are not step time
            self._paused_s += time.perf_counter() - t_work

    def _evaluate(self) -> None:
        state = self.state
        metrics = self.evaluate()
        state.last_val_loss = metrics["val_loss"]
        if metrics["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.best_step, state.evals_without_improvement = metrics["val_loss"], state.step, 0
        else:
            state.evals_without_improvement += 1
        self.last_eval = metrics
        state.last_eval_step = state.step
        self.callbacks.call("on_evaluate", state, self.control, metrics=metrics)
        self.control.should_evaluate = False

    def _finish(self, status: str) -> None:
        """End of the loop (completed or stopped): final eval and samples, a checkpoint."""
        state = self.state
        if self.control.should_stop and self.control.stop_reason and self.dist.is_main:
            print(f"Stopping {self.config.run_name} at step {state.step}: {self.control.stop_reason}", flush=True)
        self._check_finite()
        if status != RunStatus.PRUNED:
            # Not twice at one step, also not when a finished run is started again (its final
            # checkpoint was written after these): the logs would hold the step twice.
            if self.val_batches is not None and state.last_eval_step != state.step:
                self._evaluate()
            if self.dist.is_main and state.last_sample_step != state.step:
                self.callbacks.call("on_sample", state, self.control, samples=self.generate_samples())
        if self._saved_step != state.step and state.step > 0:
            self._save_checkpoint()

    def _train_end(self, status: str, error) -> None:
        """on_train_end for every callback. After Ctrl-C a teardown failure is reported,
        not raised: the interrupt (exit 130, checkpoint kept) is what the user asked for,
        and an error raised here would replace it (the signal may have landed in the
        middle of an import or a plot that teardown then trips over)."""
        try:
            self.callbacks.call("on_train_end", self.state, self.control, status=status, error=error)
        except Exception as e:  # noqa: BLE001 - re-raised unless an interrupt is in flight
            if status != RunStatus.INTERRUPTED:
                raise
            print(f"After the interrupt, teardown failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def _save_on_interrupt(self) -> None:
        """Ctrl-C: keep the progress unless it is non-finite or mid-write. Local states
        only (other ranks may already be gone). A failure to save is reported and the
        interrupt goes on (the previous checkpoint stays)."""
        try:
            self._check_finite()
        except NonFiniteLossError as e:
            print(f"Not saving on interrupt: {e}", file=sys.stderr)
            return
        if self._saved_step != self.state.step and self.state.step > 0 and self.dist.is_main:
            try:
                path = self._save_checkpoint(collective=False)
            except Exception as e:  # noqa: BLE001 - reported; the KeyboardInterrupt is re-raised by the caller
                print(f"Interrupted at step {self.state.step}; saving failed ({type(e).__name__}: {e}); the last "
                      "checkpoint is kept", file=sys.stderr, flush=True)
                return
            print(f"Interrupted at step {self.state.step}; saved {path}", file=sys.stderr, flush=True)

    def _final_metrics(self) -> dict[str, Any]:
        out = {**self.last_logs, **self.last_eval}
        out.update(step=self.state.step, tokens_seen=self.state.tokens_seen, elapsed_s=self.state.elapsed_s)
        if self.compiled:
            out["compile_s"] = self.compile_s
        return out

    # -- export ------------------------------------------------------------------------

    def export(self, out_dir) -> Path:
        """save_pretrained of the model (and tokenizer): AutoModelForCausalLM loads it."""
        out = Path(out_dir)
        if not self.dist.is_main:
            return out
        out.mkdir(parents=True, exist_ok=True)
        model, tok = self.raw_model, self.tokenizer
        if tok is not None:
            for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
                value = getattr(tok, name, None)
                if value is not None:
                    setattr(model.config, name, value)
                    if getattr(model, "generation_config", None) is not None:
                        setattr(model.generation_config, name, value)
            tok.save_pretrained(out)
        model.save_pretrained(out)
        return out
