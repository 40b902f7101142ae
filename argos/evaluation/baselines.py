"""Baseline detectors: a causal anomaly score plus one threshold fit on train labels only.

Every baseline computes a *residual* for each point from that point and its past only (causal:
the label of point t uses points <= t), then turns it into a score in one of three orientations
(``abs`` = |r|, ``upper`` = r, ``lower`` = -r). Fitting, on the train part *including* validation
(``[0, test_start)`` of each series, never a test point):

1. fit the baseline's own state if it has any (the static threshold's centre, the seasonal period,
   the isolation forest);
2. for each allowed orientation, take a grid of quantiles of the train scores (60 levels from the
   median to the 99.99th percentile, denser in the tail, plus the maximum) and pick the threshold
   that maximises **the objective's F1 on the train labels** (counts summed over the series of a
   training unit; event-PA by default, ``argos eval --objective`` chooses k-delay or point F1, the
   same objective every method of the run is fit for). Every threshold between the two train
   scores around the best candidate gives the same train counts; the middle of that range is taken
   (max margin);
3. keep the orientation with the best train F1.

When the train part holds no anomaly at all, F1 is undefined for every threshold: the threshold is
then the largest train score (the detector fires only on points more extreme than anything seen in
training) in the ``abs`` orientation when allowed.

A point is anomalous when its score is strictly above the threshold; warm-up points whose score is
NaN (not enough history yet) are never anomalous. Detectors also expose :meth:`score` for AUC-PR and
VUS-PR.

All residuals are vectorised numpy / pandas; there is no per-point Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from argos._types import BoolArray, FloatArray, IntArray
from argos.data.protocol import merge_slices
from argos.data.series import Series
from argos.metrics import EVENT_PA, Objective, events

Orientation = Literal["abs", "upper", "lower"]

#: Quantile levels of the train scores tried as thresholds (the maximum is always added).
QUANTILE_LEVELS: FloatArray = np.unique(
    np.concatenate([np.linspace(0.5, 0.95, 10), 1.0 - np.logspace(np.log10(0.05), -4, 50)])
)

_MAD_TO_STD = 1.4826
_EPS = 1e-9


# ---------------------------------------------------------------------------------------------
# threshold fitting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdFit:
    """Result of fitting a threshold: the score orientation, the threshold and its train F1."""

    orientation: Orientation
    threshold: float
    train_f1: float | None


def orient(residual: FloatArray, orientation: Orientation) -> FloatArray:
    """Turn a signed residual into a score where higher = more anomalous."""
    if orientation == "abs":
        return np.abs(residual)
    if orientation == "upper":
        return residual
    return -residual


def _event_maxima(
    score: FloatArray, labels: BoolArray, objective: Objective = EVENT_PA
) -> tuple[FloatArray, IntArray, FloatArray]:
    """(max score inside each event's hit window, each event's weight, scores of the points
    outside every event) as ``objective`` counts them: event-PA, the whole event with weight 1;
    ``delay:K``, its first ``K + 1`` points with weight = its length (a detected event is all TP,
    a missed one all FN); ``point``, every labeled point an event of weight 1."""
    filled = np.where(np.isnan(score), -np.inf, score)
    if objective.kind == "point":
        return filled[labels], np.ones(int(labels.sum()), dtype=np.int64), filled[~labels]
    starts, ends = events(labels)
    if starts.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64), filled[~labels]
    delayed = objective.kind == "delay"
    window_ends = np.minimum(ends, starts + objective.delay + 1) if delayed else ends
    idx = np.empty(2 * starts.size, dtype=np.int64)
    idx[0::2], idx[1::2] = starts, window_ends
    ev_max = np.maximum.reduceat(np.append(filled, -np.inf), idx)[0::2]
    weights = (ends - starts) if delayed else np.ones(starts.size, np.int64)
    return ev_max, weights.astype(np.int64), filled[~labels]


def best_threshold(
    scores: Sequence[FloatArray], labels: Sequence[BoolArray], objective: Objective = EVENT_PA
) -> tuple[float, float | None]:
    """Threshold maximising the ``objective``'s F1 of ``score > threshold``, counts summed over
    the given series (TP and FN weighted as :func:`_event_maxima` says).

    Candidates are :data:`QUANTILE_LEVELS` of the finite scores plus their maximum. Returns the
    threshold and its F1 (``None`` when no series has an anomaly; the threshold is then the
    maximum score).
    """
    ev_parts: list[FloatArray] = []
    w_parts: list[IntArray] = []
    out_parts: list[FloatArray] = []
    for s, lab in zip(scores, labels, strict=True):
        ev, w, out = _event_maxima(s, lab, objective)
        ev_parts.append(ev)
        w_parts.append(w)
        out_parts.append(out)
    ev_all = np.concatenate(ev_parts) if ev_parts else np.zeros(0)
    order = np.argsort(ev_all, kind="stable")
    ev_max = ev_all[order]
    weights = np.concatenate(w_parts)[order] if w_parts else np.zeros(0, dtype=np.int64)
    # weight_above[j]: the weight of the events ev_max[j:]
    weight_above = np.concatenate((np.cumsum(weights[::-1])[::-1], [0]))
    outside = np.sort(np.concatenate(out_parts)) if out_parts else np.zeros(0)
    finite = np.concatenate([s[np.isfinite(s)] for s in scores]) if scores else np.zeros(0)
    if finite.size == 0:
        return float("inf"), None
    top = float(finite.max())
    if ev_max.size == 0:
        return top, None
    cands = np.unique(np.append(np.quantile(finite, QUANTILE_LEVELS), top))
    first_hit = np.searchsorted(ev_max, cands, side="right")
    hit = ev_max.size - first_hit
    tp = weight_above[first_hit]
    fp = outside.size - np.searchsorted(outside, cands, side="right")
    fn = weight_above[0] - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return _max_margin(ev_max, outside, int(hit[best]), int(fp[best])), float(f1[best])


def _max_margin(ev_max: FloatArray, outside: FloatArray, tp: int, fp: int) -> float:
    """Middle of the range of thresholds that hit exactly ``tp`` events and give ``fp`` false
    alarms.

    ``ev_max`` and ``outside`` are sorted. Every threshold in ``[lower, upper)`` gives the same
    train counts; the middle keeps the largest margin on both sides.
    """
    lower = -np.inf
    if fp < outside.size:
        lower = max(lower, float(outside[outside.size - fp - 1]))
    if tp < ev_max.size:
        lower = max(lower, float(ev_max[ev_max.size - tp - 1]))
    upper = np.inf
    if fp > 0:
        upper = min(upper, float(outside[outside.size - fp]))
    if tp > 0:
        upper = min(upper, float(ev_max[ev_max.size - tp]))
    if not np.isfinite(upper):
        return lower
    if not np.isfinite(lower):
        return float(np.nextafter(upper, -np.inf))  # flag every finite score
    return (lower + upper) / 2


def fit_threshold(
    residuals: Sequence[FloatArray],
    labels: Sequence[BoolArray],
    orientations: Sequence[Orientation],
    objective: Objective = EVENT_PA,
) -> ThresholdFit:
    """Choose the orientation and threshold with the best train F1 of ``objective`` (see module
    doc)."""
    best: ThresholdFit | None = None
    for o in orientations:
        thr, f1 = best_threshold([orient(r, o) for r in residuals], labels, objective)
        cand = ThresholdFit(o, thr, f1)
        better = f1 is not None and (best is None or best.train_f1 is None or f1 > best.train_f1)
        if best is None or better:
            best = cand
    assert best is not None, "at least one orientation is required"
    return best


# ---------------------------------------------------------------------------------------------
# causal residuals (vectorised)
# ---------------------------------------------------------------------------------------------


def _past_rolling(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Mean and std (ddof=0) of the ``window`` points strictly before each point.

    NaN during warm-up (fewer than ``window`` earlier points).
    """
    s = pd.Series(values)
    roll = s.rolling(window, min_periods=window)
    mean = roll.mean().shift(1).to_numpy(dtype=np.float64)
    std = roll.std(ddof=0).shift(1).to_numpy(dtype=np.float64)
    return mean, std


def _safe_scale(scale: FloatArray, level: FloatArray) -> FloatArray:
    """Floor a spread so flat windows give large but finite z-scores."""
    return np.maximum(scale, _EPS * (1.0 + np.abs(level)))


def rolling_zscore(values: FloatArray, window: int = 60) -> FloatArray:
    """(x_t - mean) / std of the ``window`` points before t."""
    mean, std = _past_rolling(values, window)
    return (values - mean) / _safe_scale(std, mean)


def rolling_median_mad(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Exact median and MAD of the ``window`` points strictly before each point (NaN in warm-up).

    Chunked over a sliding-window view so memory stays bounded.
    """
    n = values.shape[0]
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= window:
        return med, mad
    view = sliding_window_view(values[:-1], window)  # row j = values[j : j + window] -> point j+w
    chunk = max(1, 4_000_000 // window)
    for a in range(0, view.shape[0], chunk):
        w = view[a : a + chunk]
        m = np.median(w, axis=1)
        med[window + a : window + a + w.shape[0]] = m
        mad[window + a : window + a + w.shape[0]] = np.median(np.abs(w - m[:, None]), axis=1)
    return med, mad


def robust_zscore(values: FloatArray, window: int = 60) -> FloatArray:
    """(x_t - median) / (1.4826 * MAD) of the ``window`` points before t."""
    med, mad = rolling_median_mad(values, window)
    return (values - med) / _safe_scale(_MAD_TO_STD * mad, med)


def ewma_residual(values: FloatArray, alpha: float = 0.1, warmup: int = 30) -> FloatArray:
    """Residual to the EWMA of past points, over the EW root-mean-square of past residuals."""
    s = pd.Series(values)
    level = s.ewm(alpha=alpha, adjust=False).mean().shift(1).to_numpy(dtype=np.float64)
    resid = values - level
    var = (
        pd.Series(resid**2)
        .ewm(alpha=alpha, adjust=False, ignore_na=True)
        .mean()
        .shift(1)
        .to_numpy(dtype=np.float64)
    )
    z: FloatArray = resid / _safe_scale(np.sqrt(var), level)
    z[: min(warmup, len(z))] = np.nan
    return z


def seasonal_residual(values: FloatArray, period: int, n_periods: int = 4) -> FloatArray:
    """Residual to the mean of the same slot in up to ``n_periods`` past periods, standardised.

    The slot of point t in period p is t - p * period (a regular grid is assumed, as the data model
    keeps timestamps as they come). The residual is divided by the std of the residuals of the
    previous ``period`` points.
    """
    n = values.shape[0]
    total = np.zeros(n)
    count = np.zeros(n)
    for j in range(1, n_periods + 1):
        lag = j * period
        if lag >= n:
            break
        total[lag:] += values[:-lag]
        count[lag:] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    resid = values - expected
    win = max(period, 30)
    std = (
        pd.Series(resid)
        .rolling(win, min_periods=max(10, win // 4))
        .std(ddof=0)
        .shift(1)
        .to_numpy(dtype=np.float64)
    )
    return resid / _safe_scale(std, expected)


def spectral_residual(
    values: FloatArray,
    window: int = 64,
    amp_window: int = 3,
    score_window: int = 21,
    extend: int = 5,
) -> FloatArray:
    """Causal spectral-residual saliency (Ren et al., KDD 2019) of the last point of each window.

    For every t the trailing window ``values[t-window+1 .. t]`` is extended by ``extend`` points
    estimated from the gradient of the points before t (as in the paper's code), the saliency
    map is computed from the log-amplitude spectrum minus its ``amp_window`` moving average, and
    the score of t is ``(S_t - mean S) / mean S`` over the ``score_window`` saliency values before
    t in the window.
    Batched over windows with ``numpy.fft``; NaN for the first ``window - 1`` points.
    """
    n = values.shape[0]
    out = np.full(n, np.nan)
    if n < window:
        return out
    view = sliding_window_view(values, window)  # row j ends at point j + window - 1
    m = extend
    length = window + m
    chunk = 50_000
    lags = np.arange(1, m + 1, dtype=np.float64)
    for a in range(0, view.shape[0], chunk):
        w = view[a : a + chunk]
        # Extension as in the paper's reference code: predicted from the points BEFORE t, so a
        # spike at t is not smeared into the extension.
        before = w[:, -(m + 2) : -1]  # m + 1 points ending at t - 1
        slopes = (before[:, -1:] - before[:, :-1]) / lags[::-1]
        nxt = before[:, 1] + slopes.sum(axis=1)
        x = np.concatenate([w, np.repeat(nxt[:, None], m, axis=1)], axis=1)
        spec = np.fft.rfft(x, axis=1)
        amp = np.abs(spec)
        log_amp = np.log(amp + _EPS)
        padded = np.pad(log_amp, ((0, 0), (amp_window // 2, amp_window // 2)), mode="edge")
        csum = np.cumsum(padded, axis=1)
        csum = np.concatenate([np.zeros((csum.shape[0], 1)), csum], axis=1)
        avg = (csum[:, amp_window:] - csum[:, :-amp_window]) / amp_window
        resid = log_amp - avg
        phase = spec / np.maximum(amp, _EPS)
        sal = np.abs(np.fft.irfft(np.exp(resid) * phase, n=length, axis=1))
        s_t = sal[:, window - 1]
        ref = sal[:, window - 1 - score_window : window - 1].mean(axis=1)
        out[a + window - 1 : a + window - 1 + w.shape[0]] = (s_t - ref) / (ref + _EPS)
    return out


def window_features(values: FloatArray, window: int = 60) -> FloatArray:
    """Causal per-point features for the isolation forest (rows with NaN are warm-up).

    Columns: value, first difference, deviation from the past-window mean, that deviation in
    past-window stds, the first difference in past-window stds, and the log ratio of the
    short-window std to a 5x longer window's std.
    """
    mean, std = _past_rolling(values, window)
    _, std_long = _past_rolling(values, 5 * window)
    d1 = np.diff(values, prepend=np.nan)
    scale = _safe_scale(std, mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        vol = np.log((std + _EPS) / (std_long + _EPS))
    return np.column_stack([values, d1, values - mean, (values - mean) / scale, d1 / scale, vol])


# ---------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------


class ThresholdDetector:
    """A fitted baseline: its residual function, orientation and threshold."""

    def __init__(self, method: ScoreBaseline, fit: ThresholdFit) -> None:
        self.method = method
        self.fit = fit
        # detect() and score() on the same series compute the residual once.
        self._cache: tuple[object, FloatArray] | None = None

    @property
    def threshold(self) -> float:
        return self.fit.threshold

    def score(self, series: Series) -> FloatArray:
        """The oriented anomaly score of every point (NaN in warm-up)."""
        if self._cache is not None and self._cache[0] is series.values:
            r = self._cache[1]
        else:
            r = self.method.residual(series.values, series.timestamps)
            self._cache = (series.values, r)
        return orient(r, self.fit.orientation)

    def detect(self, series: Series) -> BoolArray:
        """True where the score is strictly above the fitted threshold."""
        s = self.score(series)
        return np.asarray(np.nan_to_num(s, nan=-np.inf) > self.fit.threshold, dtype=np.bool_)


class ScoreBaseline:
    """Base class: subclasses define :meth:`residual` and optionally :meth:`prepare`.

    ``fit`` merges each series' train and validation slices into the full pre-test history, fits
    the baseline's state with :meth:`prepare`, then the orientation and threshold.
    """

    name: ClassVar[str] = "baseline"
    description: ClassVar[str] = ""
    orientations: ClassVar[tuple[Orientation, ...]] = ("abs", "upper", "lower")

    def __init__(self, *, seed: int = 0, objective: Objective = EVENT_PA) -> None:
        self.seed = seed
        self.objective = objective

    def prepare(self, history: Sequence[Series]) -> None:
        """Fit any state besides the threshold (default: none)."""

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        """Causal signed residual of every point (NaN where undefined)."""
        raise NotImplementedError

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> ThresholdDetector:
        history = _history(train, validation)
        self.prepare(history)
        residuals = [self.residual(h.values, h.timestamps) for h in history]
        labels = [_labels(h) for h in history]
        fit = fit_threshold(residuals, labels, self.orientations, self.objective)
        return ThresholdDetector(self, fit)


def _history(train: Sequence[Series], validation: Sequence[Series]) -> list[Series]:
    if len(train) != len(validation):
        raise ValueError(f"{len(train)} train slices but {len(validation)} validation slices")
    if not train:
        raise ValueError("fit needs at least one training series")
    return [merge_slices([t, v]) for t, v in zip(train, validation, strict=True)]


def _labels(series: Series) -> BoolArray:
    if series.labels is None:
        raise ValueError(f"series {series.id!r} has no labels to fit a threshold on")
    return series.labels


class StaticThreshold(ScoreBaseline):
    """Fixed bounds: residual = value - median of the train values (upper, lower or both)."""

    name = "static-threshold"
    description = "fixed upper/lower bound on the value, fit on train"

    def __init__(self, *, seed: int = 0, objective: Objective = EVENT_PA) -> None:
        super().__init__(seed=seed, objective=objective)
        self.center = 0.0

    def prepare(self, history: Sequence[Series]) -> None:
        self.center = float(np.median(np.concatenate([h.values for h in history])))

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        return values - self.center


class WindowBaseline(ScoreBaseline):
    """A baseline whose residual is one function of the values and a trailing ``window`` (its
    length in points, :attr:`default_window` unless given): :meth:`window_residual`."""

    default_window: ClassVar[int] = 60

    def __init__(
        self, *, seed: int = 0, objective: Objective = EVENT_PA, window: int | None = None
    ) -> None:
        super().__init__(seed=seed, objective=objective)
        self.window = self.default_window if window is None else window

    @staticmethod
    def window_residual(values: FloatArray, window: int) -> FloatArray:
        """The residual of every point over the previous ``window`` points."""
        raise NotImplementedError

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        return self.window_residual(values, self.window)


class RollingZScore(WindowBaseline):
    """z-score against the mean/std of the previous ``window`` points."""

    name = "rolling-zscore"
    description = "z-score vs. mean/std of the previous 60 points"
    window_residual = staticmethod(rolling_zscore)


class RobustZScore(WindowBaseline):
    """Robust z-score against the median/MAD of the previous ``window`` points."""

    name = "robust-zscore"
    description = "robust z-score vs. median/MAD of the previous 60 points"
    window_residual = staticmethod(robust_zscore)


class EwmaResidual(ScoreBaseline):
    """Residual to an exponentially weighted moving average of past points."""

    name = "ewma"
    description = "residual to the EWMA (alpha 0.1) of past points, in EW std units"

    def __init__(
        self, *, seed: int = 0, objective: Objective = EVENT_PA, alpha: float = 0.1
    ) -> None:
        super().__init__(seed=seed, objective=objective)
        self.alpha = alpha

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        return ewma_residual(values, self.alpha)


def _looks_like_unix_seconds(timestamps: IntArray) -> bool:
    return timestamps.shape[0] > 0 and int(timestamps[0]) > 100_000_000


def candidate_periods(timestamps: IntArray) -> list[int]:
    """Seasonal periods (in points) to try: a day and a week from the median interval.

    Data with index timestamps (no real clock) gets 24 and 168 points (hourly data's day and
    week, the common case in Yahoo S5).
    """
    if timestamps.shape[0] < 2:
        return [24]
    interval = int(np.median(np.diff(timestamps)))
    if _looks_like_unix_seconds(timestamps) and interval > 0:
        if interval >= 86_400:
            return [max(2, round(7 * 86_400 / interval))]
        day = max(2, round(86_400 / interval))
        return [day, 7 * day]
    return [24, 168]


class SeasonalResidual(ScoreBaseline):
    """Residual to the same slot (time of day, or day of week) in past periods.

    The period is chosen on train among :func:`candidate_periods` (day or week) by train event-PA
    F1; a candidate must fit at least twice in the shortest history, else the shortest is used.
    """

    name = "seasonal-residual"
    description = "residual vs. the same time-of-day / day-of-week slot of past periods"

    def __init__(
        self, *, seed: int = 0, objective: Objective = EVENT_PA, n_periods: int = 4
    ) -> None:
        super().__init__(seed=seed, objective=objective)
        self.n_periods = n_periods
        self.period = 24

    def prepare(self, history: Sequence[Series]) -> None:
        shortest = min(len(h) for h in history)
        cands = candidate_periods(history[0].timestamps)
        usable = [p for p in cands if 2 * p <= shortest] or [min(cands)]
        if len(usable) == 1:
            self.period = usable[0]
            return
        labels = [_labels(h) for h in history]
        best_f1 = -1.0
        for p in usable:
            res = [seasonal_residual(h.values, p, self.n_periods) for h in history]
            f1 = fit_threshold(res, labels, self.orientations).train_f1
            score = -0.5 if f1 is None else f1
            if score > best_f1:
                best_f1, self.period = score, p

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        return seasonal_residual(values, self.period, self.n_periods)


class SpectralResidual(WindowBaseline):
    """Spectral-residual saliency on a trailing 64-point window (causal variant of SR)."""

    name = "spectral-residual"
    description = "spectral-residual saliency of the last point of a trailing 64-point window"
    orientations = ("upper",)
    default_window = 64
    window_residual = staticmethod(spectral_residual)


class IsolationForestBaseline(ScoreBaseline):
    """scikit-learn IsolationForest on causal window features (see :func:`window_features`).

    Features are standardised with the train median / IQR; the forest is fit on at most
    ``max_fit_rows`` train rows drawn with the trial's seed; residual = -score_samples. When no
    train point has the 300 points of history the features need, there is no model and the
    detector never fires.
    """

    name = "isolation-forest"
    description = "IsolationForest on causal window features (value, diffs, rolling deviations)"
    orientations = ("upper",)

    def __init__(
        self,
        *,
        seed: int = 0,
        objective: Objective = EVENT_PA,
        window: int = 60,
        n_estimators: int = 50,
        max_fit_rows: int = 20_000,
    ) -> None:
        super().__init__(seed=seed, objective=objective)
        self.window = window
        self.n_estimators = n_estimators
        self.max_fit_rows = max_fit_rows
        self.model: Any = None
        self.center: FloatArray = np.zeros(0)
        self.scale: FloatArray = np.zeros(0)

    def prepare(self, history: Sequence[Series]) -> None:
        from sklearn.ensemble import IsolationForest

        feats = np.concatenate([window_features(h.values, self.window) for h in history])
        feats = feats[np.isfinite(feats).all(axis=1)]
        if feats.shape[0] < 2:
            # Too short for any point to have a full window of history: no model, no alarms.
            self.model = None
            return
        self.center = np.median(feats, axis=0)
        q75, q25 = np.percentile(feats, [75, 25], axis=0)
        iqr = q75 - q25
        self.scale = np.where(iqr > 0, iqr, np.maximum(np.std(feats, axis=0), 1.0))
        rng = np.random.default_rng(self.seed)
        if feats.shape[0] > self.max_fit_rows:
            feats = feats[rng.choice(feats.shape[0], self.max_fit_rows, replace=False)]
        self.model = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(256, feats.shape[0]),
            random_state=self.seed,
        ).fit((feats - self.center) / self.scale)

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        feats = window_features(values, self.window)
        ok = np.isfinite(feats).all(axis=1)
        out = np.full(values.shape[0], np.nan)
        if self.model is not None and ok.any():
            x = (feats[ok] - self.center) / self.scale
            out[ok] = -self.model.score_samples(x)
        return out


class PyodSpectralResidual(ScoreBaseline):
    """Peer: PyOD's ``SpectralResidual`` with its defaults, thresholded like the baselines.

    Optional (``pip install 'argos-rules[peers]'``); offered only when PyOD is installed. PyOD
    computes the saliency of the whole array in one FFT, so this peer is **not causal**: the score
    of a point depends on later points. It is offered so tables show a widely used library's
    detector in the same run, not as a deployable detector.
    """

    name = "pyod-spectral-residual"
    description = "PyOD SpectralResidual (defaults; whole-series FFT, not causal), optional peer"
    orientations = ("upper",)

    def residual(self, values: FloatArray, timestamps: IntArray) -> FloatArray:
        from pyod.models.ts_spectral_residual import SpectralResidual as PyodSR

        if values.shape[0] < 3:
            return np.full(values.shape[0], np.nan)
        return np.asarray(PyodSR().fit(values).decision_scores_, dtype=np.float64)


BASELINES: tuple[type[ScoreBaseline], ...] = (
    StaticThreshold,
    RollingZScore,
    RobustZScore,
    EwmaResidual,
    SeasonalResidual,
    SpectralResidual,
    IsolationForestBaseline,
)
