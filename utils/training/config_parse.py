"""Text to typed config values: what a notebook form or a `--set KEY=VALUE` gives as a
string becomes the field's type here, explicitly (a form's "3e-4" is parsed, a JSON
file's "3e-4" is not: files carry types, and validation refuses a string for a float).

Every function takes the field types (`config_rules.field_types(TrainingConfig)`, which
`utils.training.config` passes in), so this module knows no config class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from utils.training.config_rules import AUTO, AUTO_FIELDS, ConfigError, Problem, is_auto, unknown_key
from utils.training.presets import PRESET_CHOICE

_LEGACY_COMPILE = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}


def parse_text(name: str, text: str, kind: type) -> Any:
    """`text` as a value of `kind` for field `name`; ValueError saying what was expected."""
    s = text.strip()
    if name == "compile" and s.lower() in _LEGACY_COMPILE:  # compile=true from when it was a bool
        return _LEGACY_COMPILE[s.lower()]
    if is_auto(name, s.lower()):  # batch_size=auto: measured when the run is prepared
        return AUTO
    if kind is bool:
        if s.lower() in ("true", "1", "yes", "on"):
            return True
        if s.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"must be true or false, got {text!r}")
    if kind is int:
        what = "an integer" + (f" or {AUTO!r}" if name in AUTO_FIELDS else "")
        try:
            f = float(s)
        except ValueError:
            raise ValueError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"must be {what}, got {text!r}")
        return int(f)
    if kind is float:
        try:
            return float(s)
        except ValueError:
            raise ValueError(f"must be a number, got {text!r}") from None
    return s


def read_overrides(items: list[str], types: Mapping[str, type]) -> dict[str, Any]:
    """`["learning_rate=3e-4", "n_layer=2"]` -> typed dict; ConfigError naming every bad item."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(Problem(item, "(no '=')", "overrides are written key=value"))
        elif key not in types:
            problems.append(unknown_key(key, types))
        else:
            try:
                out[key] = parse_text(key, value, types[key])
            except ValueError as e:
                problems.append(Problem(key, value, str(e)))
    if problems:
        raise ConfigError(problems)
    return out


def is_given(value: Any) -> bool:
    """A form value that sets its field: not None, not "", not a "preset's ..." choice."""
    return value is not None and value != "" and not (isinstance(value, str) and value.startswith(PRESET_CHOICE))


def read_form(values: Mapping[str, Any], types: Mapping[str, type]) -> tuple[dict[str, Any], list[Problem]]:
    """(the given form values, strings parsed to their fields' types; the problems: unknown
    keys and unparsable strings). Values not given (is_given) are left out."""
    parsed: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in values.items():
        if not is_given(value):
            continue
        if key not in types:
            problems.append(unknown_key(key, types))
            continue
        try:
            parsed[key] = parse_text(key, value, types[key]) if isinstance(value, str) else value
        except ValueError as e:
            problems.append(Problem(key, value, str(e)))
    return parsed, problems
