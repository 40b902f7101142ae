"""Shapes for the builtin search: the unit's series as the search sees them, and the rule
structures proposed for them.

:func:`propose_structures` sizes the (transform, scorer, params) triples of
:mod:`argos.rules.grammar` to the unit: windows scaled to the shortest train part, the seasonal
period from the timestamps or the autocorrelation of the train values (:func:`estimate_period`),
a week from real timestamps (:func:`weekly_period`), robust z-scores floored at the data's
resolution (:func:`data_resolution`). A :class:`Candidate` is one such structure with its threshold
fit on train and its scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.grammar import Structure

SIMPLE_SCORERS = ("band", "static", "zscore", "robust_z")
Z_SCORERS = ("zscore", "robust_z")  # thresholds in deviations, capped by SearchConfig.max_z

#: A proposed shape before direction and persistence: (transform, scorer, params).
Triple = tuple[str, str, tuple[tuple[str, float], ...]]


@dataclass(frozen=True)
class FitSeries:
    """One series as the search sees it: train + validation values and labels, validation start.

    Attributes:
        id: series id.
        values: float64 values of train followed by validation (the history a rule sees).
        timestamps: int64 timestamps, same length.
        labels: bool labels, same length (train and validation only: never test).
        val_start: index of the first validation point (== len(values) when there is none).
    """

    id: str
    values: FloatArray
    timestamps: IntArray
    labels: BoolArray
    val_start: int


@dataclass(frozen=True)
class Candidate:
    """A structure with its threshold fit on train and its scores.

    Attributes:
        structure: the rule shape.
        threshold: fitted on the train part.
        train_f1: the objective's F1 on train (mean over series with events), at ``threshold``.
        val_f1: the objective's F1 on validation (None when validation has no event).
        val_fp: false-alarm points on validation.
        selection: the number the search ranks by (in steps of ``SearchConfig.resolution``).
        margin: the gap below the threshold in standard deviations of normal scores; breaks
            ties of ``selection``.
    """

    structure: Structure
    threshold: float
    train_f1: float
    val_f1: float | None
    val_fp: int
    selection: float
    margin: float = 0.0


def estimate_period(series: Sequence[FitSeries]) -> int | None:
    """The seasonal period in points, from the train part only.

    Real Unix timestamps give a daily period (86400 s / interval) when it fits three times in the
    shortest train part; otherwise the strongest autocorrelation peak (lags 4..400, at least 0.3) of
    the train values, taking the most common one over the series.
    """
    votes: dict[int, int] = {}
    for fs in series:
        ts = fs.timestamps[: fs.val_start]
        if len(ts) < 20:
            continue
        interval = int(np.median(np.diff(ts)))
        if ts[0] > 10**8 and interval > 0 and 86400 % interval == 0:
            p = 86400 // interval
            if p >= 4 and 3 * p <= fs.val_start:
                votes[p] = votes.get(p, 0) + 1
                continue
        p_acf = _acf_period(fs.values[: fs.val_start])
        if p_acf is not None:
            votes[p_acf] = votes.get(p_acf, 0) + 1
    if not votes:
        return None
    return max(sorted(votes), key=lambda k: votes[k])


def _acf_period(x: FloatArray) -> int | None:
    n = len(x)
    max_lag = min(400, n // 3)
    if max_lag < 8:
        return None
    y = x - x.mean()
    if not np.any(y):
        return None
    f = np.fft.rfft(y, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[: max_lag + 1]
    ac = ac / ac[0]
    lags = np.arange(4, max_lag)
    peaks = lags[(ac[lags] > ac[lags - 1]) & (ac[lags] >= ac[lags + 1]) & (ac[lags] > 0.3)]
    if len(peaks) == 0:
        return None
    return int(peaks[np.argmax(ac[peaks])])


def data_resolution(series: Sequence[FitSeries]) -> float:
    """The smallest step between distinct train values of the unit (1 for counts; 0 if none).

    Robust z-scores divide by at least this much, so a window whose MAD is 0 (a count that sat
    on one value) gives a score in steps of the data, not a 1e17 that no operator can review.
    """
    vals = np.unique(np.concatenate([fs.values[: fs.val_start] for fs in series]))
    vals = vals[np.isfinite(vals)]
    if len(vals) < 2:
        return 0.0
    return float(np.diff(vals).min())


def weekly_period(series: Sequence[FitSeries]) -> int | None:
    """Points per week (the same time of day on the same weekday) from real Unix timestamps with
    one sampling interval that divides a week; None otherwise."""
    intervals: set[int] = set()
    for fs in series:
        ts = fs.timestamps[: fs.val_start]
        if len(ts) < 20 or ts[0] <= 10**8:
            return None
        intervals.add(int(np.median(np.diff(ts))))
    if len(intervals) != 1:
        return None
    interval = intervals.pop()
    return _WEEK // interval if interval > 0 and _WEEK % interval == 0 else None


_WEEK = 7 * 86400


def propose_structures(series: Sequence[FitSeries], *, weekly: bool = True) -> list[Triple]:
    """(transform, scorer, params) triples sized to the shortest train part of the unit.

    Seasonal residuals use the estimated period (a day from the timestamps, or the
    autocorrelation's) and, with ``weekly``, a week from the timestamps (day of week).
    """
    n_train = min(fs.val_start for fs in series)
    periods = [p for p in (estimate_period(series),) if p is not None]
    week = weekly_period(series) if weekly else None
    if week is not None and week not in periods:
        periods.append(week)

    def ok(width: int) -> bool:
        return width * 5 <= n_train

    windows = [w for w in (10, 30, 60, 120, 360, 1440) if ok(w)]
    out: list[Triple] = []
    out.append(("value", "static", ()))
    out.append(("diff", "static", ()))
    for w in windows:
        out.append(("value", "zscore", (("window", w),)))
        out.append(("diff", "zscore", (("window", w),)))
    resolution = data_resolution(series)
    for w in (30, 120):
        if ok(w):
            rz = (("window", w), ("min_scale", resolution))
            out.append(("value", "robust_z", rz))
            out.append(("diff", "robust_z", rz))
    for period in periods:
        for cycles in (1, 3):
            if ok(period * cycles + 60):
                for w in (60, 360):
                    if ok(period * cycles + w):
                        out.append(
                            (
                                "seasonal",
                                "zscore",
                                (("period", period), ("cycles", cycles), ("window", w)),
                            )
                        )
    for alpha in (0.05, 0.2, 0.5):
        if ok(120 + 140):
            out.append(("ewma", "zscore", (("alpha", alpha), ("window", 120))))
    for w in (10, 60, 360):
        if ok(w):
            out.append(("value", "relative", (("window", w),)))
    for recent, w in ((3, 30), (10, 120), (30, 360)):
        if ok(recent + w):
            out.append(("value", "level_shift", (("recent", recent), ("window", w))))
            out.append(("value", "variance_shift", (("recent", recent), ("window", w))))
    for w, drift in ((120, 0.5), (360, 1.0)):
        if ok(w):
            out.append(("value", "cusum", (("window", w), ("drift", drift))))
    out.append(("value", "flat", ()))
    for w in (32, 96):
        if ok(w):
            out.append(("value", "spectral", (("window", w),)))
    return out


def median_center(series: Sequence[FitSeries], *, train_only: bool) -> float:
    """The median of the unit's values on the train part (``train_only``) or train + validation:
    the centre of a band rule."""
    vals = np.concatenate([fs.values[: fs.val_start] if train_only else fs.values for fs in series])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else 0.0
