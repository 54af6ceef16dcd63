"""The model card: README.md of an exported model folder, from the run's own record.

Everything in it comes from the run log (runs/NAME/run.json: config, run facts, train
and eval points); nothing is typed in by hand. A smoke or cpu preset run says
"smoke/cpu preset: not a result" at the top (style.caveat), as its figures do.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any


class ModelCardError(ValueError):
    """The run has no readable run log to describe it from."""


def card_facts(run_log_path: Path, step: int | None = None) -> dict[str, Any]:
    """What the card says, read from `run_log_path`: the evaluation at `step` (the exported
    weights' step; None = the last evaluation) and the last training point."""
    try:
        log = json.loads(Path(run_log_path).read_text())
    except (OSError, ValueError) as e:
        raise ModelCardError(f"model card: cannot read the run log {run_log_path} ({type(e).__name__}: {e})") from e
    evals = [e for e in log.get("eval", []) if e.get("val_loss") is not None]
    chosen = next((e for e in evals if e.get("step") == step), None) if step is not None else None
    chosen = chosen or (evals[-1] if evals else {})
    trains = log.get("train", [])
    last_train = trains[-1] if trains else {}
    info = log.get("run_info", {}) or {}
    config = log.get("config", {}) or {}
    data = info.get("data", {}) or {}
    return {"name": log.get("name", ""), "status": log.get("status", ""), "config": config, "model": info.get("model", {}),
            "hardware": info.get("hardware", {}), "data": data, "eval": chosen, "train": last_train,
            "summary": log.get("summary", {}) or {}, "precision": info.get("precision", config.get("precision", "")),
            "world_size": info.get("world_size", 1)}


def _num(value, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _project_link() -> str:
    """[slm-notebooks](repo_url) from pyproject.toml's [tool.slm-notebooks] (the clone's own)."""
    import tomllib

    try:
        with open(Path(__file__).resolve().parents[3] / "pyproject.toml", "rb") as f:
            url = tomllib.load(f)["tool"]["slm-notebooks"]["repo_url"]
    except (OSError, KeyError, ValueError):
        return "slm-notebooks"
    return f"[slm-notebooks]({url.removesuffix('.git')})"


def render_card(facts: dict[str, Any], repo_id: str = "") -> str:
    from utils.training.text import caveat

    config, model, data, hw = facts["config"], facts["model"], facts["data"], facts["hardware"]
    ev, tr, summary = facts["eval"], facts["train"], facts["summary"]
    preset = config.get("preset", "")
    note = caveat(preset, bool(data.get("synthetic")))
    family = model.get("family") or config.get("model_family", "")
    params = model.get("n_params")
    load_from = repo_id or "path/to/this/folder"
    # bits/byte = nats/token / ln 2 / bytes per token: its standard error scales the same way
    bpt, se = data.get("bytes_per_token"), ev.get("val_loss_se")
    bpb_se = se / math.log(2) / bpt if se is not None and bpt else None
    gpu = hw.get("gpu_name") or ""
    hardware = f"{hw.get('n_gpus', 0)} x {gpu}" if gpu else f"CPU ({hw.get('cpu_count', '?')} cores)"
    seconds = tr.get("elapsed_s", summary.get("total_time"))
    tokens = tr.get("tokens_seen", summary.get("tokens_seen"))
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [slm-notebooks, causal-lm" + (", not-a-result" if note else "") + "]",
        "---",
        f"# {facts['name']}",
        "",
    ]
    if note:
        lines += [f"> **{note}.** This model was trained with the `{preset}` preset to check the pipeline; its numbers "
                  "say nothing about what the recipe can do.", ""]
    lines += [
        f"A small {family} causal language model trained from scratch with {_project_link()} (`utils/training`).",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {family} ({config.get('n_layer', model.get('n_layer'))} layers, d_model "
        f"{config.get('d_model', model.get('d_model'))}, {config.get('n_head', model.get('n_head'))} heads"
        + (f", {config['n_kv_head']} kv heads" if config.get("n_kv_head") else "") + ") |",
        f"| parameters | {_num(params, ',')} ({_num(model.get('n_params_non_embedding'), ',')} non-embedding) |",
        f"| context | {config.get('block_size', model.get('block_size'))} tokens |",
        f"| vocabulary | {model.get('vocab_size', config.get('vocab_size'))} ({data.get('tokenizer', config.get('tokenizer', ''))}) |",
        f"| precision in training | {facts.get('precision') or 'n/a'} |",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data.get('name', '')} ({data.get('source', config.get('data_source', ''))})"
        + (", synthetic tokens" if data.get("synthetic") else "") + " |",
        f"| tokens seen | {_num(tokens, ',')} |",
        f"| steps | {_num(tr.get('step', summary.get('final_step')), 'd')} |",
        f"| preset | {preset or 'custom'} |",
        f"| hardware | {hardware}, torch {hw.get('torch', '')} |",
        f"| training time | {_num(seconds, '.0f')} s |",
        "",
        "## Evaluation (held-out split of the training data)",
        "",
        "| step | val_loss (nats/token) | val_bpb (bits/byte) | perplexity |",
        "|---|---|---|---|",
        f"| {_num(ev.get('step'), 'd')} | {_num(ev.get('val_loss'), '.4f')} ± {_num(ev.get('val_loss_se'), '.4f')} | "
        f"{_num(ev.get('val_bpb'), '.4f')} ± {_num(bpb_se, '.4f')} | {_num(ev.get('val_perplexity'), '.1f')} |",
        "",
        "± is the standard error over the evaluated sequences: differences between models smaller "
        "than about twice it are not evidence.",
        "",
    ]
    if facts.get("dashboard"):
        lines += ["## Training curves", "", f"![training dashboard]({facts['dashboard']})", ""]
    lines += [
        "## Intended use and limits",
        "",
        "For learning and experiments: a small model trained on little data, to study training, not to be "
        "relied on. It makes things up, repeats itself, knows nothing beyond its training text and was not "
        "tuned to follow instructions or to be safe. Do not use its output for decisions"
        + (" (its corpus is medical code descriptions: this is not medical advice)." if data.get("name") == "icd10cm"
           else "."),
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast",
        "",
        # nanogpt is ours: the folder carries its modeling file (nanogpt.py), which transformers runs only when asked
        (f'model = AutoModelForCausalLM.from_pretrained("{load_from}", trust_remote_code=True)  # ships nanogpt.py'
         if family == "nanogpt" else f'model = AutoModelForCausalLM.from_pretrained("{load_from}")'),
        "# the tokenizer exactly as trained (AutoTokenizer may swap in the family's own pre-tokenizer)",
        f'tokenizer = PreTrainedTokenizerFast.from_pretrained("{load_from}")',
        'ids = tokenizer("Cholera due to", return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=30, do_sample=True, top_k=50)[0]))",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder, run_log_path, *, step: int | None = None, dashboard=None, repo_id: str = "") -> Path:
    """README.md in `folder` (and the dashboard image beside it, when given and present)."""
    folder = Path(folder)
    facts = card_facts(run_log_path, step)
    if dashboard is not None and Path(dashboard).exists():
        shutil.copy2(dashboard, folder / "dashboard.png")
        facts["dashboard"] = "dashboard.png"
    from utils.training.io import atomic_write_text

    path = folder / "README.md"
    atomic_write_text(path, render_card(facts, repo_id))
    return path
