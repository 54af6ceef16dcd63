"""`python -m utils.training generate` and `export`: their arguments and what they run
(cli.py only registers them, two lines each, so the main command table stays small)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from utils.training.export.run_model import CHECKPOINTS


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    from utils.training.engine.sampling import SamplingOptions

    d = SamplingOptions()
    p.add_argument("--workspace", default="workspace", help="workspace folder (default: workspace)")
    p.add_argument("--run", required=True, metavar="NAME", help="the run whose model talks (runs/NAME)")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                   help="best val_loss checkpoint (default), the newest one, or the exported folder")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=d.top_k, help="0 = off")
    p.add_argument("--top-p", type=float, default=d.top_p, help="1 = off")
    p.add_argument("--seed", type=int, default=d.seed, help="the same seed gives the same text")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no streaming)")


def generate_command(args: argparse.Namespace) -> int:
    from utils.training.config_rules import ConfigError, Problem
    from utils.training.engine.sampling import SamplingOptions, generate
    from utils.training.export.run_model import RunModelError, load_run_model
    from utils.training.workspace import Workspace

    try:
        options = SamplingOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        loaded = load_run_model(Workspace(args.workspace), args.run, args.checkpoint)
    except (ValueError, RunModelError) as e:  # RunModelError is a ValueError: named field or file
        raise ConfigError([Problem("--run" if isinstance(e, RunModelError) else "sampling", args.run, str(e))]) from e
    if args.json:
        result = generate(loaded.model, loaded.tokenizer, args.prompt, options, block_size=loaded.block_size)
        print(json.dumps({"run": args.run, "checkpoint": args.checkpoint, "step": loaded.step,
                          "source": loaded.source, **result.to_dict()}, indent=2))
        return 0
    print(args.prompt, end="", flush=True)
    result = generate(loaded.model, loaded.tokenizer, args.prompt, options, block_size=loaded.block_size,
                      on_text=lambda piece: print(piece, end="", flush=True))
    print()
    step = f" step {loaded.step}" if loaded.step is not None else ""
    print(f"[{args.run} {args.checkpoint}{step}: {result.timing_line()}]", file=sys.stderr)
    return 0



def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default="workspace", help="workspace folder (default: workspace)")
    p.add_argument("--run", required=True, metavar="NAME", help="the run to export (runs/NAME)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="export",
                   help="export (default: the folder training wrote), or the best / newest checkpoint")
    p.add_argument("--out", type=Path, help="output folder (default: runs/NAME/model, or model-best/-newest)")
    p.add_argument("--push-to-hub", metavar="OWNER/REPO", default="",
                   help="upload the folder with its model card (token: HF_TOKEN in Colab Secrets or the environment)")
    p.add_argument("--public", action="store_true", help="make a new Hub repo public (default: private)")
    p.add_argument("--gguf", default="", metavar="TYPES",
                   help="also write GGUF files for llama.cpp: f16, q8_0 or f16,q8_0")


def export_command(args: argparse.Namespace) -> int:
    from utils.training.config_rules import ConfigError, Problem
    from utils.training.export.folder import export_run
    from utils.training.export.hub import HubError, check_repo_id, push_folder
    from utils.training.export.model_card import ModelCardError
    from utils.training.export.run_model import RunModelError
    from utils.training.workspace import Workspace

    workspace = Workspace(args.workspace)
    try:
        if args.push_to_hub:
            check_repo_id(args.push_to_hub)
        gguf_types = _gguf_types(args.gguf)
        out = export_run(workspace, args.run, args.checkpoint, args.out, repo_id=args.push_to_hub)
    except (RunModelError, ModelCardError, HubError) as e:
        raise ConfigError([Problem("--run" if isinstance(e, RunModelError) else "export", args.run, str(e))]) from e
    print(f"exported {args.run} ({args.checkpoint}) with its model card to {out}")
    if gguf_types:
        from utils.training.export.gguf import write_gguf

        for qtype in gguf_types:
            path = write_gguf(out, qtype)
            print(f"GGUF {qtype}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.push_to_hub:
        try:
            url = push_folder(out, args.push_to_hub, private=not args.public)
        except HubError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"uploaded to {url} ({'public' if args.public else 'private'})")
    return 0


def _gguf_types(text: str) -> list[str]:
    from utils.training.config_rules import ConfigError, Problem

    allowed = ("f16", "q8_0")
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in allowed]
    if bad:
        raise ConfigError([Problem("--gguf", text, f"one or more of {', '.join(allowed)}, comma-separated")])
    return types
