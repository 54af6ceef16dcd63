"""The optimizers and learning-rate schedules that registries.OPTIMIZERS and SCHEDULES name.

config.optimizer = "adamw": one torch.optim.AdamW; matrices and embeddings decay,
biases and norm gains do not (nanoGPT's split). All at config.learning_rate, unless
config.embedding_lr is set: then the embeddings, head, norm gains and biases (the
parameters Muon would leave to AdamW, split_for_muon) take that lr.

config.optimizer = "muon": torch.optim.Muon (momentum 0.95, Nesterov, 5 Newton-Schulz
steps; engine/muon.py runs them in config.muon_precision resolved for the device: bf16
where it is native, else fp32) on every 2-D weight of the transformer blocks (attention
and MLP projections), at config.muon_lr with config.muon_adjust_lr's scaling and
config.muon_weight_decay ("auto": weight_decay); AdamW at config.embedding_lr ("auto":
config.learning_rate) on the token and position
embeddings, the output head (tied to the token embedding here), norm gains and
biases, as the modded-nanogpt speedruns do. Muon orthogonalises each matrix's
update on its own, so under DDP, where every rank holds the same all-reduced
gradients, every rank computes the same update and no extra communication is needed.
Weight decay as PyTorch documents for both: decoupled, `param *= 1 - lr * weight_decay`.

Both live in one `MuonWithAdamW` so that the LR scheduler, the GradScaler and the
checkpoint see one optimizer: its param_groups are the inner optimizers' own group
dicts (the schedule scales both learning rates by the same factor) and its
state_dict is {"adamw": ..., "muon": ...}.
"""

from __future__ import annotations

import inspect

import torch

from utils.training.registries import OPTIMIZERS, SCHEDULES

ADAMW_BETAS = (0.9, 0.95)
# torch.optim.Muon's adjust_lr_fn (config.muon_adjust_lr): "original" is Keller Jordan's
# scaling, sqrt(max(1, rows/cols)) (an update of RMS ~ 1/sqrt(cols)); "match_rms_adamw" is
# Moonshot's 0.2 sqrt(max(rows, cols)) (an update of AdamW's RMS, so AdamW's lr carries over).


def adamw_kwargs(device_type: str) -> dict:
    """fused=True on CUDA (one kernel for all parameters), the foreach default elsewhere."""
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        return {"fused": True}
    return {}


def _unique(params) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def param_groups(model_or_params, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings (dim >= 2); not biases or norm gains (nanoGPT)."""
    params = model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module) else model_or_params
    decay, no_decay = [], []
    for p in _unique(params):
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def split_for_muon(model: torch.nn.Module) -> tuple[list, list]:
    """-> (hidden matrices for Muon, everything else for AdamW). Embedding tables (token,
    position) and the output head are looked up or project to the vocabulary: not
    hidden layers, so they stay on AdamW."""
    not_hidden = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        not_hidden.add(id(head.weight))
    muon, other = [], []
    for p in _unique(model.parameters()):
        (muon if p.dim() == 2 and id(p) not in not_hidden else other).append(p)
    return muon, other


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon and torch.optim.AdamW stepping together as one Optimizer."""

    def __init__(self, adamw: torch.optim.AdamW, muon: torch.optim.Muon):
        self.adamw, self.muon = adamw, muon
        params = [p for g in adamw.param_groups + muon.param_groups for p in g["params"]]
        super().__init__(params, {"lr": adamw.defaults["lr"]})
        self._link_groups()

    def _link_groups(self) -> None:
        # The very dicts the inner optimizers read: a scheduler writing "lr" here steers them.
        self.param_groups = self.adamw.param_groups + self.muon.param_groups

    def step(self, closure=None):
        """Both optimizers' step; a closure is evaluated once, by AdamW's (torch's own handling)."""
        loss = self.adamw.step(closure)
        self.muon.step()
        return loss

    @property
    def ns_precision(self) -> str:
        """The dtype Muon's Newton-Schulz iterations run in (engine/muon.py; a checkpoint keeps it)."""
        return self.muon.ns_precision

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"adamw", "muon"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"optimizer state: expected the keys 'adamw' and 'muon' of a Muon run, got {keys}")
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self._link_groups()  # loading replaced the inner group dicts


def build_adamw(model: torch.nn.Module, config, device_type: str) -> torch.optim.AdamW:
    """optimizer="adamw": one AdamW over every trainable parameter; with embedding_lr set, the
    parameters outside the blocks' matrices in groups of their own at that lr."""
    if config.embedding_lr == "auto":  # the groups of every earlier checkpoint
        groups = param_groups(model, config.weight_decay)
    else:
        hidden, other = split_for_muon(model)
        groups = param_groups(hidden, config.weight_decay) + [
            {**g, "lr": config.effective_embedding_lr} for g in param_groups(other, config.weight_decay)]
        groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=ADAMW_BETAS, **adamw_kwargs(device_type))


def build_muon(model: torch.nn.Module, config, device_type: str) -> MuonWithAdamW:
    """optimizer="muon": Muon on the hidden matrices at muon_lr, AdamW on the rest."""
    if not hasattr(torch.optim, "Muon"):
        raise ValueError(f"optimizer: 'muon' needs torch.optim.Muon (PyTorch >= 2.9); this is torch "
                         f"{torch.__version__}. Upgrade torch or use optimizer='adamw'.")
    hidden, other = split_for_muon(model)
    adamw = torch.optim.AdamW(param_groups(other, config.weight_decay), lr=config.effective_embedding_lr,
                              betas=ADAMW_BETAS, **adamw_kwargs(device_type))
    from utils.training.engine.device import device_muon_precision
    from utils.training.engine.muon import Muon

    muon = Muon(hidden, lr=config.muon_lr, weight_decay=config.effective_muon_weight_decay,
                adjust_lr_fn=config.muon_adjust_lr, ns_precision=device_muon_precision(config, device_type))
    return MuonWithAdamW(adamw, muon)


def build_optimizer(model: torch.nn.Module, config, device_type: str) -> torch.optim.Optimizer:
    """The optimizer config.optimizer names (registries.OPTIMIZERS), over `model`'s trainable
    parameters; ValueError naming the allowed ones for an unknown name."""
    return OPTIMIZERS.builder(getattr(config, "optimizer", "adamw"))(model, config, device_type)


def constant_schedule(optimizer, config, max_steps: int, warmup: int):
    from transformers import optimization as opt

    return opt.get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup)


def cosine_schedule(optimizer, config, max_steps: int, warmup: int):
    from transformers import optimization as opt

    return opt.get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=max_steps, min_lr_rate=config.min_lr_ratio
    )


def linear_schedule(optimizer, config, max_steps: int, warmup: int):
    """A polynomial of power 1, ending at lr_end (absolute: learning_rate x min_lr_ratio)."""
    from transformers import optimization as opt

    return opt.get_polynomial_decay_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=max_steps,
        lr_end=config.learning_rate * config.min_lr_ratio, power=1.0,
    )


def build_scheduler(optimizer, config, max_steps: int):
    """Linear warmup over warmup_ratio·max_steps, then the schedule config.schedule names
    (registries.SCHEDULES) down to min_lr_ratio·peak (transformers' LambdaLR schedules;
    state_dict-able). With min_lr_ratio >= 1 there is no decay to do: constant."""
    warmup = config.warmup_steps(max_steps)
    if config.min_lr_ratio >= 1.0:
        return constant_schedule(optimizer, config, max_steps, warmup)
    return SCHEDULES.builder(config.schedule)(optimizer, config, max_steps, warmup)
