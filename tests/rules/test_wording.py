"""A rendered rule's text says what its numbers mean: factors for ratios, not "a fraction 4.6 of
it (e.g. a drop to zero)" or a log-ratio read as a relative move."""

from __future__ import annotations

import math

from argos.rules.contract import check_rule
from argos.rules.grammar import Direction, RuleSpec, Structure
from argos.rules.templates import render
from argos.rules.wording import condition_words


def words(
    transform: str, scorer: str, direction: Direction, threshold: float, **params: float
) -> tuple[str, str]:
    _, normal, abnormal = condition_words(
        Structure(transform, scorer, tuple(params.items()), direction, 1), threshold
    )
    return normal, abnormal


def doc(spec: RuleSpec) -> str:
    return " ".join(check_rule(render(spec)).docstring.split())


def test_relative_change_reads_as_multiples_of_the_mean() -> None:
    normal, abnormal = words("value", "relative", "up", 0.312, window=10)
    assert abnormal == (
        "the value rises above the mean of the previous 10 points by at least 0.312 x |mean| "
        "(for a positive mean: to at least 1.312 times it)"
    )
    assert normal == "the value stays below the mean of the previous 10 points plus 0.312 x |mean|"
    _, down = words("value", "relative", "down", 0.3367, window=360)
    assert "(for a positive mean: to at most 0.6633 times it)" in down
    _, zero = words("value", "relative", "down", 1.0, window=360)
    assert zero.endswith("(for a positive mean: to at most zero)")
    _, both = words("diff", "relative", "both", 4.618, window=60)
    assert "by at least 4.618 x |mean|" in both
    assert "to at least 5.618 times it, or to at most -3.618 times it (below zero)" in both
    for text in (abnormal, down, zero, both):
        assert "fraction" not in text and "drop to zero" not in text


def test_a_variance_shift_states_the_factor_between_the_spreads() -> None:
    _, up = words("value", "variance_shift", "up", 1.521, recent=10, window=120)
    assert up == (
        "the spread (std) of the value over the last 10 points is at least 4.577 times its "
        "spread over the 120 points before them (log-ratio 1.521 or more)"
    )
    _, gate = words("value", "variance_shift", "up", -0.3093, recent=30, window=360)
    assert "is at least 0.734 times its spread over the 360 points before them" in gate
    _, down = words("value", "variance_shift", "down", 0.5, recent=5, window=60)
    assert "is at most 0.6065 times its spread" in down and "(log-ratio -0.5 or less)" in down
    _, both = words("diff", "variance_shift", "both", 1.0, recent=5, window=60)
    assert "is at least 2.718 times or at most 0.3679 times its spread" in both
    _, huge = words("value", "variance_shift", "up", 15.48, recent=5, window=60)
    assert f"at least {math.exp(15.48):.4g} times" in huge
    assert "a factor that large follows a flat stretch only" in huge


def test_spectral_saliency_names_the_factor_it_reaches() -> None:
    normal, abnormal = words("value", "spectral", "up", 3.0, window=64)
    assert (
        "its spectral-residual saliency is at least 4 times the mean saliency of the last 64"
        in (abnormal)
    )
    assert "stays below 4 times the mean saliency" in normal


def test_cusum_says_it_sums_at_most_a_window_of_clipped_z_scores() -> None:
    text = doc(
        RuleSpec(Structure("value", "cusum", (("window", 120), ("drift", 0.5)), "up", 2), 9.0)
    )
    assert (
        "Abnormal: The cumulative sum of the value's z-scores above its mean over the previous 120 "
        "points (each z-score clipped to 10, less a drift of 0.5 per point, summed over at most "
        "the last 120 points) reaches 9: a sustained rise, for 2 consecutive points." in text
    )
    assert "LOOKBACK = 241" in render(
        RuleSpec(Structure("value", "cusum", (("window", 120), ("drift", 0.5)), "up", 2), 9.0)
    )
