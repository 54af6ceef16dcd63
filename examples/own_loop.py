"""A plain PyTorch training loop with this project's tracking: MetricsTracker (database and
W&B), LivePlotter (live figure in a notebook, a text table elsewhere), ExperimentDB and
TrainingDashboard. The tracking is the lines marked `# track` (18 of them; tests/test_own_loop.py counts them).

    python examples/own_loop.py --out results/own_loop --epochs 3 --steps 50
    python -m utils.training runs plot db:own-loop --workspace results/own_loop

The model is a small character-level causal transformer on the built-in ICD-10-CM corpus,
written with torch.nn only: any model and loop work the same way.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repository

from utils.training import builtin_corpus  # noqa: E402
from utils.training.compat.dashboard import TrainingDashboard  # noqa: E402
from utils.training.compat.live_plotting import LivePlotter  # noqa: E402
from utils.training.compat.metrics_tracker import MetricsTracker  # noqa: E402
from utils.training.tracking.db_sink import ExperimentDBSink  # noqa: E402
from utils.training.tracking.experiment_db import ExperimentDB  # noqa: E402


class CharLM(nn.Module):
    def __init__(self, vocab: int, d: int = 64, block: int = 64):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):  # x [batch, time] -> logits [batch, time, vocab]
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.body(self.emb(x) + self.pos.weight[: x.shape[1]], mask=mask, is_causal=True))


def batches(data: torch.Tensor, n: int, batch: int, block: int, gen: torch.Generator):
    for _ in range(n):
        i = torch.randint(0, len(data) - block - 1, (batch,), generator=gen)
        yield torch.stack([data[j:j + block] for j in i]), torch.stack([data[j + 1:j + 1 + block] for j in i])


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/own_loop"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per epoch")
    args = p.parse_args(argv)
    text = "\n".join(builtin_corpus()[:8000])  # ~0.5 MB of characters
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    train, val = data[: int(0.9 * len(data))], data[int(0.9 * len(data)):]
    config = {"model": "CharLM", "d_model": 64, "n_layer": 2, "block_size": 64, "batch_size": 32,
              "learning_rate": 3e-3, "epochs": args.epochs, "steps_per_epoch": args.steps}
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = CharLM(len(chars))
    opt = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"])

    db = ExperimentDB(args.out / "experiments.db")  # track
    run_name = db.unique_run_name("own-loop")  # track: own-loop, own-loop-2, ... on reruns
    tracker = MetricsTracker([ExperimentDBSink(db, run_name, config)], use_wandb=True)  # track (W&B if wandb.init ran)
    plotter = LivePlotter(metrics=["loss", "perplexity", "accuracy"])  # track
    for epoch in range(args.epochs):
        t0, losses, accs, norms = time.time(), [], [], []
        model.train()
        for x, y in batches(train, args.steps, 32, 64, gen):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
            opt.step()
            losses.append(loss.item())
            accs.append(tracker.compute_accuracy(logits, y))  # track
            tracker.log_scalar("train/batch_loss", loss.item())  # track: one step axis for everything
        model.eval()
        with torch.no_grad():
            vx, vy = next(batches(val, 1, 64, 64, torch.Generator().manual_seed(1)))
            vlogits = model(vx)
            vloss = nn.functional.cross_entropy(vlogits.flatten(0, 1), vy.flatten()).item()
        train_m = {"loss": sum(losses) / len(losses), "accuracy": sum(accs) / len(accs)}  # track
        val_m = {"loss": vloss, "accuracy": tracker.compute_accuracy(vlogits, vy)}  # track
        tracker.log_epoch(epoch, train_m, val_m, learning_rate=opt.param_groups[0]["lr"],  # track
                          gradient_norm=max(norms), epoch_duration=time.time() - t0)  # track
        plotter.update(epoch, train_m, val_m)  # track
    tracker.close()  # track: the run row becomes "completed" with its best val loss
    plotter.save(args.out / "live.png")  # track
    dashboard = TrainingDashboard(figsize=(16, 10))  # track
    dashboard.plot(tracker.get_summary(), config=config, title=run_name)  # track
    dashboard.save(args.out / "dashboard.png", dpi=100)  # track
    db.close()  # track
    best = tracker.get_best_epoch()
    print(f"{run_name}: best val loss {tracker.get_summary()['val/loss'].min():.3f} at epoch {best} "
          f"(perplexity {math.exp(tracker.get_summary()['val/loss'].min()):.2f}); {args.out}/dashboard.png")
    return args.out


if __name__ == "__main__":
    main()
