"""The grammar of the embedded rule generator: transforms, scorers and the rule specs built of them.

A rule is "a score compared to a threshold":

- a **transform** turns the values into a signal (the values themselves, the first difference, the
  residual against the same slot one or more seasonal periods ago, the residual against an EWMA);
- a **scorer** turns the signal into a score (the signal itself for static bounds, the signal
  minus a fitted centre (the train median) for a band around it, rolling z-score, robust z-score,
  relative change, level shift, variance shift, CUSUM, run length of identical values,
  spectral-residual saliency);
- a **direction** (up: ``s >= thr``, down: ``-s >= thr``, both: ``|s| >= thr``) and a
  **persistence** of k points (the smallest directional score over the last k points must reach
  the threshold) turn the score into labels; an optional **gate** ANDs a second score and
  threshold that must hold at the same point; an optional **cool-down** keeps an alarm only when
  the (combined) condition was off for a number of points before it (one alarm per burst).

This module holds the grammar as data: each transform's and scorer's code lines (numbers live in
``PARAMS``), the helpers they call (sources in :mod:`argos.rules.helper_sources`) and the history
they need; :class:`Structure` (a shape without its threshold), :class:`Gate` and :class:`RuleSpec`
(a complete rule) with the ``LOOKBACK`` each needs. Every score has bounded memory: the label at t
depends on the ``LOOKBACK`` points ending at t only, so the online detector's stream gives exactly
the batch labels. :mod:`argos.rules.templates` renders a spec into a rule module and compiles the
score code; :mod:`argos.rules.wording` writes its docstring; :mod:`argos.rules.reach` says which
thresholds a score can reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down", "both"]

DIRECTIONS: tuple[Direction, ...] = ("up", "down", "both")


# --------------------------------------------------------------------------------------------------
# Transforms: values -> signal `x`.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """A causal signal derived from the values.

    Attributes:
        name: identifier used in rule names (``value``, ``diff``, ``seasonal``, ...).
        code: source lines (4-space indented) that set ``x`` from ``values`` and ``params``.
        phrase: what ``x`` is, in words, for the rule docstring (may use ``{param}`` fields).
        params: names of the ``PARAMS`` entries the code reads.
        helpers: helper functions the code calls.
    """

    name: str
    code: str
    phrase: str
    params: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("value", "    x = values\n", "the value"),
        Transform(
            "diff",
            "    x = np.concatenate(([0.0], np.diff(values)))\n",
            "the change from the previous point",
        ),
        Transform(
            "seasonal",
            "    period = int(params['period'])\n"
            "    cycles = int(params['cycles'])\n"
            "    x = np.full(len(values), np.nan)\n"
            "    if len(values) > period * cycles:\n"
            "        same_slot = [\n"
            "            values[period * (cycles - k) : len(values) - period * k]"
            " for k in range(1, cycles + 1)\n"
            "        ]\n"
            "        x[period * cycles :] = values[period * cycles :]"
            " - np.median(same_slot, axis=0)\n",
            "the difference to the median of the same slot in the previous {cycles} period(s) of "
            "{period} points",
            ("period", "cycles"),
        ),
        Transform(
            "ewma",
            "    x = values - ewma_before(values, params['alpha'])\n",
            "the residual against an exponentially weighted average (alpha {alpha}) of the "
            "earlier points",
            ("alpha",),
            ("ewma_before",),
        ),
    )
}

# --------------------------------------------------------------------------------------------------
# Scorers: signal `x` -> score `s`.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """A causal score of the signal ``x``.

    Attributes:
        name: identifier used in rule names.
        code: source lines that set ``s`` from ``x`` and ``params``.
        params: ``PARAMS`` entries the code reads.
        helpers: helper functions the code calls.
        lookback: points of history needed, as a function of the params (before the transform's).
        directions: the directions that make sense for this score.
        signed: True when the score is centred on 0 (z-scores); False for magnitudes.
    """

    name: str
    code: str
    params: tuple[str, ...]
    helpers: tuple[str, ...]
    lookback: Callable[[Mapping[str, float]], int]
    directions: tuple[Direction, ...] = DIRECTIONS
    signed: bool = True


def _w(p: Mapping[str, float], key: str = "window") -> int:
    return int(p[key])


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        Scorer(
            "static",
            "    s = x\n",
            (),
            (),
            lambda p: 1,
        ),
        Scorer(
            "band",
            "    s = x - params['center']\n",
            ("center",),
            (),
            lambda p: 1,
        ),
        Scorer(
            "zscore",
            "    mean, std = window_stats(x, int(params['window']), 1)\n"
            "    s = (x - mean) / floor_scale(std, mean)\n",
            ("window",),
            ("window_stats", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "robust_z",
            "    median, mad = past_median_mad(x, int(params['window']))\n"
            "    spread = np.maximum(1.4826 * mad, params['min_scale'])\n"
            "    s = (x - median) / floor_scale(spread, median)\n",
            ("window", "min_scale"),
            ("sorted_windows", "past_median_mad", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "relative",
            "    mean, _ = window_stats(x, int(params['window']), 1)\n"
            "    s = (x - mean) / floor_scale(np.abs(mean), mean)\n",
            ("window",),
            ("window_stats", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "level_shift",
            "    recent, _ = window_stats(x, int(params['recent']), 0)\n"
            "    before, std = window_stats(x, int(params['window']), int(params['recent']))\n"
            "    s = (recent - before) / floor_scale(std, before)\n",
            ("recent", "window"),
            ("window_stats", "floor_scale"),
            lambda p: _w(p, "recent") + _w(p),
        ),
        Scorer(
            "variance_shift",
            "    _, recent = window_stats(x, int(params['recent']), 0)\n"
            "    level, before = window_stats(x, int(params['window']), int(params['recent']))\n"
            "    s = np.log(floor_scale(recent, level) / floor_scale(before, level))\n",
            ("recent", "window"),
            ("window_stats", "floor_scale"),
            lambda p: _w(p, "recent") + _w(p),
        ),
        Scorer(
            "cusum",
            "    w = int(params['window'])\n"
            "    mean, std = window_stats(x, w, 1)\n"
            "    z = np.nan_to_num(np.clip((x - mean) / floor_scale(std, mean), -10.0, 10.0))\n"
            "    # the CUSUM restarted at most w points back: memory bounded to LOOKBACK\n"
            "    upper = window_cusum(z - params['drift'], w)\n"
            "    lower = window_cusum(-z - params['drift'], w)\n"
            "    s = np.where(upper >= lower, upper, -lower)\n"
            "    s[: 2 * w - 1] = np.nan\n",
            ("window", "drift"),
            ("window_stats", "floor_scale", "window_cusum"),
            lambda p: 2 * _w(p),
        ),
        Scorer(
            "flat",
            "    s = run_length(x)\n",
            (),
            ("run_length",),
            lambda p: 1,
            directions=("up",),
            signed=False,
        ),
        Scorer(
            "spectral",
            "    s = spectral_saliency(x, int(params['window']))\n",
            ("window",),
            ("spectral_saliency",),
            lambda p: _w(p),
            directions=("up",),
            signed=False,
        ),
    )
}


def _transform_lookback(transform: str, params: Mapping[str, float]) -> int:
    if transform == "diff":
        return 1
    if transform == "seasonal":
        return int(params["period"]) * int(params["cycles"])
    if transform == "ewma":
        alpha = float(params["alpha"])
        return max(1, math.ceil(math.log(1e-3) / math.log(1.0 - alpha)))
    return 0


@dataclass(frozen=True)
class Structure:
    """A rule shape without its threshold: transform, scorer, their params, direction, persistence.

    Attributes:
        transform: a key of :data:`TRANSFORMS`.
        scorer: a key of :data:`SCORERS`.
        params: the structural numbers (windows, period, alpha...), stored in the rule's ``PARAMS``.
        direction: ``up``, ``down`` or ``both``.
        persistence: the rule fires when the threshold has held for this many consecutive points.
    """

    transform: str
    scorer: str
    params: tuple[tuple[str, float], ...]
    direction: Direction = "up"
    persistence: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """The (transform, scorer) pair: structures sharing it share their compiled score code."""
        return (self.transform, self.scorer)

    @property
    def param_dict(self) -> dict[str, float]:
        return dict(self.params)

    @property
    def name(self) -> str:
        """A readable identifier, e.g. ``zscore_diff_w60_up_k2``."""
        bits = [self.scorer, self.transform]
        for k, v in self.params:
            if k in ("center", "min_scale"):
                continue  # a fitted level (like the threshold), not part of the shape's name
            short = {"window": "w", "recent": "r", "period": "p", "cycles": "c", "alpha": "a"}.get(
                k, k[:1]
            )
            bits.append(f"{short}{fmt_number(v).replace('.', '')}")
        bits.append(self.direction)
        if self.persistence > 1:
            bits.append(f"k{self.persistence}")
        return "_".join(bits)

    def lookback(self) -> int:
        """Points of history the rule needs before its first possible alarm."""
        p = self.param_dict
        return (
            _transform_lookback(self.transform, p)
            + SCORERS[self.scorer].lookback(p)
            + self.persistence
            - 1
        )


@dataclass(frozen=True)
class Gate:
    """A second condition AND-ed with a rule's own: its shape (persistence 1) and threshold."""

    structure: Structure
    threshold: float


@dataclass(frozen=True)
class RuleSpec:
    """A complete rule: a structure, its fitted threshold, an optional AND gate and cool-down.

    Attributes:
        structure: the rule shape.
        threshold: the rule fires when the directional score reaches this value.
        cooldown: an alarm needs the condition off for this many points before it (0 = none),
            so a sustained anomaly alarms once, at its start.
        metrics: free-form numbers recorded in the docstring (e.g. train/validation F1).
        gate: a second condition that must hold at the same point (AND composition), e.g. "the
            value is above 80 AND it jumped more than 4 standard deviations"; the cool-down
            applies to the combined condition.
    """

    structure: Structure
    threshold: float
    cooldown: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    gate: Gate | None = None

    @property
    def name(self) -> str:
        if self.gate is None:
            return self.structure.name
        return f"{self.structure.name}_and_{self.gate.structure.name}"

    def lookback(self) -> int:
        """Points of history the rule's label depends on (the rule's ``LOOKBACK``).

        A stuck-value rule fires on a run of ``threshold`` identical points of its signal, so that
        run (and the history its transform needs before it: the first difference of a window's
        first point is not known) must fit in the window the online detector keeps: otherwise
        streaming and batch labels differ.
        """
        base = _run_lookback(self.structure, self.threshold)
        if self.gate is not None:
            base = max(base, _run_lookback(self.gate.structure, self.gate.threshold))
        return base + self.cooldown

    @property
    def params(self) -> dict[str, float]:
        """The rule's ``PARAMS``: structural numbers plus the threshold (and cool-down)."""
        p: dict[str, float] = dict(self.structure.params)
        p["threshold"] = float(self.threshold)
        p["persistence"] = self.structure.persistence
        if self.cooldown:
            p["cooldown"] = self.cooldown
        if self.gate is not None:
            for k, v in self.gate.structure.params:
                p[f"gate_{k}"] = v
            p["gate_threshold"] = float(self.gate.threshold)
        return p


def _run_lookback(st: Structure, threshold: float) -> int:
    """A shape's ``LOOKBACK`` with its threshold: a run length needs its whole run."""
    base = st.lookback()
    if st.scorer == "flat":
        run = math.ceil(threshold) + st.persistence - 1
        base = max(base, _transform_lookback(st.transform, st.param_dict) + run)
    return base


def fmt_number(v: float) -> str:
    """A param in a rule name or text: an integer as such, else 4 significant digits."""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}"
