"""Muon: torch.optim.Muon with its Newton-Schulz iterations in a chosen dtype.

torch.optim.Muon (2.9+) always orthogonalises in bfloat16 (`grad.bfloat16()` in
torch/optim/_muon.py) and takes no dtype. Where bf16 is not native (a T4, an AVX2 CPU)
that is emulated: on an AVX2 CPU a bf16 matmul is ~68x slower than natively, and Muon's
step cost 3.44x AdamW's. This subclass runs the same iteration (torch's coefficients,
eps, ns_steps, lr adjustment and weight decay) in `ns_precision` ("bf16" | "fp32" |
"fp16"; engine.device.resolve_muon_precision chooses it per device). In bf16 its numbers
are bit-identical to torch.optim.Muon's (tests/test_muon.py).

The precision is a param-group key, so the optimizer's state_dict, and with it the
checkpoint, keeps it: a resume loads the precision the run was trained with. A group
without the key (a checkpoint written by torch.optim.Muon) ran in bf16.

Imported only by build_muon, after it has checked that this torch has torch.optim.Muon.
"""

from __future__ import annotations

import torch
from torch.optim._muon import _adjust_lr  # torch's "original" / "match_rms_adamw" lr scaling

from utils.training.engine.device import MUON_DTYPES

LEGACY_PRECISION = "bf16"  # what torch.optim.Muon computes in


def newton_schulz(grad: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """torch's `_zeropower_via_newtonschulz` with the dtype as an argument: the quintic
    iteration on the (wide) matrix scaled to spectral norm <= 1; returns it in `dtype`."""
    a, b, c = coefficients
    x = grad.to(dtype)
    tall = grad.size(0) > grad.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon whose Newton-Schulz runs in `ns_precision` (see the module)."""

    def __init__(self, params, *, ns_precision: str = LEGACY_PRECISION, **kwargs):
        if ns_precision not in MUON_DTYPES:
            raise ValueError(f"muon_precision: {ns_precision!r} is not one of {list(MUON_DTYPES)}")
        super().__init__(params, **kwargs)
        self.defaults["ns_precision"] = ns_precision
        for group in self.param_groups:
            group.setdefault("ns_precision", ns_precision)

    @property
    def ns_precision(self) -> str:
        """The precision the first group computes in (build_muon makes one group)."""
        return self.param_groups[0].get("ns_precision", LEGACY_PRECISION)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            self._init_group(group, params, grads, bufs)
            dtype = MUON_DTYPES[group.get("ns_precision", LEGACY_PRECISION)]
            lr, momentum, decay = float(group["lr"]), group["momentum"], group["weight_decay"]
            for param, grad, buf in zip(params, grads, bufs):  # torch's _single_tensor_muon, line by line
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                param.mul_(1 - lr * decay)
                param.add_(update, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss
