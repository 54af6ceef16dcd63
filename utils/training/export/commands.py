"""`python -m utils.training generate` and `export`: their arguments and what they run
(cli.py only registers them, two lines each, so the main command table stays small)."""

from __future__ import annotations

import argparse
import json
import sys

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
    p.add_argument("--workspace", default="workspace")
    p.add_argument("--run", required=True, metavar="NAME")


def export_command(args: argparse.Namespace) -> int:
    raise NotImplementedError
