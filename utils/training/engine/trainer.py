"""The training loop. It knows only callback events (callbacks.py) and acts on what the
control asks after each step; when to log, evaluate, sample and save is FlowCallback's
decision (callbacks.py). Around it: device.py, optimizers.py, rng.py, evaluation.py,
generation.py (samples, export), checkpoint.py (files), resume.py (their contents).

One optimizer step = the global batch (batch_size * gradient_accumulation_steps
sequences of block_size tokens) whatever the world size: each rank runs `accum`
micro-steps of `micro_batch` sequences, (micro_batch, accum) =
config.rank_batch(world_size). The hot path keeps every per-step number on the
device: losses go into a list of 0-d tensors that is read (one host sync) only at
a "sync point", a step after which the control asks for something (a log, an
evaluation, samples, a checkpoint, a stop). The non-finite check happens there too,
before anything is logged or saved, so a NaN run stops naming its first bad step and
never writes a NaN checkpoint.

Resume: train() first looks for the newest valid checkpoint in run_dir and restores
everything an uninterrupted run would have in memory at that step (resume.py), so
that the continuation is bit-identical on CPU.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.training.config_rules import require_valid
from utils.training.contracts import BatchSource, RunStatus
from utils.training.data.sampler import IGNORE_INDEX
from utils.training.engine import evaluation, generation, resume, signals
from utils.training.engine.batch_size import DeviceOps, OOMBackOff
from utils.training.engine.callbacks import (
    FLAGS,
    CallbackHandler,
    EarlyStoppingCallback,
    FlowCallback,
    TrainerControl,
    TrainerState,
    due,
)
from utils.training.engine.checkpoint import CheckpointManager
from utils.training.engine.device import (
    configure_backends,
    device_compiles,
    device_precision,
    needs_grad_scaler,
    resolve_device,
    wrap_model,
)
from utils.training.engine.distributed import DistributedContext
from utils.training.engine.log_window import LogWindow, NonFiniteLossError
from utils.training.engine.optimizers import build_optimizer, build_scheduler
from utils.training.engine.progress import ProgressBarCallback
from utils.training.engine.rng import capture_rng, seed_everything
from utils.training.engine.signals import sigterm_as_interrupt


@dataclass
class TrainResult:
    status: str  # a RunStatus value
    state: TrainerState
    final_metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""  # the message when status is failed


class Trainer:
    def __init__(self, config, model, train_batches: BatchSource, val_batches: BatchSource | None = None, *,
                 run_dir, callbacks=(), tokenizer=None, bytes_per_token=None, sample_prompts=(),
                 sample_references=(), mirror_dir=None, device=None, dist: DistributedContext | None = None,
                 run_info=None, progress_bar: bool = True, sample_tokens: int = 32, run_facts=None,
                 device_ops: DeviceOps | None = None):
        require_valid(config)
        self.config = config
        self.run_facts = run_facts  # engine.run_facts.RunFacts from the session; None = measured in _run_info
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
        self.device_ops = device_ops  # the device seam (engine/batch_size.py); None: the real device's
        # I/O callbacks live on rank 0 only; the control ones (deterministic functions of
        # the state) run everywhere. The flow comes after every callback that may stop the
        # run (it sees their stop in the same event: see callbacks.py).
        self.flow = FlowCallback.from_config(config, evaluate=val_batches is not None)
        own = [EarlyStoppingCallback(config.early_stopping_patience)] if config.early_stopping_patience > 0 else []
        user = list(callbacks) if self.dist.is_main else []
        bar = [ProgressBarCallback()] if progress_bar and self.dist.is_main else []
        self.callbacks = CallbackHandler(user + own + [self.flow] + bar)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep=config.keep_checkpoints,
                                             mirror_dir=mirror_dir, required_keys=resume.CHECKPOINT_KEYS,
                                             validate=functools.partial(resume.saved_config_problem, config))
        self.state = TrainerState(run_name=config.run_name, world_size=ws, is_world_process_zero=self.dist.is_main)
        self.control = TrainerControl()
        self.last_logs: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    # -- setup -----------------------------------------------------------------------

    def _setup(self) -> None:
        cfg, dev = self.config, self.device
        # measured once: the session's run facts, or here for a Trainer built without one
        self.precision = self.run_facts.precision if self.run_facts is not None else device_precision(cfg, dev)
        configure_backends(cfg, dev)
        self.raw_model.to(dev)
        self.compiled = device_compiles(cfg, dev)
        self.model = wrap_model(self.raw_model, compiled=self.compiled, device=dev, ddp=self.dist.is_distributed)
        self.optimizer = build_optimizer(self.raw_model, cfg, dev.type)
        # Enabled only for fp16: bf16 has fp32's exponent range and needs no loss scaling.
        self.scaler = torch.amp.GradScaler(dev.type if dev.type == "cuda" else "cpu",
                                           enabled=needs_grad_scaler(self.precision))
        self.ops = self.device_ops or DeviceOps(dev)
        self.ops.precision, self.ops.scaler = self.precision, self.scaler
        # Each drawn batch (micro_batch sequences) is cut into backoff.split passes: 1 until an
        # out-of-memory error halves the pass (a resumed run continues with its state's size).
        self.backoff = OOMBackOff(self.ops, self.micro_batch, say=self._say)
        self.max_steps = self._resolve_max_steps()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.max_steps)
        self.state.max_steps = self.max_steps
        self.train_tokens = self._train_tokens()
        self.flow.evaluate = self.val_batches is not None  # val_batches may be set after construction

    def _train_tokens(self) -> int:
        n = self.user_run_info.get("train_tokens")
        if n is None and hasattr(self.train_batches, "tokens"):
            n = len(self.train_batches.tokens)
        return int(n or 0)

    def _resolve_max_steps(self) -> int:
        """The session's run facts hold it; otherwise the config's one rule (a ConfigError
        naming max_steps when epochs must set the budget over batches of unknown size:
        pass run_info={'train_tokens': N} then)."""
        if self.run_facts is not None:
            return self.run_facts.max_steps
        return self.config.resolve_max_steps(self._train_tokens() or None)

    def _run_info(self) -> dict:
        """The caller's run_info (data stats, hardware, the durable run_dir) plus the run
        facts (engine.run_facts: the session's, measured once; a Trainer built without a
        session measures its own here) and what only the loop knows."""
        from utils.training.engine.run_facts import measure_run_facts

        facts = self.run_facts or measure_run_facts(
            self.config, self.raw_model, device=self.device, world_size=self.dist.world_size,
            train_tokens=self.train_tokens or None, precision=self.precision, max_steps=self.max_steps)
        info = {
            "run_name": self.config.run_name, "checkpoint_dir": str(self.checkpoints.dir), **facts.run_info(),
            "resumed_from_step": self.state.resumed_from_step, "compiled": self.compiled,
        }
        if getattr(self.optimizer, "ns_precision", None):  # what Muon computes in (a resume keeps its checkpoint's)
            info["muon_precision"] = self.optimizer.ns_precision
        return {**self.user_run_info, **info}

    # -- checkpoints -----------------------------------------------------------------

    def _save_checkpoint(self, collective: bool = True) -> Path | None:
        """All ranks call this (the gather is a collective); rank 0 writes. on_save on
        every rank (checkpoint_path None on the others): it answers control.should_save."""
        state, mine = self.state, (capture_rng(), self.train_batches.state_dict())
        rngs, samplers = zip(*(self.dist.all_gather_object(mine) if collective else [mine]))
        state.last_save_step, path = state.step, None  # every rank; the checkpoint's TrainerState says so too
        if self.dist.is_main:
            state.elapsed_s = self._elapsed()
            # What was logged up to this step becomes durable before the checkpoint exists: a
            # resume from it never logs those steps again, so they would be lost for good.
            self.callbacks.call("on_before_save", state, self.control)
            payload = resume.checkpoint_payload(state=state, config=self.config, model=self.raw_model,
                                                optimizer=self.optimizer, scheduler=self.scheduler,
                                                scaler=self.scaler, rngs=list(rngs), samplers=list(samplers),
                                                world_size=self.dist.world_size)
            path = self.checkpoints.save(payload, state.step, is_best=state.best_step == state.step)
        self.callbacks.call("on_save", state, self.control, checkpoint_path=str(path) if path else None)
        return path

    def _maybe_resume(self) -> None:
        path = self.checkpoints.latest_valid() if self.dist.is_main else None
        path = self.dist.broadcast_object(str(path) if path else None)
        self._resumed_path = path
        if path is None:
            seed_everything(self.config.random_seed + self.dist.rank)
            return
        payload = self.checkpoints.load(path)
        resume.check_resumable(self.config, payload, path)
        chosen = getattr(self.optimizer, "ns_precision", None)  # Muon's Newton-Schulz dtype for this device
        self.state = resume.restore(payload, model=self.raw_model, optimizer=self.optimizer,
                                    scheduler=self.scheduler, scaler=self.scaler, batches=self.train_batches,
                                    dist=self.dist, seed=self.config.random_seed, state=self.state)
        if self.dist.is_main:
            print(f"Resuming {self.config.run_name} from step {payload['step']} (checkpoint {path})", flush=True)
        kept = getattr(self.optimizer, "ns_precision", None)
        if kept != chosen and self.dist.is_main:  # the checkpoint's precision wins: the resume stays exact
            print(f"muon_precision: this run's Newton-Schulz iterations ran in {kept}; the resume keeps {kept} "
                  f"(this device's native choice is {chosen}) so that it continues exactly. Start a new "
                  f"run_name to train in {chosen}.", flush=True)

    # -- evaluation and samples --------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Mean loss and top-1 accuracy over config.eval_batches fixed batches, all ranks."""
        metrics = evaluation.evaluate(self.raw_model, self.val_batches, self.config.eval_batches,
                                      device=self.device, precision=self.precision, dist=self.dist,
                                      bytes_per_token=self.bytes_per_token)
        return {"step": self.state.step, **metrics}

    def generate_samples(self) -> list[dict]:
        """Greedy continuations of the fixed prompts (no RNG drawn: resume stays exact)."""
        return generation.generate_samples(self.raw_model, self.tokenizer, self.sample_prompts,
                                           self.sample_references, block_size=self.config.block_size,
                                           max_new_tokens=self.sample_tokens, device=self.device)

    def export(self, out_dir) -> Path:
        """save_pretrained of the model (and tokenizer): AutoModelForCausalLM loads it. Rank 0 writes."""
        if not self.dist.is_main:
            return Path(out_dir)
        return generation.export_model(self.raw_model, self.tokenizer, out_dir)

    # -- the loop ----------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self._elapsed_base + (time.perf_counter() - self._t_start)

    def _say(self, line: str) -> None:
        if self.dist.is_main:
            print(line, flush=True)

    def _passes(self, split: int):
        """The step's forward/backward passes: `accum` drawn batches, each cut into `split`
        micro-batches. -> (the summed pass losses, on the device; the last logits and y)."""
        model, accum, dev, ops = self.model, self.accum, self.device, self.ops
        ddp, n = self.dist.is_distributed, accum * split
        total = None
        for micro in range(accum):
            xb, yb = self.train_batches.next_batch()
            for part, (x, y) in enumerate(zip(xb.chunk(split), yb.chunk(split)) if split > 1 else [(xb, yb)]):
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                # Gradients are all-reduced only on the last pass of a DDP step.
                last = micro == accum - 1 and part == split - 1
                with model.no_sync() if ddp and not last else contextlib.nullcontext():
                    loss, logits = ops.forward_backward(model, x, y, n)
                total = loss if total is None else total + loss
        return total, logits, y

    def _train_step(self, want_accuracy: bool) -> None:
        total, logits, y = self.backoff.run(self._passes, self.train_batches,
                                            lambda: self.optimizer.zero_grad(set_to_none=True),
                                            step=self.state.step + 1, accumulation=self.accum)
        self.state.micro_batch = self.backoff.micro_batch if self.backoff.split > 1 else 0
        accum = self.accum * self.backoff.split
        if want_accuracy:
            real = y != IGNORE_INDEX
            self.window.accuracy = ((logits.detach().argmax(-1) == y) & real).sum() / real.sum().clamp(min=1)
        self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm > 0:
            self.window.grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(),
                                                                   self.config.max_grad_norm)
        elif want_accuracy:  # only logged at log steps; no clipping asked
            grads = [p.grad for p in self.raw_model.parameters() if p.grad is not None]
            self.window.grad_norm = torch.nn.utils.get_total_norm(grads)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.window.add(total / accum if accum > 1 else total)

    def _compiling_step(self, want_accuracy: bool) -> None:
        """The first step of a compiled model: tracing and code generation happen here.
        Its wall time is reported as compile_s and kept out of step time and tokens/s."""
        t0 = time.perf_counter()
        self._train_step(want_accuracy)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_s = time.perf_counter() - t0
        self._compile_pending = False
        self.window.paused_s += self.compile_s
        self.window.untimed_steps += 1
        if self.dist.is_main:
            print(f"torch.compile: the first step took {self.compile_s:.1f} s (compiling); "
                  "not counted in step time or tokens/s", flush=True)

    def train(self) -> TrainResult:
        with sigterm_as_interrupt():  # Colab and torchrun stop with SIGTERM: checkpoint as on Ctrl-C
            return self._train()

    def _train(self) -> TrainResult:
        self._setup()
        self._resumed_path = None  # the checkpoint _maybe_resume continues from
        self._maybe_resume()
        if self.state.micro_batch:  # backed off before this checkpoint: keep the smaller pass
            self.backoff.set_micro_batch(self.state.micro_batch)
        self._elapsed_base = self.state.elapsed_s
        self._t_start = time.perf_counter()
        self.window = LogWindow(first_step=self.state.step + 1)  # the steps since the last log
        self.compile_s = 0.0  # the compiling step's wall time
        self._compile_pending = self.compiled
        state, control, cfg = self.state, self.control, self.config
        status, error = RunStatus.COMPLETED, None
        self._in_step = False
        stops_before = len(signals.received)  # a stop signal during this run (signals.py records each)
        self.raw_model.train()
        try:
            self.callbacks.call("on_train_begin", state, control, config=cfg, model=self.raw_model,
                                run_info=self._run_info())
            if self._resumed_path is not None and self.dist.is_main:
                # A kill between this checkpoint's write and its on_save left it out of the
                # logs; sinks keep one record per step, so announcing it again costs nothing.
                self.callbacks.call("on_save", state, control, checkpoint_path=self._resumed_path)
            if self._resumed_path is not None:
                self._complete_saved_step()
            while state.step < self.max_steps:
                # Accuracy and the gradient norm are device work done for log steps only.
                want_acc = self.flow.logs_at(state.step + 1, self.max_steps)
                self._in_step = True  # until the count below: batches drawn, weights being updated
                if self._compile_pending:
                    self._compiling_step(want_acc)
                else:
                    self._train_step(want_acc)
                state.step += 1
                state.tokens_seen += cfg.tokens_per_step
                if self.train_tokens:
                    state.epoch = state.tokens_seen / self.train_tokens
                self._in_step = False
                self.callbacks.call("on_step_end", state, control)
                if any(getattr(control, flag) for flag in FLAGS) and self._sync_point():
                    status = control.stop_status
                    break
            self._finish()
        except NonFiniteLossError as e:
            status, error = RunStatus.FAILED, e
            print(f"Run {cfg.run_name} failed: {e}", file=sys.stderr, flush=True)
        except KeyboardInterrupt as e:
            status, error = RunStatus.INTERRUPTED, e
            self._save_on_interrupt()
            raise
        except BaseException as e:
            if len(signals.received) > stops_before:
                # An error a stop signal caused (torch turns a KeyboardInterrupt raised inside its
                # own calls into a RuntimeError): the stop, as on Ctrl-C.
                status, error = RunStatus.INTERRUPTED, e
                self._save_on_interrupt()
                stop = signals.Terminated("SIGTERM") if signals.exit_code() == signals.EXIT_SIGTERM else \
                    KeyboardInterrupt()
                raise stop from e
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

    def _log_step(self) -> None:
        """The log record of this step: the mean over every step since the last log,
        whatever synced in between."""
        state = self.state
        self.last_logs = self.window.logs(step=state.step, lr=self.scheduler.get_last_lr()[0],
                                          tokens_per_step=self.config.tokens_per_step,
                                          tokens_seen=state.tokens_seen, elapsed_s=self._elapsed(),
                                          compile_s=self.compile_s)
        if state.micro_batch:  # after an out-of-memory back-off: the pass size the run continues with
            self.last_logs["micro_batch"] = float(state.micro_batch)
        self.callbacks.call("on_log", state, self.control, logs=self.last_logs)
        self.window.restart(first_step=state.step + 1)

    def _sync_point(self) -> bool:
        """Act on what the control asks after this step: log, evaluate, sample, save, in
        that order. -> whether the loop must stop now."""
        state, control = self.state, self.control
        self.window.check_finite()
        self.dist.adopt_main(control)  # DDP: what follows is collective (FlowCallback: no flag raised on rank 0 alone)
        logged = control.should_log
        if logged:
            self._log_step()
        t_work = time.perf_counter()
        if control.should_evaluate:
            self._evaluate()
        if control.should_sample:
            samples = self.generate_samples() if self.dist.is_main else []
            state.last_sample_step = state.step
            self.callbacks.call("on_sample", state, control, samples=samples)
        self.dist.adopt_main(control)  # a stop or a save asked for by a rank-0 callback in the events above
        agreed_stop = control.should_stop
        if control.should_save:
            self._save_checkpoint()
        if logged:  # the next interval starts after this sync point's work
            self.window.restart_clock()
        else:  # eval, samples and saving are not step time
            self.window.paused_s += time.perf_counter() - t_work
        # In DDP a stop asked for during on_save waits for the next sync point (the others
        # have not seen it); on one process it stops now.
        return agreed_stop if self.dist.is_distributed else control.should_stop

    def _complete_saved_step(self) -> None:
        """A stop signal inside a step's sync point saves that step before its evaluation or
        samples ran (_save_on_interrupt): the resume does the missing ones first, once, as the
        uninterrupted run did at that step (evaluation and greedy samples draw no RNG, so the
        resume stays exact). The last step asks for both whatever the intervals."""
        s, every = self.state.step, self.flow.intervals
        if s <= 0:
            return
        last, done = s >= self.max_steps, False
        if self.flow.evaluate and (due(s, every.eval) or last) and self.state.last_eval_step != s:
            self._evaluate()
            done = True
        if (due(s, every.sample) or last) and self.state.last_sample_step != s:
            samples = self.generate_samples() if self.dist.is_main else []
            self.state.last_sample_step = s
            self.callbacks.call("on_sample", self.state, self.control, samples=samples)
            done = True
        if done:  # the step's checkpoint again, now saying so (a later start does not redo them)
            self._save_checkpoint()
        self.window.restart_clock()  # that work is not the next steps' time

    def _evaluate(self) -> None:
        self.last_eval = metrics = self.evaluate()
        self.state.last_eval_metrics = dict(metrics)  # saved with the checkpoint
        self.state.record_evaluation(metrics["val_loss"])
        self.callbacks.call("on_evaluate", self.state, self.control, metrics=metrics)

    def _finish(self) -> None:
        """End of the loop (completed or stopped): a last sync point for whatever the end
        of the run still asks for (the flow asks for the last step's evaluation, samples
        and checkpoint; each was usually done at the last step's own sync point)."""
        if self.control.should_stop and self.control.stop_reason and self.dist.is_main:
            print(f"Stopping {self.config.run_name} at step {self.state.step}: {self.control.stop_reason}", flush=True)
        self._sync_point()

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
        if getattr(self, "_in_step", False):
            # Inside a step the data position has moved and the weights and optimizer may be
            # half updated: a checkpoint of that would not resume exactly. The last one stays.
            print(f"Interrupted inside step {self.state.step + 1} (not finished): the last checkpoint is kept",
                  file=sys.stderr, flush=True)
            return
        try:
            self.window.check_finite()
        except NonFiniteLossError as e:
            print(f"Not saving on interrupt: {e}", file=sys.stderr)
            return
        if self.state.last_save_step != self.state.step and self.state.step > 0 and self.dist.is_main:
            try:
                if self.window.first_step <= self.state.step and self.flow.logs_at(self.state.step, self.max_steps):
                    self._log_step()  # stopped before this step's log record: the checkpoint must not skip it
                path = self._save_checkpoint(collective=False)
            except Exception as e:  # noqa: BLE001 - reported; the KeyboardInterrupt is re-raised by the caller
                print(f"Interrupted at step {self.state.step}; saving failed ({type(e).__name__}: {e}); the last "
                      "checkpoint is kept", file=sys.stderr, flush=True)
                return
            print(f"Interrupted at step {self.state.step}; saved {path}", file=sys.stderr, flush=True)

    def _final_metrics(self) -> dict[str, Any]:
        # this session's evaluation, else the one the checkpoint carried (a run resumed at its end)
        out = {**self.last_logs, **(self.last_eval or self.state.last_eval_metrics)}
        out.update(step=self.state.step, tokens_seen=self.state.tokens_seen, elapsed_s=self.state.elapsed_s)
        if self.compiled:
            out["compile_s"] = self.compile_s
        return out
