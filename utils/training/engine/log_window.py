"""The steps since the last log: their losses kept on the device (read with one host
sync at a sync point, never per step), the time they took (evaluation, samples,
checkpoints and compiling excluded), and the train metrics a log reports for them."""

from __future__ import annotations

import time

import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class LogWindow:
    """Owned by the training loop; `first_step` is the step of the first loss added."""

    def __init__(self, first_step: int):
        self.losses: list[torch.Tensor] = []  # 0-d step losses, on the device
        self.checked = 0  # how many of them passed the finiteness check
        self.first_step = first_step
        self.t_start = time.perf_counter()
        self.paused_s = 0.0  # seconds of eval, samples, saving and compiling inside the window
        self.untimed_steps = 0  # steps whose time is not step time (the compiling step)
        self.grad_norm: torch.Tensor | float = torch.zeros(())  # the last one measured (log steps, or clipping)
        self.accuracy: torch.Tensor | None = None  # the log step's train accuracy, when measured

    def add(self, loss: torch.Tensor) -> None:
        self.losses.append(loss)

    def check_finite(self) -> None:
        """One host sync: raises NonFiniteLossError naming the first non-finite step loss
        among those not checked yet."""
        if len(self.losses) == self.checked:
            return
        losses = torch.stack(self.losses[self.checked:])
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            first = self.first_step + self.checked + int((~finite).nonzero()[0, 0])
            self.losses.clear()
            raise NonFiniteLossError(
                f"training loss became {losses[~finite][0].item()} at step {first}: stopping before anything "
                "non-finite is saved. Try a lower learning_rate, max_grad_norm > 0, or precision='fp32'."
            )
        self.checked = len(self.losses)

    def logs(self, *, step: int, lr: float, tokens_per_step: int, tokens_seen: int, elapsed_s: float,
             compile_s: float) -> dict[str, float]:
        """The train metrics of a log at `step` (a few host syncs: the mean loss, the
        gradient norm, the accuracy)."""
        steps = len(self.losses)
        dt = time.perf_counter() - self.t_start - self.paused_s  # eval, samples, saves, compile excluded
        steps_timed = steps - self.untimed_steps  # the compiling step is not a training step's time
        tokens = steps_timed * tokens_per_step
        if steps_timed <= 0:  # an interval of only the compiling step: no step time to report
            dt, steps_timed = 0.0, 1
        logs = {
            "step": step, "train_loss": torch.stack(self.losses).mean().item(), "lr": lr,
            "grad_norm": float(self.grad_norm), "step_time_ms": 1000.0 * dt / steps_timed,
            "tokens_per_sec": tokens / dt if dt > 0 else 0.0, "tokens_seen": tokens_seen, "elapsed_s": elapsed_s,
        }
        if self.accuracy is not None:
            logs["train_accuracy"] = float(self.accuracy)
        if self.untimed_steps:
            logs["compile_s"] = compile_s
        return logs

    def restart(self, first_step: int) -> None:
        """After a log: the next window starts empty (its clock starts at `restart_clock`)."""
        self.losses.clear()
        self.checked, self.untimed_steps, self.first_step, self.accuracy = 0, 0, first_step, None

    def restart_clock(self) -> None:
        """The next window's time starts now (after the sync point's work)."""
        self.t_start, self.paused_s = time.perf_counter(), 0.0
