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
