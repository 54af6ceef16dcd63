"""Reading other writers' keys: the one place where alias lists live. A reader names the
keys a fact may have been written under and stores the fact under our name in the
RunRecord; nothing outside readers/ looks for aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.training.tracking.run_log_format import RunLogError


def first_present(d: dict, *keys: str, default: Any = None) -> Any:
    """The value of the first of `keys` that `d` holds and is not None, else `default`."""
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return default


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`; RunLogError naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except UnicodeDecodeError:
        raise RunLogError(f"{path}: not a text file (a run log is JSON)") from None
    except RecursionError:
        raise RunLogError(f"{path}: nested too deeply to be a run log") from None
    except ValueError as e:  # empty, truncated, not JSON, a 5000-digit number
        raise RunLogError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise RunLogError(f"{path}: holds a JSON {type(doc).__name__}, not a run log object")
    return doc


NUMBER = (int, float)
SUMMARY_NUMBERS = ("best_val_loss", "best_step", "final_train_loss", "final_step", "total_time", "tokens_seen",
                   "final_val_loss")


def check_fields(doc: dict, path: Path, types: dict[str, type | tuple[type, ...]], where: str = "") -> None:
    """Each key of `types` that `doc` holds (and is not null) has that type (bool is not a
    number); RunLogError naming the file and the field otherwise. `where`: the field's
    parent, as it is spelled in the message ("config.")."""
    for key, allowed in types.items():
        v = doc.get(key)
        allowed = allowed if isinstance(allowed, tuple) else (allowed,)
        if v is None:
            continue
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
            names = " or ".join({"dict": "an object", "list": "a list", "str": "text", "int": "a number",
                                 "float": "a number"}[t.__name__] for t in allowed)
            raise RunLogError(f"{path}: field {where}{key!r} is {v!r:.60}, not {names}")
