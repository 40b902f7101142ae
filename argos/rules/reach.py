"""Which thresholds a template score can reach, and rules narrowed to the reachable ones.

A fitted threshold can lie beyond every value its score can take: a relative change (x - m) / |m|
of a metric that never goes below zero falls at most to -1 (a drop to zero), so a downward
threshold of 4.6 never fires; the spectral saliency ratio of a w-point window stays below w - 1;
the windowed CUSUM sums at most ``window`` z-scores clipped to 10. Such a rule, or such a side of a
two-sided rule, never alarms, and its text would describe an event that cannot happen.

:func:`score_range` gives the interval a score can take. It is a property of the score alone,
except for the **domain** of the value transform: a metric whose fitting history (train and
validation, every series of the unit; never test) never went below zero is taken to be a
nonnegative metric (a count, a rate, a duration, a utilisation), so the value, its relative change
and its band keep the bounds that follow. The signals of the other transforms (differences and
residuals) are signed and unbounded.

:func:`reachable` narrows a rule to what can fire: a two-sided rule with one unreachable side
becomes the one-sided rule of the other side (the same labels on every input of the domain: the
unreachable side never holds), and a rule (or its AND gate) that no input can make fire is dropped
(``None``; dropping it changes no label either). Narrowing rather than dropping keeps the rule's
reachable side, which is what it was fitted to catch.
"""

from __future__ import annotations

import math
from dataclasses import replace

from argos.rules.grammar import Gate, RuleSpec, Structure

CUSUM_CLIP = 10.0
"""The CUSUM template clips each z-score to +/- this value."""


def score_range(st: Structure, nonnegative: bool) -> tuple[float, float]:
    """The lowest and highest values the structure's (undirected) score can take, ``-inf`` or
    ``inf`` when unbounded; ``nonnegative``: the metric's values are never below zero.

    The spectral saliency ratio stays strictly below its upper end (``window - 1``); every other
    finite end can be reached."""
    p = st.param_dict
    value = st.transform == "value" and nonnegative
    if st.scorer == "static" and value:
        return 0.0, math.inf
    if st.scorer == "band" and value:
        return -float(p["center"]), math.inf
    if st.scorer == "relative" and value:
        return -1.0, math.inf  # (x - m) / |m| with x, m >= 0: a drop to zero is -1
    if st.scorer == "spectral":
        return -1.0, float(p["window"]) - 1.0
    if st.scorer == "cusum":
        most = float(p["window"]) * max(CUSUM_CLIP - float(p["drift"]), 0.0)
        return -most, most
    return -math.inf, math.inf


def _can_reach(st: Structure, side: str, threshold: float, nonnegative: bool) -> bool:
    low, high = score_range(st, nonnegative)
    if side == "down":
        return -low >= threshold
    if st.scorer == "spectral":
        return high > threshold
    return high >= threshold


def reachable_structure(st: Structure, threshold: float, nonnegative: bool) -> Structure | None:
    """``st`` narrowed to the sides whose score can reach ``threshold`` (None: neither can)."""
    up = _can_reach(st, "up", threshold, nonnegative)
    down = _can_reach(st, "down", threshold, nonnegative)
    if st.direction == "up":
        return st if up else None
    if st.direction == "down":
        return st if down else None
    if up and down:
        return st
    if up or down:
        return replace(st, direction="up" if up else "down")
    return None


def reachable(spec: RuleSpec, nonnegative: bool) -> RuleSpec | None:
    """The rule narrowed to what can fire (see the module doc), or None when nothing can."""
    st = reachable_structure(spec.structure, spec.threshold, nonnegative)
    if st is None:
        return None
    gate = spec.gate
    if gate is not None:
        g = reachable_structure(gate.structure, gate.threshold, nonnegative)
        if g is None:
            return None
        gate = Gate(g, gate.threshold)
    return replace(spec, structure=st, gate=gate)
