"""The progress bar: a callback over the trainer's events (callbacks.py)."""

from __future__ import annotations

from typing import Any

from utils.training.engine.callbacks import TrainerCallback, TrainerControl, TrainerState
from utils.training.throughput import throughput_text


class ProgressBarCallback(TrainerCallback):
    """A tqdm.auto bar over optimizer steps with loss and tokens/s. Updated from
    host-side counters only: the loss shown is the one logged at the last log step."""

    def __init__(self, disable: bool = False):
        # Not tqdm's None ("off unless a TTY"): a notebook's output stream is no TTY.
        self.disable = disable
        self.bar = None
        self._display = None  # the notebook widget's display handle

    def on_train_begin(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        from tqdm.auto import tqdm
        from tqdm.notebook import tqdm_notebook

        widget = issubclass(tqdm, tqdm_notebook)  # tqdm.auto picks the widget in a kernel with ipywidgets
        self.bar = tqdm(total=state.max_steps, initial=state.step, desc=state.run_name, unit="step",
                        dynamic_ncols=True, disable=self.disable, **({"display": False} if widget else {}))
        if widget and not self.disable:
            from IPython.display import display

            # Our own display handle, so that on_train_end can refresh the text version too.
            self._display = display(self.bar.container, display_id=True)

    def on_step_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if self.bar is not None and "train_loss" in logs:
            # the system sampler's last reading (tracking/system_monitor.py), when it runs
            system = ({"gpu": f"{logs['gpu_util_pct']:.0f}%"} if "gpu_util_pct" in logs else
                      {"cpu": f"{logs['cpu_pct']:.0f}%"} if "cpu_pct" in logs else {})
            memory = next((f"{logs[k]:.1f}GiB" for k in ("gpu_memory_used_gb", "cpu_rss_gb") if k in logs), None)
            self.bar.set_postfix(loss=f"{logs['train_loss']:.4f}", tok_s=f"{logs.get('tokens_per_sec', 0.0):,.0f}",
                                 **system, **({"mem": memory} if memory else {}), refresh=False)

    def on_evaluate(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or {}
        if self.bar is not None and "val_loss" in metrics:
            self.bar.write(f"step {state.step}: val_loss {metrics['val_loss']:.4f}")

    def on_train_end(self, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            # One number for the run's duration and one for its throughput: the trainer's
            # wall time and tokens over it (what the summary line, the database and the
            # figures show), not the bar's own clock. tqdm writes the postfix as ", text".
            self.bar.bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}"
            self.bar.set_postfix_str(throughput_text(state.tokens_seen, state.elapsed_s), refresh=True)
            self.bar.close()
            if self._display is not None:
                # A saved notebook (GitHub, nbviewer) shows the widget's text/plain, captured
                # when it was displayed (0%): send the final state as that text.
                self._display.update(self.bar.container)
                self._display = None
            self.bar = None
