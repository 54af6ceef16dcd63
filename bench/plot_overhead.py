"""LivePlotter + run-log overhead in a smoke training run, as a share of wall time.

Trains a small character model on docs/ARCHITECTURE.md for `--seconds` seconds on
CPU, firing the callback events a Trainer fires (log every step by default, the
worst case), with a LivePlotter in figure mode (default throttle; the display
handle is a no-op sink so it runs headless) and a RunLogWriter (default interval).
The time spent inside those callbacks is measured directly and printed against
the loop's wall time. Goal: <= 1%.

    .venv/bin/python bench/plot_overhead.py [--seconds 30] [--log-interval 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.training import live_plotting  # noqa: E402
from utils.training.callbacks import RunStatus, TrainerControl, TrainerState  # noqa: E402
from utils.training.live_plotting import LivePlotter  # noqa: E402
from utils.training.run_log import RunLogWriter  # noqa: E402


class _Sink:
    def update(self, obj) -> None:
        self.last = obj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--log-interval", type=int, default=1)
    args = ap.parse_args()
    live_plotting._display = lambda obj: _Sink()  # headless: render the PNG, show it nowhere

    torch.manual_seed(0)
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    vocab, block, batch = len(chars), 64, 32
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 128), torch.nn.Linear(128, 256), torch.nn.GELU(),
                                torch.nn.Linear(256, vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tmp = Path(tempfile.mkdtemp())
    plotter, writer = LivePlotter(mode="figure"), RunLogWriter(tmp / "run.json")
    state, control = TrainerState(), TrainerControl()
    cb_s = 0.0  # seconds inside plotter and writer

    t = time.perf_counter()
    writer.start({"n_params": sum(p.numel() for p in model.parameters())})
    plotter.on_train_begin(state, control)
    cb_s += time.perf_counter() - t
    t0 = t_int = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        ix = torch.randint(len(ids) - block - 1, (batch,))
        x = torch.stack([ids[i:i + block] for i in ix])
        y = torch.stack([ids[i + 1:i + block + 1] for i in ix])
        loss = torch.nn.functional.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state.step += 1
        if state.step % args.log_interval == 0:
            dt = time.perf_counter() - t_int
            logs = {"train_loss": loss.item(), "lr": 1e-3, "tokens_per_sec": args.log_interval * batch * block / dt}
            t = time.perf_counter()
            writer.write(state.step, logs, "train")
            plotter.on_log(state, control, logs=logs)
            if state.step % 50 == 0:
                plotter.on_evaluate(state, control, metrics={"step": state.step, "val_loss": logs["train_loss"]})
            cb_s += time.perf_counter() - t
            t_int = time.perf_counter()
    wall = time.perf_counter() - t0
    t = time.perf_counter()
    writer.close(RunStatus.COMPLETED, {})
    plotter.on_train_end(state, control, status=RunStatus.COMPLETED)
    end_s = time.perf_counter() - t
    print(f"steps {state.step}, wall {wall:.1f} s, {1000 * wall / state.step:.1f} ms/step, log every "
          f"{args.log_interval} step(s)")
    print(f"redraws {plotter.redraws} (mean {1000 * plotter.draw_s / max(1, plotter.redraws):.0f} ms each)")
    print(f"callbacks during training: {cb_s:.3f} s = {100 * cb_s / wall:.2f}% of wall time (goal <= 1%)")
    print(f"final figure and run log at train end: {end_s:.2f} s (once per run)")
    if math.isnan(cb_s):
        sys.exit(1)


if __name__ == "__main__":
    main()
