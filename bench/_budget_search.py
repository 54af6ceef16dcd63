"""The shortest step budget whose end-of-schedule quality reaches a target (shared by bench
scripts; not a benchmark). Pure functions: the caller's oracle trains and evaluates.

A budget is a whole schedule (warmup and decay of that length), so its quality is read at
its end only; a lower metric is better (val bits/byte). Budgets are multiples of `quantum`
steps; the search assumes the final metric does not rise with the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class BudgetSearch:
    """budget: the shortest probed budget that reaches the target (None: not even the longest).
    lo: the longest budget seen not to reach it, 0 when none was (the answer is in (lo, budget]).
    values: budget -> final metric of every budget known or probed. probes: how many were trained."""

    budget: int | None
    lo: int
    values: dict[int, float] = field(default_factory=dict)
    probes: int = 0


def round_up(steps: float, quantum: int) -> int:
    return quantum * max(1, math.ceil(steps / quantum - 1e-9))


def shortest_budget(final_at: Callable[[int], float], target: float, longest: int, *, quantum: int = 25,
                    max_probes: int = 3, first: float | None = None, known: dict[int, float] | None = None,
                    shrink: float = 0.75) -> BudgetSearch:
    """Bisection over budgets in (0, longest] for the shortest whose final_at(budget) <= target.

    known: finals already measured (e.g. the full budget's), reused and not counted as probes.
    first: a guess tried first (rounded up to `quantum`), e.g. the step at which a run of the
    longest budget crossed the target mid-schedule: a schedule that ends there has decayed, so
    it usually ends lower, and the guess usually reaches. While no budget is known to fall short,
    the next probe is `shrink` x the shortest that reaches; then the bracket is halved (rounded to
    `quantum`) until it is one quantum wide or `max_probes` budgets were trained."""
    values = dict(known or {})
    probes = 0

    def probe(b: int) -> None:
        nonlocal probes
        if b not in values:
            values[b] = final_at(b)
            probes += 1

    probe(longest)
    if values[longest] > target:
        return BudgetSearch(None, longest, values, probes)
    # The bracket from what is known: the shortest that reaches, the longest below it that does not.
    hi = min(b for b, v in values.items() if v <= target and b <= longest)
    lo = max((b for b, v in values.items() if v > target and b < hi), default=0)
    guess = round_up(first, quantum) if first is not None else None
    while probes < max_probes and hi - lo > quantum:
        if guess is not None and lo < guess < hi:
            b = guess
        elif lo == 0:
            b = min(round_up(shrink * hi, quantum), hi - quantum)
        else:
            b = quantum * round((lo + hi) / 2 / quantum)
            b = min(max(b, lo + quantum), hi - quantum)
        guess = None
        probe(b)
        if values[b] <= target:
            hi = b
        else:
            lo = b
    return BudgetSearch(hi, lo, values, probes)


def steps_to_reach(points, target: float) -> tuple[float, bool] | None:
    """First step at which a (step, metric) sequence in step order reaches `target`, linearly
    interpolated between the point before and the first that reaches: (step, exact). exact is
    False when the first point already reaches (the step is then an upper bound). None: never.
    Used both on one run's evaluations (mid-run crossing) and on the finals of several budgets."""
    prev = None
    for step, value in points:
        if value <= target:
            if prev is None:
                return float(step), False
            s0, v0 = prev
            return s0 + (step - s0) * (v0 - target) / (v0 - value), True
        prev = (step, value)
    return None
