"""bench/_budget_search.py: the end-of-schedule bisection over step budgets, fed fake quality oracles."""

from __future__ import annotations

import pytest

from bench._budget_search import round_up, shortest_budget, steps_to_reach


class Oracle:
    """A final metric that falls with the budget (1000 / budget); remembers what was trained."""

    def __init__(self, fn=lambda b: 1000.0 / b):
        self.fn, self.asked = fn, []

    def __call__(self, budget):
        self.asked.append(budget)
        return self.fn(budget)


def test_bisection_finds_the_shortest_budget_within_one_quantum():
    oracle = Oracle()  # reaches 2.5 from 400 steps on
    s = shortest_budget(oracle, 2.5, 600, quantum=25, max_probes=10, known={600: 1000 / 600})
    assert s.budget == 400 and s.lo == 375
    assert 600 not in oracle.asked  # the known full budget is not trained again
    assert s.probes == len(oracle.asked) and all(b % 25 == 0 for b in oracle.asked)
    assert set(s.values) == {600, *oracle.asked}


def test_first_guess_that_misses_becomes_the_lower_end():
    # The mid-run crossing of a long run (say 430) is no upper bound: a shorter decayed schedule may end higher.
    oracle = Oracle(lambda b: 0.0 if b >= 530 else 1.0)
    s = shortest_budget(oracle, 0.5, 600, quantum=25, max_probes=3, first=430, known={600: 0.0})
    assert oracle.asked[0] == 450  # the guess, rounded up to a quantum
    assert s.lo == 525 and s.budget == 550  # [450, 600] -> 525 (miss) -> 575/550 (reach)
    assert oracle.asked == [450, 525, 550]


def test_probe_limit_leaves_a_bracket_wider_than_one_quantum():
    oracle = Oracle()
    s = shortest_budget(oracle, 2.5, 600, quantum=25, max_probes=1, known={600: 1.0})
    assert s.probes == 1 and s.budget - s.lo > 25
    assert s.values[s.budget] <= 2.5 and (s.lo == 0 or s.values[s.lo] > 2.5)


def test_without_a_miss_the_search_shrinks_from_the_top():
    oracle = Oracle(lambda b: 0.0 if b >= 100 else 1.0)
    s = shortest_budget(oracle, 0.5, 600, quantum=25, max_probes=20, known={600: 0.0})
    assert s.budget == 100 and s.lo == 75
    assert oracle.asked[0] == 450  # 0.75 x 600: no budget was known to miss


def test_full_budget_that_misses_is_not_reached_and_is_trained_when_unknown():
    oracle = Oracle(lambda b: 1.0)
    s = shortest_budget(oracle, 0.5, 600, quantum=25)
    assert s.budget is None and s.lo == 600 and oracle.asked == [600]


def test_known_finals_set_the_bracket_before_any_probe():
    oracle = Oracle(lambda b: 0.0 if b >= 510 else 1.0)
    s = shortest_budget(oracle, 0.5, 600, quantum=25, max_probes=5, known={600: 0.0, 500: 1.0, 550: 0.0})
    assert oracle.asked == [525] and s.budget == 525 and s.lo == 500


def test_round_up_to_a_quantum():
    assert [round_up(x, 25) for x in (0.5, 25, 25.01, 449.9, 450)] == [25, 25, 50, 450, 450]


def test_steps_to_reach_interpolates_and_flags_an_upper_bound():
    points = [(100, 3.0), (200, 2.0), (300, 1.0)]
    assert steps_to_reach(points, 1.5) == (pytest.approx(250.0), True)
    assert steps_to_reach(points, 3.5) == (100.0, False)  # the first point already reaches: at most 100
    assert steps_to_reach(points, 0.5) is None
