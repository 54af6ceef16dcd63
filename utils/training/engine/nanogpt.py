"""nanogpt: our own decoder-only GPT in plain PyTorch, with the modded-nanogpt options.

RoPE, RMSNorm without gains, no biases, causal SDPA attention with grouped-query heads
(n_kv_head), a SwiGLU MLP (8/3·d_model) or, with relu2_mlp, a non-gated relu(x)² MLP
(4·d_model). The options (each off by default, each a TrainingConfig field of the same
name; docs/models.md):
  qk_norm         q and k RMS-normalised per head before the dot product
  relu2_mlp       MLP relu(x)², non-gated
  zero_init_proj  the attention output and MLP down projections start at zero
  tie_embeddings  (tie_word_embeddings here) False = a separate output head
  logit_softcap   c > 0: logits = c·tanh(logits / c)
  value_embeds    extra embedding tables added to the values of the first and last layers
  unet_skips      the first half's block outputs added to the second half's inputs
                  (mirrored), each with a learnable scalar weight

It is a transformers PreTrainedModel + GenerationMixin, so save_pretrained, from_pretrained
and generate work (with a DynamicCache; batches are unpadded: attention_mask is ignored).
This file imports only torch and transformers: save_pretrained copies it into the export
folder (register_for_auto_class), so the folder loads anywhere with
AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True), and without
trust_remote_code once this module is imported (it registers "nanogpt" with the Auto classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init  # skips weights from_pretrained has loaded
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast


class NanoGPTConfig(PretrainedConfig):
    model_type = "nanogpt"

    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 0  # 0: 4·d (relu2) or 8/3·d rounded up to 32 (SwiGLU)
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    dropout: float = 0.0
    qk_norm: bool = False
    relu2_mlp: bool = False
    zero_init_proj: bool = False
    logit_softcap: float = 0.0
    value_embeds: bool = False
    unet_skips: bool = False
    tie_word_embeddings: bool = True
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if not self.intermediate_size:
            d = self.hidden_size
            self.intermediate_size = 4 * d if self.relu2_mlp else int(math.ceil(8 * d / 3 / 32) * 32)
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def n_value_embeds(self) -> int:
        """Value-embedding tables: one per 4 layers (at least 1), each used by one of the
        first layers and the mirrored one of the last (modded-nanogpt: 3 for 12 layers)."""
        return max(1, self.num_hidden_layers // 4) if self.value_embeds else 0

    def value_embed_index(self, layer: int) -> int | None:
        """The value-embedding table layer `layer` adds to its values (None: none)."""
        k, n = self.n_value_embeds, self.num_hidden_layers
        if layer < k:
            return layer
        if layer >= n - k:
            return layer - (n - k)
        return None


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """RMS-normalise the last dimension (no gain)."""
    return F.rms_norm(x, (x.size(-1),))


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE on x (B, T, heads, D) at `positions` (T,), half-split pairs (Llama's layout).
    Frequencies are computed here, not kept as a buffer: nothing to restore after a
    meta-device build or a from_pretrained."""
    d = x.size(-1)
    inv_freq = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, D/2)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class DotProductAttention(nn.Module):
    """softmax(q·kᵀ/√D)·v (SDPA), a module of its own so a hook sees q and k right
    before the dot product. q (B, H, Tq, D); k, v (B, KV, Tk, D)."""

    def forward(self, q, k, v, dropout_p: float = 0.0):
        tq, tk = q.size(2), k.size(2)
        gqa = k.size(1) != q.size(1)
        if tq == tk:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p, enable_gqa=gqa)
        # New tokens after a cache of tk - tq: query i sees keys up to tk - tq + i.
        keep = torch.arange(tk, device=q.device)[None, :] <= torch.arange(tk - tq, tk, device=q.device)[:, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p, enable_gqa=gqa)


class Attention(nn.Module):
    def __init__(self, config: NanoGPTConfig, layer: int):
        super().__init__()
        self.layer, self.config = layer, config
        d, hd = config.hidden_size, config.head_dim
        self.n_head, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.q_proj = nn.Linear(d, self.n_head * hd, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv * hd, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv * hd, bias=False)
        self.o_proj = nn.Linear(self.n_head * hd, d, bias=False)
        self.o_proj.zero_init = True  # zeroed at init under zero_init_proj
        self.attend = DotProductAttention()
        # value embeddings: v = λ0·v + λ1·ve (modded-nanogpt's mix, both 0.5 at start)
        self.ve_lambdas = nn.Parameter(torch.full((2,), 0.5)) if config.value_embed_index(layer) is not None else None

    def forward(self, x, positions, ve=None, cache=None):
        b, t, _ = x.shape
        hd = self.config.head_dim
        q = self.q_proj(x).view(b, t, self.n_head, hd)
        k = self.k_proj(x).view(b, t, self.n_kv, hd)
        v = self.v_proj(x).view(b, t, self.n_kv, hd)
        if ve is not None:
            v = self.ve_lambdas[0] * v + self.ve_lambdas[1] * ve.view_as(v)
        if self.config.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        q, k = rotary(q, positions, self.config.rope_theta), rotary(k, positions, self.config.rope_theta)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, D)
        if cache is not None:
            k, v = cache.update(k, v, self.layer)
        y = self.attend(q, k, v, self.config.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_head * hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x))·up(x)); relu2_mlp: down(relu(up(x))²)."""

    def __init__(self, config: NanoGPTConfig):
        super().__init__()
        d, f = config.hidden_size, config.intermediate_size
        self.relu2 = config.relu2_mlp
        self.gate_proj = None if self.relu2 else nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)
        self.down_proj.zero_init = True  # zeroed at init under zero_init_proj

    def activation(self, x):
        if self.relu2:
            return F.relu(self.up_proj(x)).square()
        return F.silu(self.gate_proj(x)) * self.up_proj(x)

    def forward(self, x):
        return self.down_proj(self.activation(x))


class Block(nn.Module):
    def __init__(self, config: NanoGPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(config, layer)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, positions, ve=None, cache=None):
        x = x + self.drop(self.attn(rms_norm(x), positions, ve, cache))
        return x + self.drop(self.mlp(rms_norm(x)))


class NanoGPTPreTrainedModel(PreTrainedModel):
    config_class = NanoGPTConfig
    base_model_prefix = "model"
    _supports_sdpa = True
    _no_split_modules = ["Block"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            # the Linear itself carries the mark: modules are initialised in no fixed order
            if getattr(module, "zero_init", False) and self.config.zero_init_proj:
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, Attention) and module.ve_lambdas is not None:
            init.constant_(module.ve_lambdas, 0.5)
        if isinstance(module, NanoGPTModel) and module.skip_weights is not None:
            init.constant_(module.skip_weights, 1.0)


class NanoGPTModel(NanoGPTPreTrainedModel):
    def __init__(self, config: NanoGPTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        kv = config.num_key_value_heads * config.head_dim
        self.value_embeds = nn.ModuleList(nn.Embedding(config.vocab_size, kv) for _ in range(config.n_value_embeds))
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        n_skip = config.num_hidden_layers // 2 if config.unet_skips else 0
        self.skip_weights = nn.Parameter(torch.ones(n_skip)) if n_skip else None
        self.post_init()

    def forward(self, input_ids, cache=None):
        past = cache.get_seq_length() if cache is not None else 0
        positions = torch.arange(past, past + input_ids.size(1), device=input_ids.device)
        x = rms_norm(self.embed_tokens(input_ids))
        ves = [table(input_ids) for table in self.value_embeds]
        n = len(self.layers)
        n_skip = 0 if self.skip_weights is None else self.skip_weights.numel()
        skips = []
        for i, block in enumerate(self.layers):
            if n_skip and i >= n - n_skip:  # decoder half: the mirrored encoder output
                x = x + self.skip_weights[i - (n - n_skip)] * skips.pop()
            j = self.config.value_embed_index(i)
            x = block(x, positions, ves[j] if j is not None else None, cache)
            if n_skip and i < n_skip:
                skips.append(x)
        return rms_norm(x)


class NanoGPTForCausalLM(NanoGPTPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: NanoGPTConfig):
        super().__init__(config)
        self.model = NanoGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, labels=None,
                use_cache=None, logits_to_keep: int = 0, **kwargs):
        """attention_mask and position_ids are accepted for generate() and ignored: batches
        are unpadded and positions follow the cache."""
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None and not self.training:
            cache = DynamicCache(config=self.config)
        hidden = self.model(input_ids, cache if use_cache else None)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        c = self.config.logit_softcap
        if c > 0:
            logits = c * torch.tanh(logits / c)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)


AutoConfig.register("nanogpt", NanoGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(NanoGPTConfig, NanoGPTForCausalLM, exist_ok=True)
NanoGPTConfig.register_for_auto_class()
NanoGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")
