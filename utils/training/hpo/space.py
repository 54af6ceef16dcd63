"""The search space of a study: which TrainingConfig fields are searched, over what.

Written as data (a JSON file, `from_dict`) or as the notebook form (`from_form`):

    {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": true},
     "n_layer":       {"type": "int", "low": 1, "high": 4},
     "schedule":      {"type": "categorical", "choices": ["cosine", "linear"]}}

Names must be TrainingConfig fields. Numeric entries take `low`, `high` and optionally
`log` (bool) or `step`; categorical entries take a non-empty `choices` list.

Each entry is parsed and checked once, into a `Param`; `SearchSpace` holds the Params.
Spaces from several sources join with `|` (the right one wins a field both name), and
a space that was already checked travels to worker processes as `to_dict()` and comes
back with `restore`, which parses nothing again.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from utils.training.config import FIELD_NAMES, FIELD_TYPES, TrainingConfig, parse_value
from utils.training.config_rules import ConfigError, is_auto, type_matches
from utils.training.io import atomic_write_json

__all__ = ["Param", "SearchSpace", "SearchSpaceError", "PARAM_TYPES"]

PARAM_TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Fields a search must not touch: they name or place the run, not what it learns.
_NOT_SEARCHABLE = {"run_name", "data_source", "data_path", "hf_dataset", "hf_config", "text_column", "pretrained"}


class SearchSpaceError(ValueError):
    """A search space entry is wrong; the message names every bad parameter and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid search space:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Param:
    """One searched TrainingConfig field."""

    name: str
    type: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log,
                                       step=None if self.step is None else float(self.step))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=1 if self.step is None else int(self.step))
        return trial.suggest_categorical(self.name, list(self.choices))

    @classmethod
    def restore(cls, name: str, entry: Mapping[str, Any]) -> Param:
        """The Param whose `to_dict()` gave `entry`. No checks: only for entries of a
        space that was already checked (SearchSpace.restore)."""
        return cls(name, entry["type"], entry.get("low"), entry.get("high"), bool(entry.get("log", False)),
                   entry.get("step"), tuple(entry.get("choices", ())))

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        d: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        return d


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_entry(name: str, entry: Any, field_type: type) -> tuple[Param | None, list[str]]:
    """Validate one entry; return the Param or the problems (each naming `name`)."""
    if not isinstance(entry, Mapping):
        return None, [f"{name}: must be an object like {{\"type\": \"float\", \"low\": ..., \"high\": ...}}, "
                      f"got {type(entry).__name__}"]
    kind = entry.get("type")
    if kind not in PARAM_TYPES:
        return None, [f"{name}: unknown type {kind!r}; allowed types are {', '.join(PARAM_TYPES)}"]
    problems = []
    extra = sorted(set(entry) - _KEYS[kind])
    if extra:
        problems.append(f"{name}: unknown key(s) {extra} for type {kind!r}; allowed keys are {sorted(_KEYS[kind])}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            return None, problems + [f"{name}: 'choices' must be a non-empty list"]
        bad = [c for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
        if bad:
            problems.append(f"{name}: choices must be strings, numbers, booleans or null, got {bad!r}")
        if len(set(map(repr, choices))) != len(choices):
            problems.append(f"{name}: choices {list(choices)!r} repeat a value")
        wrong = [c for c in choices if not (_fits(c, field_type) or is_auto(name, c))]  # batch_size: "auto"
        if wrong:
            problems.append(f"{name}: choices {wrong!r} are not {field_type.__name__} (the TrainingConfig field's type)")
        return (None if problems else Param(name, "categorical", choices=tuple(choices))), problems
    low, high, log, step = entry.get("low"), entry.get("high"), entry.get("log", False), entry.get("step")
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            problems.append(f"{name}: '{key}' must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        problems.append(f"{name}: 'log' must be true or false, got {log!r}")
    if step is not None and not (_is_number(step) and step > 0):
        problems.append(f"{name}: 'step' must be a positive number, got {step!r}")
    if problems:
        return None, problems
    if low > high:
        problems.append(f"{name}: low ({low}) > high ({high}); low must be <= high")
    if log and low <= 0:
        problems.append(f"{name}: log scale needs low > 0, got low={low}")
    if log and step is not None:
        problems.append(f"{name}: 'log' and 'step' cannot be used together")
    if kind == "int":
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and value != int(value):
                problems.append(f"{name}: type 'int' needs an integer '{key}', got {value!r}")
        if field_type is not int:
            problems.append(f"{name}: type 'int' does not fit the TrainingConfig field's type "
                            f"({field_type.__name__}); use {_type_for(field_type)!r}")
    elif field_type is not float:
        problems.append(f"{name}: type 'float' does not fit the TrainingConfig field's type "
                        f"({field_type.__name__}); use {_type_for(field_type)!r}")
    if problems:
        return None, problems
    cast = int if kind == "int" else float
    return Param(name, kind, cast(low), cast(high), log, None if step is None else cast(step)), []


def _fits(value: Any, field_type: type) -> bool:
    return type_matches(value, field_type) and (field_type is not float or math.isfinite(value))


def _type_for(field_type: type) -> str:
    return {int: "int", float: "float"}.get(field_type, "categorical")


def _probe(params: Iterable[Param]) -> list[str]:
    """Ask TrainingConfig itself whether each bound/choice is a legal value of its field
    (ranges and allowed strings live there, not here). Only rules about the field alone
    count: a rule that names another field (n_head divides d_model...) depends on the
    rest of the config, so a combination it forbids fails its trial instead."""
    problems = []
    for p in params:
        others = [f for f in FIELD_NAMES if f != p.name]
        values = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for v in values:
            try:
                TrainingConfig(**{p.name: v})
            except ConfigError as e:
                own = [q for q in e.problems
                       if q.field == p.name and not any(re.search(rf"\b{f}\b", q.message) for f in others)]
                problems += [f"{p.name}: value {v!r} is not allowed: {q.message}" for q in own]
    return problems


class SearchSpace:
    """The searched TrainingConfig fields and their distributions; `suggest(trial)` -> overrides."""

    def __init__(self, params: Iterable[Param]):
        self.params: dict[str, Param] = {p.name: p for p in params}
        if not self.params:
            raise SearchSpaceError(["the search space is empty: give at least one TrainingConfig field"])

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(d, Mapping):
            raise SearchSpaceError([f"a search space is an object of field name -> entry, got {type(d).__name__}"])
        problems: list[str] = []
        params = []
        for name, entry in d.items():
            if name not in FIELD_NAMES:
                close = difflib.get_close_matches(str(name), FIELD_NAMES, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"{name}: unknown parameter, not a TrainingConfig field{hint}")
                continue
            if name in _NOT_SEARCHABLE:
                problems.append(f"{name}: names or places the run and cannot be searched; "
                                f"set it on the base config instead")
                continue
            param, errs = _check_entry(name, entry, FIELD_TYPES[name])
            problems += errs
            if param is not None:
                params.append(param)
        if not problems:
            problems = _probe(params)
        if problems:
            raise SearchSpaceError(problems)
        return cls(params)

    @classmethod
    def restore(cls, d: Mapping[str, Any]) -> SearchSpace:
        """The space whose `to_dict()` gave `d`, as a worker process receives it from the
        `hpo` command that checked it: nothing is parsed or checked a second time."""
        return cls(Param.restore(name, entry) for name, entry in d.items())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> SearchSpace:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SearchSpaceError([f"search space file {str(path)!r} does not exist"]) from None
        except json.JSONDecodeError as e:
            raise SearchSpaceError([f"search space file {str(path)!r} is not valid JSON: {e}"]) from e
        return cls.from_dict(d)

    @classmethod
    def from_form(cls, **values: Any) -> SearchSpace:
        """From a notebook's #@param values; one keyword per searched field:

            learning_rate="1e-4:3e-3:log"   range (float fields), log scale
            n_layer="1:4"                   range (int fields)
            schedule="cosine,linear"        choices (any field)
            dropout=""                      empty or None: not searched

        Tuples `(low, high)` and lists of choices are accepted too.
        """
        d: dict[str, Any] = {}
        problems = []
        for name, value in values.items():
            if value is None or value == "" or value == ():
                continue
            if name not in FIELD_NAMES:
                d[name] = value  # from_dict names it, with a suggestion
                continue
            try:
                d[name] = _parse_form_value(name, value, FIELD_TYPES[name])
            except ValueError as e:
                problems.append(f"{name}: {e}")
        if problems:
            raise SearchSpaceError(problems)
        return cls.from_dict(d)

    # --- use -------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for `trial`: the TrainingConfig overrides of this trial."""
        return {name: p.suggest(trial) for name, p in self.params.items()}

    def to_dict(self) -> dict[str, Any]:
        return {name: p.to_dict() for name, p in self.params.items()}

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    def __or__(self, other: SearchSpace) -> SearchSpace:
        """Both spaces' fields; `other`'s entry wins a field both name (`--space` file,
        then `--param`s). Each Param was checked alone, so the union needs no new check."""
        return SearchSpace([*self, *other])

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params.values())

    def __len__(self) -> int:
        return len(self.params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_dict()!r})"


def _parse_form_value(name: str, value: Any, field_type: type) -> dict[str, Any]:
    if isinstance(value, tuple) and len(value) == 2:
        return {"type": _type_for(field_type), "low": value[0], "high": value[1]}
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    if not isinstance(value, str):
        raise ValueError(f"give a range 'low:high[:log]', a comma list of choices, or a (low, high) tuple; "
                         f"got {value!r}")
    if ":" in value:
        parts = [p.strip() for p in value.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "log"):
            raise ValueError(f"a range is 'low:high' or 'low:high:log', got {value!r}")
        if field_type not in (int, float):
            raise ValueError(f"a range needs a numeric field ({field_type.__name__} is not); "
                             f"list the choices with commas instead")
        entry = {"type": _type_for(field_type), "low": parse_value(name, parts[0]),
                 "high": parse_value(name, parts[1])}
        if len(parts) == 3:
            entry["log"] = True
        return entry
    return {"type": "categorical", "choices": [parse_value(name, c) for c in value.split(",") if c.strip()]}
