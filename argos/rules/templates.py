"""The grammar of the embedded rule generator: parameterised templates that emit readable rules.

Every rule the builtin generator exports is a Python module written by :func:`render`, following
the rule contract (``detect(values, timestamps, params)``, ``PARAMS``, ``LOOKBACK``, a docstring
with the normal and abnormal conditions; numpy only; causal). A rule is "a score compared to a
threshold":

- a **transform** turns the values into a signal (the values themselves, the first difference, the
  residual against the same slot one or more seasonal periods ago, the residual against an EWMA);
- a **scorer** turns the signal into a score (the signal itself for static bounds, the signal
  minus a fitted centre (the train median) for a band around it, rolling z-score, robust
  z-score, relative change, level shift, variance shift, CUSUM, run length of identical values,
  spectral-residual saliency);
- a **direction** (up: ``s >= thr``, down: ``-s >= thr``, both: ``|s| >= thr``) and a
  **persistence** of k points (the smallest directional score over the last k points must reach
  the threshold) turn the score into labels; an optional **gate** ANDs a second score and
  threshold that must hold at the same point; an optional **cool-down** keeps an alarm only when
  the (combined) condition was off for a number of points before it (one alarm per burst).

The score code is the same text in every rendering of a template (numbers live in ``PARAMS``), so
the search compiles each (transform, scorer) pair once with :func:`compile_score` and sweeps
thresholds over its output; the rule exported afterwards computes exactly the same numbers.
Templates are our trusted code: compiling them in-process is fine, unlike LLM output, which only
the sandbox runs.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.contract import exec_rule_source

ScoreFn = Callable[[FloatArray, IntArray, Mapping[str, float]], FloatArray]
DetectFn = Callable[[FloatArray, IntArray, Mapping[str, float]], BoolArray]
Direction = Literal["up", "down", "both"]

DIRECTIONS: tuple[Direction, ...] = ("up", "down", "both")

# --------------------------------------------------------------------------------------------------
# Helper functions emitted into rules (only the ones a rule needs). Causal by construction: every
# value at index t is computed from points <= t.
# --------------------------------------------------------------------------------------------------

_HELPERS: dict[str, str] = {
    "window_stats": '''
def window_stats(x, width, lag):
    """Mean and std of the `width` points ending `lag` points before t (NaN until they exist).

    Every window is summarised from its own points only: blocks of 1, 2, 4, ... points are merged
    pairwise (Chan's formula for the mean and the sum of squared deviations), then the blocks
    that add up to `width` are merged. So the numbers are precise at any level of the series and
    identical wherever the window sits in the input, and a missing value spoils only the windows
    that hold it.
    """
    n = len(x)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    first = width - 1 + lag
    if n <= first:
        return mean, std
    # block_mean[i] and block_m2[i] describe the `size` points starting at index i
    size, block_mean, block_m2 = 1, np.asarray(x, dtype=float), np.zeros(n)
    blocks = []
    while size <= width:
        if width & size:
            blocks.append((size, block_mean, block_m2))
        if 2 * size > width:
            break
        d = block_mean[size:] - block_mean[:-size]
        block_m2 = block_m2[:-size] + block_m2[size:] + d * d * (size / 2)
        block_mean = block_mean[:-size] + d * 0.5
        size *= 2
    # merge the blocks of the window starting at i, largest first, each after the previous one
    windows = n - width + 1
    count, offset = 0, 0
    m = m2 = np.zeros(windows)
    for size, block_mean, block_m2 in reversed(blocks):
        bm = block_mean[offset : offset + windows]
        bq = block_m2[offset : offset + windows]
        if count == 0:
            m, m2 = bm, bq
        else:
            d = bm - m
            m2 = m2 + bq + d * d * (count * size / (count + size))
            m = m + d * (size / (count + size))
        count += size
        offset += size
    mean[first:] = m[: n - first]
    std[first:] = np.sqrt(m2[: n - first] / width)
    return mean, std
''',
    "floor_scale": '''
def floor_scale(scale, level):
    """Keep a scale strictly positive so a perfectly flat history still gives finite scores."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))
''',
    "sorted_windows": '''
def sorted_windows(x, width):
    """Every window of `width` points of x (starting at 0, 1, ...) as its sorted values' ranks.

    Windows are grouped in lanes of `width` consecutive starts, whose 2 * width points are sorted
    once; each window is the sorted list of its points' ranks within the lane (small integers), and
    the next window's list is this one without the leaving point's rank (a shift) and with the
    entering one's (a min/max insertion), all lanes at once. Yields (first window, values, ranks):
    ranks[o, j, lane] is the rank of the j-th smallest point of the window starting at
    first + lane * width + o, and values[lane, rank] its value.
    """
    n_win = len(x) - width + 1
    lanes = -(-n_win // width)
    xs = np.zeros((lanes + 1) * width)
    xs[: len(x)] = x
    rows = np.lib.stride_tricks.sliding_window_view(xs, 2 * width)[::width]
    kind = np.uint8 if width <= 128 else np.int32
    # about 65k windows a chunk (numpy calls big enough, arrays cache-sized), tables <= 16 MB
    step = max(1, min(2**16 // width, 2**24 // (width * width * np.dtype(kind).itemsize)))
    for c in range(0, lanes, step):
        order = np.argsort(rows[c : c + step], axis=1)
        values = np.take_along_axis(rows[c : c + step], order, axis=1)
        rank = np.empty(order.shape, kind)
        np.put_along_axis(rank, order, np.arange(2 * width)[None, :], axis=1)
        ranks = np.empty((width, width, len(order)), kind)
        ranks[0] = np.nonzero(order < width)[1].reshape(len(order), width).T
        leave = np.ascontiguousarray(rank[:, :width].T)
        enter = np.ascontiguousarray(rank[:, width:].T)
        gap = np.empty((width - 1, len(order)), kind)
        after = np.empty(gap.shape, bool)
        kept = np.empty(gap.shape, kind)
        for o in range(width - 1):
            s, new, a = ranks[o], ranks[o + 1], enter[o]
            np.subtract(s[1:], s[:-1], out=gap)
            np.greater_equal(s[:-1], leave[o], out=after)
            np.multiply(after, gap, out=gap)
            np.add(s[:-1], gap, out=kept)
            np.maximum(kept[:-1], a, out=new[1:-1])
            np.minimum(new[1:-1], kept[1:], out=new[1:-1])
            np.minimum(kept[0], a, out=new[0])
            np.maximum(kept[-1], a, out=new[-1])
        yield c * width, values, ranks
''',
    "past_median_mad": '''
def past_median_mad(x, width):
    """Median and median absolute deviation of the `width` points before t (NaN until then).

    Exactly np.median of each window and of its absolute deviations from that median (the mean of
    the two middle values for an even width). From the windows' sorted ranks (sorted_windows,
    O(width) small-integer operations per point, no float selection): the median is the middle
    entry, and the deviations below it (read downwards) and above it (read upwards) are two
    sorted lists, so the MAD is a k-th smallest of two sorted lists, a binary search in
    O(log width) per point. Windows holding a non-finite value, and short inputs (under four
    widths of windows, where it is cheaper), go through np.median itself.
    """
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    todo = np.arange(len(windows))
    if width > 1 and len(windows) >= 4 * width:
        h = width // 2
        j = h if width % 2 else h - 1  # the MAD is the j-th (and j+1-th) smallest deviation
        finite = np.where(np.isfinite(x[:-1]), x[:-1], 0.0)
        for first, values, ranks in sorted_windows(finite, width):
            lanes = ranks.shape[2]
            flat_v, flat_r = values.reshape(-1), ranks.reshape(-1)
            lane_v = np.arange(lanes) * (2 * width)
            slot0 = np.arange(width)[:, None] * (width * lanes) + np.arange(lanes)

            def value(at):
                """Values of the windows' sorted entries at flat positions `at` of `ranks`."""
                return np.take(flat_v, lane_v + np.take(flat_r, at))

            mid = slot0 + h * lanes
            m = value(mid) if width % 2 else (value(mid - lanes) + value(mid)) / 2.0
            # The deviations below the median, m - (h-1-k)-th smallest, and above it, (h+k)-th
            # smallest - m, are two sorted lists; `rest` = how many below are not among the j+1
            # smallest deviations, by binary lifting (the k-th of two sorted lists).
            rest = np.full(m.shape, h)
            bit = 1 << h.bit_length()
            while bit > 1:
                bit >>= 1
                at = slot0 + np.maximum(rest - bit, 0) * lanes
                less = (m - value(at)) < (value(at + (j + 1) * lanes) - m)
                rest -= bit * ((rest >= bit) & less)
            # the j-th smallest deviation: the larger of the last below and the last above taken
            # (an entry past either end is on the wrong side of the median: <= 0, never larger)
            at = slot0 + rest * lanes
            d = np.maximum(m - value(at), value(at + j * lanes) - m)
            if width % 2 == 0:
                # and the next one: the smaller of the next below and the next above
                below = np.where(rest > 0, m - value(np.maximum(at - lanes, slot0)), np.inf)
                above = value(np.minimum(at + h * lanes, slot0 + (width - 1) * lanes)) - m
                d = (d + np.minimum(below, np.where(rest < h, above, np.inf))) / 2.0
            last = min(first + width * lanes, len(windows))
            med[width + first : width + last] = m.T.reshape(-1)[: last - first]
            mad[width + first : width + last] = d.T.reshape(-1)[: last - first]
        held = np.concatenate(([0], np.cumsum(~np.isfinite(x[:-1]))))
        todo = np.nonzero((held[width:] > held[:-width]) | ~np.isfinite(med[width:]))[0]
    for a in range(0, len(todo), 20000):
        idx = todo[a : a + 20000]
        block = windows[idx]
        m = np.median(block, axis=1)
        med[width + idx] = m
        mad[width + idx] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad
''',
    "ewma_before": '''
def ewma_before(x, alpha):
    """EWMA of the points before t (truncated where weights fall below 0.1%; NaN until then)."""
    n = len(x)
    span = max(1, int(math.ceil(math.log(1e-3) / math.log(1.0 - alpha))))
    out = np.full(n, np.nan)
    if n <= span:
        return out
    weights = alpha * (1.0 - alpha) ** np.arange(span)
    weights /= weights.sum()
    smooth = np.convolve(x, weights)[:n]
    out[span:] = smooth[span - 1 : n - 1]
    return out
''',
    "run_length": '''
def run_length(x):
    """How many consecutive points up to t share the value at t."""
    idx = np.arange(len(x))
    changed = np.concatenate(([True], x[1:] != x[:-1]))
    return (idx - np.maximum.accumulate(np.where(changed, idx, 0)) + 1).astype(float)
''',
    "spectral_saliency": '''
def spectral_saliency(x, width):
    """Spectral-residual saliency of the last point of each window of `width` points ending at t,
    relative to the window's mean saliency (Ren et al., 2019; 5 extrapolated points pad it)."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < width:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x, width)
    for a in range(0, len(windows), 8000):
        block = windows[a : a + 8000]
        block = block - block.mean(axis=1, keepdims=True)
        # extrapolate from the 6 points before the last one, so the last point stays the edge
        seg = block[:, -7:-1]
        slopes = (seg[:, -1:] - seg[:, :-1]) / np.arange(5, 0, -1)
        ahead = seg[:, 1] + slopes.sum(axis=1)
        ext = np.concatenate((block, np.repeat(ahead[:, None], 5, axis=1)), axis=1)
        spec = np.fft.fft(ext, axis=1)
        log_amp = np.log(np.abs(spec) + 1e-8)
        pad = np.concatenate((log_amp[:, :1], log_amp, log_amp[:, -1:]), axis=1)
        smooth = (pad[:, :-2] + pad[:, 1:-1] + pad[:, 2:]) / 3.0
        residual = np.exp(log_amp - smooth + 1j * np.angle(spec))
        sal = np.abs(np.fft.ifft(residual, axis=1))
        ref = sal[:, :width].mean(axis=1) + 1e-8
        out[width - 1 + a : width - 1 + a + len(block)] = (sal[:, width - 1] - ref) / ref
    return out
''',
}

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
        normal: the normal condition in words, with ``{thr}``, ``{signal}`` and param fields.
        abnormal: the abnormal condition in words, same fields, plus ``{dir}`` (above / below /
            away from).
        params: ``PARAMS`` entries the code reads.
        helpers: helper functions the code calls.
        lookback: points of history needed, as a function of the params (before the transform's).
        directions: the directions that make sense for this score.
        signed: True when the score is centred on 0 (z-scores); False for magnitudes.
    """

    name: str
    code: str
    normal: str
    abnormal: str
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
            "{signal} stays {inside} {thr}",
            "{signal} is {dir} {thr}",
            (),
            (),
            lambda p: 1,
        ),
        Scorer(
            "band",
            "    s = x - params['center']\n",
            "{signal} stays within {thr} of {center} (the train median)",
            "{signal} is more than {thr} {dir} {center} (the train median)",
            ("center",),
            (),
            lambda p: 1,
        ),
        Scorer(
            "zscore",
            "    mean, std = window_stats(x, int(params['window']), 1)\n"
            "    s = (x - mean) / floor_scale(std, mean)\n",
            "{signal} stays within {thr} standard deviations of its mean over the previous "
            "{window} points",
            "{signal} is more than {thr} standard deviations {dir} the mean of the previous "
            "{window} points",
            ("window",),
            ("window_stats", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "robust_z",
            "    median, mad = past_median_mad(x, int(params['window']))\n"
            "    spread = np.maximum(1.4826 * mad, params['min_scale'])\n"
            "    s = (x - median) / floor_scale(spread, median)\n",
            "{signal} stays within {thr} robust deviations (1.4826 x MAD, at least {min_scale}, "
            "the data's resolution) of the median of the previous {window} points",
            "{signal} is more than {thr} robust deviations {dir} the median of the previous "
            "{window} points",
            ("window", "min_scale"),
            ("sorted_windows", "past_median_mad", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "relative",
            "    mean, _ = window_stats(x, int(params['window']), 1)\n"
            "    s = (x - mean) / floor_scale(np.abs(mean), mean)\n",
            "{signal} stays within a factor {thr} of its mean over the previous {window} points",
            "{signal} moves {dir} the mean of the previous {window} points by more than a "
            "fraction {thr} of it (e.g. a drop to zero)",
            ("window",),
            ("window_stats", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "level_shift",
            "    recent, _ = window_stats(x, int(params['recent']), 0)\n"
            "    before, std = window_stats(x, int(params['window']), int(params['recent']))\n"
            "    s = (recent - before) / floor_scale(std, before)\n",
            "the mean of {signal} over the last {recent} points stays within {thr} standard "
            "deviations of its mean over the {window} points before them",
            "the mean of {signal} over the last {recent} points shifts more than {thr} standard "
            "deviations {dir} its mean over the {window} points before them",
            ("recent", "window"),
            ("window_stats", "floor_scale"),
            lambda p: _w(p, "recent") + _w(p),
        ),
        Scorer(
            "variance_shift",
            "    _, recent = window_stats(x, int(params['recent']), 0)\n"
            "    level, before = window_stats(x, int(params['window']), int(params['recent']))\n"
            "    s = np.log(floor_scale(recent, level) / floor_scale(before, level))\n",
            "the spread (std) of {signal} over the last {recent} points stays within a log-ratio "
            "{thr} of its spread over the {window} points before them",
            "the spread of {signal} over the last {recent} points changes by a log-ratio "
            "{dir} {thr} against the {window} points before them",
            ("recent", "window"),
            ("window_stats", "floor_scale"),
            lambda p: _w(p, "recent") + _w(p),
        ),
        Scorer(
            "cusum",
            "    mean, std = window_stats(x, int(params['window']), 1)\n"
            "    z = np.nan_to_num(np.clip((x - mean) / floor_scale(std, mean), -10.0, 10.0))\n"
            "    drift = params['drift']\n"
            "    upper = np.zeros(len(x))\n"
            "    lower = np.zeros(len(x))\n"
            "    hi = lo = 0.0\n"
            "    for i, zi in enumerate(z.tolist()):\n"
            "        hi = max(0.0, hi + zi - drift)\n"
            "        lo = max(0.0, lo - zi - drift)\n"
            "        upper[i] = hi\n"
            "        lower[i] = lo\n"
            "    s = np.where(upper >= lower, upper, -lower)\n"
            "    s[: int(params['window'])] = np.nan\n",
            "the cumulative sum of {signal}'s z-scores (against the previous {window} points, "
            "minus a drift of {drift} per point) stays below {thr}",
            "the cumulative sum of z-scores (drift {drift}) exceeds {thr} {dir} the mean, a "
            "sustained shift of {signal}",
            ("window", "drift"),
            ("window_stats", "floor_scale"),
            lambda p: _w(p) + 1,
        ),
        Scorer(
            "flat",
            "    s = run_length(x)\n",
            "{signal} keeps changing: fewer than {thr} identical points in a row",
            "{signal} is stuck: {thr} or more identical points in a row",
            (),
            ("run_length",),
            lambda p: 1,
            directions=("up",),
            signed=False,
        ),
        Scorer(
            "spectral",
            "    s = spectral_saliency(x, int(params['window']))\n",
            "the spectral-residual saliency of {signal} over the last {window} points stays "
            "below {thr} times the window's mean saliency",
            "{signal} is salient: its spectral-residual saliency is more than {thr} times the "
            "mean saliency of the last {window} points",
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
            bits.append(f"{short}{_fmt(v).replace('.', '')}")
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

        A stuck-value rule fires on a run of ``threshold`` identical points, so that run must fit
        in the window the online detector keeps: otherwise streaming and batch labels differ.
        """
        base = self.structure.lookback()
        if self.structure.scorer == "flat":
            base = max(base, math.ceil(self.threshold) + self.structure.persistence - 1)
        if self.gate is not None:
            gate = self.gate.structure.lookback()
            if self.gate.structure.scorer == "flat":
                gate = max(gate, math.ceil(self.gate.threshold))
            base = max(base, gate)
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


def _fmt(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}"


def _helpers_for(*keys: tuple[str, str]) -> list[str]:
    names: list[str] = []
    for transform, scorer in keys:
        for h in (*TRANSFORMS[transform].helpers, *SCORERS[scorer].helpers):
            if h not in names:
                names.append(h)
    return names


def _score_def(transform: str, scorer: str, name: str, doc: str) -> str:
    t, sc = TRANSFORMS[transform], SCORERS[scorer]
    body = re.sub(r"params\['(\w+)'\]", r'params["\1"]', t.code + sc.code)
    return (
        f"\n\ndef {name}(values, timestamps, params):\n"
        f'    """{doc}"""\n'
        f"    values = np.asarray(values, dtype=float)\n"
        f"{body}"
        f"    return np.asarray(s, dtype=float)\n"
    )


_SCORE_DOC = "Score of each point: larger means more anomalous in the rule's direction."
_GATE_DOC = "Score of the second condition (the gate), on its own parameters."


def score_source(transform: str, scorer: str) -> str:
    """Source of the helpers and the ``score(values, timestamps, params)`` function of a pair."""
    helpers = "".join("\n" + _HELPERS[h] for h in _helpers_for((transform, scorer)))
    return helpers + _score_def(transform, scorer, "score", _SCORE_DOC)


_DIRECTION_CODE: dict[Direction, str] = {
    "up": "    s = score(values, timestamps, params)\n",
    "down": "    s = -score(values, timestamps, params)\n",
    "both": "    s = np.abs(score(values, timestamps, params))\n",
}

_HOLD_CODE = """    if k > 1:
        # the smallest score of the last k points: the condition held k points in a row
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            last_k = held[k - 1 :]
            last_k[:] = s[k - 1 :]
            for j in range(1, k):
                np.minimum(last_k, s[k - 1 - j : len(s) - j], out=last_k)
        s = held
"""
"""The persistence step of a rendered ``detect`` (score ``s``, ``k`` points in a row); the
generator runs the same code through :func:`directional`."""

_DETECT_TAIL = (
    '    k = int(params["persistence"])\n'
    + _HOLD_CODE
    + '    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]\n'
)


def _compile_hold() -> Callable[[FloatArray, int], FloatArray]:
    """:data:`_HOLD_CODE` as a function ``hold(s, k)``, so :func:`directional` runs the very lines
    a rendered rule runs."""
    namespace: dict[str, Any] = {"np": np}
    code = "def hold(s, k):\n" + _HOLD_CODE + "    return s\n"
    exec(compile(code, "<rendered persistence step>", "exec"), namespace)
    hold: Callable[[FloatArray, int], FloatArray] = namespace["hold"]
    return hold


_hold = _compile_hold()

_GATE_CODE: dict[Direction, str] = {
    "up": "    g = gate_score(values, timestamps, gate)\n",
    "down": "    g = -gate_score(values, timestamps, gate)\n",
    "both": "    g = np.abs(gate_score(values, timestamps, gate))\n",
}

_GATE_HEAD = """    # AND: the gate's condition must hold at the same point
    gate = {k[5:]: v for k, v in params.items() if k.startswith("gate_")}
"""

_GATE_TAIL = """    alarm &= np.nan_to_num(g, nan=-np.inf) >= gate["threshold"]
"""

_COOLDOWN_CALL = """    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
"""

_COOLDOWN_HELPER = '''

def apply_cooldown(alarm, quiet):
    """Keep an alarm only if the condition did not hold in any of the previous `quiet` points
    (one alarm at the start of each burst)."""
    held = np.concatenate(([0], np.cumsum(alarm)))
    idx = np.arange(len(alarm))
    return alarm & (held[idx] == held[np.maximum(idx - quiet, 0)])
'''


_SCORER_TITLES = {
    "static": "static bound",
    "band": "band around the train median",
    "zscore": "rolling z-score",
    "robust_z": "robust z-score (median/MAD)",
    "relative": "relative change",
    "level_shift": "level shift",
    "variance_shift": "variance shift",
    "cusum": "CUSUM",
    "flat": "stuck-value run length",
    "spectral": "spectral-residual saliency",
}
_TRANSFORM_TITLES = {
    "value": "the value",
    "diff": "the first difference",
    "seasonal": "the seasonal residual",
    "ewma": "the EWMA residual",
}
_DIRECTION_TITLES = {"up": "upward", "down": "downward", "both": "both directions"}


def _words(spec: RuleSpec) -> tuple[str, str, str]:
    title, normal, abnormal = _condition_words(spec.structure, spec.threshold)
    if spec.gate is not None:
        g_title, g_normal, g_abnormal = _condition_words(spec.gate.structure, spec.gate.threshold)
        title += f", AND {g_title}"
        normal += f", or {g_normal}"
        abnormal += f", and at the same point {g_abnormal}"
    if spec.cooldown:
        abnormal += (
            f"; it alarms once per burst: only when the condition was off for the "
            f"{spec.cooldown} points before"
        )
    return title, normal[0].upper() + normal[1:], abnormal[0].upper() + abnormal[1:]


def _condition_words(st: Structure, threshold: float) -> tuple[str, str, str]:
    t, sc = TRANSFORMS[st.transform], SCORERS[st.scorer]
    p = {k: (f"{v:.6g}" if k == "center" else _fmt(v)) for k, v in st.params}
    signal = t.phrase.format(**p)
    thr = f"{threshold:.4g}"
    # a downward static rule fires at value <= -threshold: say that bound, whatever its sign
    thr_txt = f"{-threshold:.4g}" if (st.direction == "down" and sc.name == "static") else thr
    dir_word = {"up": "above", "down": "below", "both": "above or below"}[st.direction]
    if sc.name == "static":
        dir_word = {"up": "at or above", "down": "at or below", "both": "beyond +/-"}[st.direction]
    inside = {"up": "below", "down": "above", "both": "within +/-"}[st.direction]
    fields = {**p, "signal": signal, "thr": thr_txt, "dir": dir_word, "inside": inside}
    normal = sc.normal.format(**fields)
    if sc.name == "band" and st.direction != "both":
        side = "above" if st.direction == "up" else "below"
        normal = f"{signal} stays at most {thr} {side} {p['center']} (the train median)"
    abnormal = sc.abnormal.format(**fields)
    if st.persistence > 1:
        abnormal += f", for {st.persistence} consecutive points"
    title = (
        f"{_SCORER_TITLES[sc.name]} of {_TRANSFORM_TITLES[t.name]}, "
        f"{_DIRECTION_TITLES[st.direction]}"
    )
    return title, normal, abnormal


def _wrap(text: str, width: int = 96) -> str:
    return "\n".join(textwrap.wrap(text, width=width, subsequent_indent="    "))


def render(spec: RuleSpec) -> str:
    """The rule module's source: docstring, imports, PARAMS, LOOKBACK, helpers, score, detect."""
    st = spec.structure
    title, normal, abnormal = _words(spec)
    extra = ""
    if spec.metrics:
        extra = (
            "\nFitted by the Argos builtin generator: "
            + ", ".join(f"{k} {v:.3f}" for k, v in spec.metrics.items())
            + "."
        )
    summary = "\n".join(textwrap.wrap(f"{spec.name}: {title}.", width=96))
    doc = (
        f'"""{summary}\n\n'
        f"{_wrap('Normal: ' + normal + '.')}\n"
        f"{_wrap('Abnormal: ' + abnormal + '.')}\n"
        + (f"{_wrap(extra.strip())}\n" if extra else "")
        + '"""\n'
    )
    params_lines = "".join(f'    "{k}": {_param_literal(v)},\n' for k, v in spec.params.items())
    cooldown = _COOLDOWN_HELPER if spec.cooldown else ""
    if spec.gate is None:
        code = score_source(st.transform, st.scorer)
        gate_code = ""
    else:
        g = spec.gate.structure
        helpers = _helpers_for(st.key, g.key)
        code = "".join("\n" + _HELPERS[h] for h in helpers)
        code += _score_def(st.transform, st.scorer, "score", _SCORE_DOC)
        code += _score_def(g.transform, g.scorer, "gate_score", _GATE_DOC)
        gate_code = _GATE_HEAD + _GATE_CODE[g.direction] + _GATE_TAIL
    imports = "import math\n\nimport numpy as np\n" if "math." in code else "import numpy as np\n"
    return (
        f"{doc}\n{imports}\n"
        f"PARAMS = {{\n{params_lines}}}\n"
        f"LOOKBACK = {spec.lookback()}\n"
        f"{code}{cooldown}\n\n"
        "def detect(values, timestamps, params=PARAMS):\n"
        '    """True where the point is anomalous (see the module docstring)."""\n'
        f"{_DIRECTION_CODE[st.direction]}{_DETECT_TAIL}{gate_code}"
        f"{_COOLDOWN_CALL if spec.cooldown else ''}"
        "    return alarm\n"
    )


def _param_literal(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


_SCORE_CACHE: dict[tuple[str, str], ScoreFn] = {}


def compile_score(transform: str, scorer: str) -> ScoreFn:
    """Compile (once, in-process: templates are trusted code) the score function of a pair."""
    key = (transform, scorer)
    fn = _SCORE_CACHE.get(key)
    if fn is None:
        ns: dict[str, Any] = {"np": np, "math": math}
        exec(
            compile(score_source(transform, scorer), f"<template {transform}/{scorer}>", "exec"), ns
        )
        fn = ns["score"]
        _SCORE_CACHE[key] = fn
    return fn


def _compiled_cooldown() -> Callable[[BoolArray, int], BoolArray]:
    ns: dict[str, Any] = {"np": np}
    exec(compile(_COOLDOWN_HELPER, "<template cooldown>", "exec"), ns)
    fn: Callable[[BoolArray, int], BoolArray] = ns["apply_cooldown"]
    return fn


apply_cooldown = _compiled_cooldown()
"""The rendered rules' cool-down (same source): keep an alarm only if the condition was off for the
``quiet`` points before it."""


def load_rule(source: str) -> tuple[DetectFn, dict[str, float]]:
    """Compile a rendered rule (trusted, in-process) and return its ``detect`` and ``PARAMS``."""
    detect, ns = exec_rule_source(source, "<rendered rule>", "argos_template_rule")
    return detect, dict(ns["PARAMS"])


def directional(score: FloatArray, direction: Direction, persistence: int) -> FloatArray:
    """The score a rule thresholds: direction applied, then the minimum over ``persistence`` points.

    NaN (warm-up) becomes ``-inf`` so it never reaches a threshold. Matches :func:`render`'s
    ``detect`` exactly: ``detect(...) == (directional(score(...)) >= threshold)`` (no cool-down).
    """
    if direction == "down":
        s = -score
    elif direction == "both":
        s = np.abs(score)
    else:
        s = score
    return np.nan_to_num(_hold(s, persistence), nan=-np.inf)
