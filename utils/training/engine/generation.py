"""What a trained model produces: greedy text samples from fixed prompts (during
training, for the logs) and the exported model folder (save_pretrained, loadable with
AutoModelForCausalLM)."""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def generate_samples(model, tokenizer, prompts, references=(), *, block_size: int, max_new_tokens: int,
                     device: torch.device) -> list[dict]:
    """Greedy continuations of `prompts` (no RNG drawn: a resumed run stays exact).
    -> [{"prompt", "output", "accuracy"}]; accuracy: the share of new tokens equal to the
    reference's tokens (None without a reference). Leaves `model` in the mode it was in."""
    if not prompts or tokenizer is None:
        return []
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    references = list(references)
    samples = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -(block_size - 1):].to(device)
        n_new = max(1, min(max_new_tokens, block_size - ids.size(1)))
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                             pad_token_id=pad)
        new = out[0, ids.size(1):].tolist()
        accuracy = None
        if i < len(references) and references[i]:
            ref = tokenizer(references[i], add_special_tokens=False)["input_ids"][: len(new)]
            if ref:
                accuracy = sum(a == b for a, b in zip(new, ref)) / len(ref)
        samples.append({"prompt": prompt, "output": tokenizer.decode(new, skip_special_tokens=True),
                        "accuracy": accuracy})
    model.train(was_training)
    return samples


def export_model(model, tokenizer, out_dir) -> Path:
    """save_pretrained of `model` (and `tokenizer`, whose special token ids go into the
    model's config and generation config) into `out_dir`: AutoModelForCausalLM loads it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(tokenizer, name, None)
            if value is not None:
                setattr(model.config, name, value)
                if getattr(model, "generation_config", None) is not None:
                    setattr(model.generation_config, name, value)
        tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out
