"""Validation metrics: mean loss, perplexity, top-1 accuracy, bits per byte and the
standard error of val_loss, over a fixed set of batches, summed over every rank."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.training.contracts import BatchSource
from utils.training.data.sampler import IGNORE_INDEX
from utils.training.engine.device import autocast_context
from utils.training.engine.distributed import DistributedContext


@torch.no_grad()
def evaluate(model, batches: BatchSource, n_batches: int, *, device: torch.device, precision: str,
             dist: DistributedContext, bytes_per_token: float | None = None) -> dict[str, float]:
    """-> {"val_loss", "val_perplexity", "val_accuracy"[, "val_loss_se", "val_bpb"]} over
    `batches.eval_batches(n_batches)`; one host sync (the all-reduced sums). Leaves
    `model` in the mode it was in."""
    was_training = model.training
    model.eval()
    # loss sum, correct, tokens; then sequences, and the sum and squared sum of each
    # sequence's mean loss (for the standard error of val_loss across sequences)
    sums = torch.zeros(6, device=device, dtype=torch.float64)
    for x, y in batches.eval_batches(n_batches):
        x, y = x.to(device), y.to(device)
        with autocast_context(device.type, precision):
            logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
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
    loss_sum, correct, count, n_seq, s1, s2 = dist.all_reduce_sum(sums).tolist()
    val_loss = loss_sum / max(count, 1)
    metrics = {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 700.0)),
               "val_accuracy": correct / max(count, 1)}
    if n_seq > 1:  # standard error of the mean over sequences: what a claim about val_loss must beat
        var = max(0.0, (s2 - s1 * s1 / n_seq) / (n_seq - 1))
        metrics["val_loss_se"] = math.sqrt(var / n_seq)
    if bytes_per_token:
        metrics["val_bpb"] = val_loss / math.log(2) / bytes_per_token
    return metrics
