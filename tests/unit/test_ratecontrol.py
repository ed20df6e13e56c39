"""The level searches of tokc.compress.ratecontrol against exhaustive search."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokc.compress.ratecontrol import choose_level, largest_fitting


def _exhaustive(size_at, budget, bottom, top):
    fitting = [lv for lv in range(bottom, top + 1) if size_at(lv) <= budget]
    return max(fitting) if fitting else None


def _sizes(base, slope, curve, step):
    """Bytes at a level: about exponential, with a curvature and a byte quantum (step) that
    make runs of equal sizes, as a real codec's are."""
    def size_at(lv):
        t = lv + 4000
        return step * int(math.exp(base + slope * t + curve * t * t) / step)
    return size_at


@settings(max_examples=60, deadline=None)
@given(base=st.floats(5, 9), slope=st.floats(2e-4, 1.2e-3), curve=st.floats(0, 3e-8),
       step=st.sampled_from([1, 4, 16]), where=st.floats(-0.2, 1.2), guess=st.none() | st.integers(-4000, 5000))
def test_largest_fitting_is_the_largest_level_that_fits(base, slope, curve, step, where, guess):
    size_at = _sizes(base, slope, curve, step)
    budget = int(size_at(-4000) ** (1 - where) * size_at(5000) ** where)
    calls = []

    def probe(lv):
        calls.append(lv)
        return size_at(lv)

    assert largest_fitting(probe, budget, -4000, 5000, guess) == _exhaustive(size_at, budget, -4000, 5000)
    assert len(calls) <= 2 + 15 + 1  # the first two probes, bisection, ITP's one more


def test_interpolation_takes_fewer_probes_than_bisection():
    """Over many budgets on smooth sizes: about 6 probes, where bisection from the ends took 14."""
    counts = []
    for k in range(40):
        size_at = _sizes(7.0, 4e-4 + 1e-5 * k, 1e-8, 4)
        budget = int(size_at(-4000) * 1.07 ** (k + 3))
        calls = []

        def probe(lv, calls=calls, size_at=size_at):
            calls.append(lv)
            return size_at(lv)

        assert largest_fitting(probe, budget, -4000, 5000) == _exhaustive(size_at, budget, -4000, 5000)
        counts.append(len(calls))
    assert sum(counts) / len(counts) < 9


def test_tolerance_stops_early_on_a_level_that_fits():
    size_at = _sizes(7.0, 6e-4, 1e-8, 4)
    budget = size_at(1234) + 1
    best = _exhaustive(size_at, budget, -4000, 5000)
    got = largest_fitting(size_at, budget, -4000, 5000, tolerance=10)
    assert size_at(got) <= budget and best - 10 < got <= best


@pytest.mark.parametrize("budget, want", [(10, None), (10**9, 5000)])
def test_the_ends(budget, want):
    assert largest_fitting(_sizes(7.0, 6e-4, 0, 1), budget, -4000, 5000) == want
    assert choose_level(6, _sizes(7.0, 6e-4, 0, 1), None, size=10**9, size_guess=0) == 5000
