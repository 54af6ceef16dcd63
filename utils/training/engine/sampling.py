"""Talking to a model: sampled generation, streamed as text while it is produced.

`stream_generate` is a generator of text pieces (each the newly decodable suffix, so a
multi-byte character split over BPE tokens appears once, whole); the returned
`Generation` holds the full text and the timings. Its own loop over the model's KV
cache (one forward per token) instead of `model.generate`, so the first token's time
is measured where it happens and each piece leaves as soon as it is decoded.

Deterministic for a seed: every draw comes from one `torch.Generator` seeded with
`seed` on the CPU (the global RNG is neither read nor moved, so generating inside a
training notebook does not change the next training run).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch


@dataclass(frozen=True)
class SamplingOptions:
    """temperature 0 = greedy (argmax; top_k/top_p ignored). top_k 0 and top_p 1 = off."""

    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self):
        problems = []
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens: {self.max_new_tokens!r} (an integer >= 1)")
        if not (self.temperature >= 0):  # also rejects NaN
            problems.append(f"temperature: {self.temperature!r} (>= 0; 0 = greedy)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            problems.append(f"top_k: {self.top_k!r} (an integer >= 0; 0 = off)")
        if not (0 < self.top_p <= 1):
            problems.append(f"top_p: {self.top_p!r} (in (0, 1]; 1 = off)")
        if problems:
            raise ValueError("sampling options not allowed: " + "; ".join(problems))


@dataclass
class Generation:
    """One generation: the prompt, the new text and its token ids, and the timings
    (ttft_s: seconds from the call to the first new token, prompt forward included;
    tokens_per_sec: new tokens after the first per second of decoding)."""

    prompt: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    tokens_per_sec: float = 0.0
    stopped: str = "max_new_tokens"  # or "eos" or "context"
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def timing_line(self) -> str:
        return (f"{len(self.token_ids)} tokens; time to first token {self.ttft_s * 1000:.1f} ms; "
                f"{self.tokens_per_sec:.1f} tokens/s (stopped: {self.stopped})")


def next_token(logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator) -> int:
    """One token id from `logits` (vocab,) under `options` (float32 on the CPU: the same
    draw whatever device the model ran on)."""
    logits = logits.detach().float().cpu()
    if options.temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / options.temperature
    if 0 < options.top_k < logits.numel():
        kth = torch.topk(logits, options.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= options.top_p  # keep the first over top_p
        logits[order[drop]] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def stream_generate(model, tokenizer, prompt: str, options: SamplingOptions | None = None, *,
                    device: torch.device | str | None = None,
                    block_size: int | None = None) -> Iterator[str]:
    """Yield the text as it is generated; `return`s the Generation (use `generate` for it).
    block_size: the model's context (default: its config's max positions); the prompt is
    cut to its last block_size - 1 tokens. Stops at max_new_tokens, the tokenizer's eos or
    a full context. Leaves `model` in the mode it was in."""
    options = options or SamplingOptions()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    block_size = block_size or _context_length(model)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(int(options.seed))
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -(block_size - 1):]
    if ids.size(1) == 0:  # an empty prompt: start from eos (the documents' separator)
        ids = torch.tensor([[tokenizer.eos_token_id or 0]])
    result = Generation(prompt=prompt, prompt_tokens=int(ids.size(1)), options=asdict(options))
    eos = tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        cache_kw = _cache_keyword(model)
        out = model(input_ids=ids.to(device), use_cache=True)
        past, logits = getattr(out, cache_kw), out.logits[0, -1]
        first_at = None
        shown = ""
        position = ids.size(1)
        while True:
            token = next_token(logits, options, generator)
            if first_at is None:
                first_at = time.perf_counter()
                result.ttft_s = first_at - started
            if eos is not None and token == eos:
                result.stopped = "eos"
                break
            result.token_ids.append(token)
            text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence waits for its next token
                piece, shown = text[len(shown):], text
                if piece:
                    yield piece
            position += 1
            if len(result.token_ids) >= options.max_new_tokens:
                break
            if position >= block_size:
                result.stopped = "context"
                break
            out = model(input_ids=torch.tensor([[token]], device=device), use_cache=True, **{cache_kw: past})
            past, logits = getattr(out, cache_kw), out.logits[0, -1]
        result.text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
        if result.text[len(shown):]:
            yield result.text[len(shown):]
    finally:
        model.train(was_training)
    end = time.perf_counter()
    result.total_s = end - started
    decoding = end - (first_at or end)
    result.tokens_per_sec = (len(result.token_ids) - 1) / decoding if len(result.token_ids) > 1 and decoding > 0 \
        else 0.0
    return result


def generate(model, tokenizer, prompt: str, options: SamplingOptions | None = None, *, on_text=None,
             device=None, block_size: int | None = None) -> Generation:
    """Run `stream_generate` to the end, handing each piece to `on_text` (e.g. print with
    end="" and flush=True) -> the Generation."""
    stream = stream_generate(model, tokenizer, prompt, options, device=device, block_size=block_size)
    while True:
        try:
            piece = next(stream)
        except StopIteration as done:
            return done.value
        if on_text is not None:
            on_text(piece)


def _cache_keyword(model) -> str:
    """The KV cache's argument and output name: `cache` in transformers 5.x,
    `past_key_values` before (Colab may ship either)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _context_length(model) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 1024
