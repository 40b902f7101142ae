"""Thresholds a score cannot reach: a side that cannot fire is narrowed away, a rule that cannot
fire is dropped, and neither changes a label on any input of the metric's domain."""

from __future__ import annotations

import numpy as np
import pytest

from argos.rules.grammar import Direction, Gate, RuleSpec, Structure
from argos.rules.reach import reachable, score_range
from argos.rules.templates import compile_score, load_rule, render


def shape(transform: str, scorer: str, direction: Direction, **params: float) -> Structure:
    return Structure(transform, scorer, tuple(params.items()), direction, 1)


def nonnegative_series(n: int = 2000, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A count-like metric: nonnegative, with drops to zero and bursts."""
    rng = np.random.default_rng(seed)
    v = rng.poisson(20, n).astype(float)
    v[500:510] = 0.0
    v[900] = 400.0
    v[1500:1503] = 0.0
    return v, np.arange(n, dtype=np.int64)


def test_a_downward_relative_change_beyond_a_drop_to_zero_is_dropped() -> None:
    """(x - m) / |m| of a nonnegative metric is at least -1 (a drop to zero): a downward
    threshold of 4.618 never fires; a signed signal (the first difference) can reach it."""
    down = RuleSpec(shape("value", "relative", "down", window=10), 4.618)
    assert score_range(down.structure, True) == (-1.0, np.inf)
    assert reachable(down, nonnegative=True) is None
    assert reachable(down, nonnegative=False) == down
    signed = RuleSpec(shape("diff", "relative", "down", window=10), 4.618)
    assert reachable(signed, nonnegative=True) == signed
    at_zero = RuleSpec(shape("value", "relative", "down", window=10), 1.0)
    assert reachable(at_zero, nonnegative=True) == at_zero  # a drop to zero reaches 1


@pytest.mark.parametrize(
    ("scorer", "params", "threshold"),
    [
        ("relative", {"window": 10}, 4.618),
        ("band", {"center": 20.0}, 25.0),
        ("static", {}, 0.5),
    ],
)
def test_a_two_sided_rule_is_narrowed_to_the_side_that_can_fire_with_the_same_labels(
    scorer: str, params: dict[str, float], threshold: float
) -> None:
    both = RuleSpec(shape("value", scorer, "both", **params), threshold, 3)
    narrowed = reachable(both, nonnegative=True)
    assert narrowed is not None and narrowed.structure.direction == "up"
    assert narrowed.name == both.name.replace("_both", "_up") and narrowed.cooldown == 3
    v, ts = nonnegative_series()
    detect_both, p_both = load_rule(render(both))
    detect_up, p_up = load_rule(render(narrowed))
    labels = detect_up(v, ts, p_up)
    np.testing.assert_array_equal(labels, detect_both(v, ts, p_both))


def test_spectral_and_cusum_scores_are_bounded_whatever_the_metric() -> None:
    spectral = shape("value", "spectral", "up", window=32)
    assert reachable(RuleSpec(spectral, 31.0), nonnegative=False) is None
    assert reachable(RuleSpec(spectral, 30.5), nonnegative=False) is not None
    v, ts = nonnegative_series()
    s = compile_score("value", "spectral")(v, ts, {"window": 32})
    assert np.nanmax(s) < 31.0 and np.nanmin(s) > -1.0
    cusum = shape("diff", "cusum", "both", window=30, drift=0.5)
    assert score_range(cusum, False) == (-285.0, 285.0)  # 30 z-scores clipped to 10, less 0.5
    assert reachable(RuleSpec(cusum, 285.0), nonnegative=False) is not None
    assert reachable(RuleSpec(cusum, 285.5), nonnegative=False) is None
    c = compile_score("diff", "cusum")(v, ts, {"window": 30, "drift": 0.5})
    assert np.nanmax(np.abs(c)) <= 285.0


def test_an_unreachable_gate_drops_the_rule_and_a_two_sided_gate_is_narrowed() -> None:
    st = shape("value", "zscore", "up", window=30)
    dead = RuleSpec(st, 3.0, gate=Gate(shape("value", "relative", "down", window=10), 2.0))
    assert reachable(dead, nonnegative=True) is None
    both = RuleSpec(st, 3.0, gate=Gate(shape("value", "relative", "both", window=10), 2.0))
    kept = reachable(both, nonnegative=True)
    assert kept is not None and kept.gate is not None
    assert kept.gate.structure.direction == "up" and kept.structure == st
