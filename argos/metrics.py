"""Anomaly-detection metrics, exactly as defined in ``docs/evaluation.md``.

All functions take 0/1 (or boolean) arrays of equal length: ``truth`` (labels) and ``pred``
(detections). An *event* is a maximal run of 1s in ``truth``.

- :func:`point_wise`: ordinary precision/recall/F1 over points.
- :func:`point_adjusted`: any hit inside a true event marks the whole event as predicted.
- :func:`event_pa`: the published Argos metric. TP = events with at least one predicted point,
  FN = events with none, FP = predicted points outside every event (each counts once).
- :func:`delay_adjusted`: AIOps 2018. An event counts only if a point in its first ``k + 1``
  points is predicted; a detected event becomes all 1s, an undetected one all 0s.

Undefined values are ``None``, never a division by zero:

- ``recall`` and ``f1`` are ``None`` when the series has no true events;
- ``precision`` is ``None`` when there are neither predictions nor true events. When there are
  events but no predictions, precision is 0.0 (scikit-learn's ``zero_division=0``), so a detector
  that never fires cannot raise a mean precision.

Pooled aggregation sums the counts over series (equal to scoring the concatenation, since events
never cross series); mean aggregation averages the per-series values that are defined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from argos._types import BoolArray, IntArray

METRIC_NAMES: tuple[str, ...] = ("point", "point_adjusted", "event_pa", "delay")
DEFAULT_DELAY = 7

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F1 with the counts behind them (``None`` = undefined)."""

    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> Scores:
        """Scores from counts, with the undefined-value policy of this module."""
        has_truth = tp + fn > 0
        has_pred = tp + fp > 0
        precision: float | None
        if has_pred:
            precision = tp / (tp + fp)
        elif has_truth:
            precision = 0.0
        else:
            precision = None
        recall = tp / (tp + fn) if has_truth else None
        f1: float | None = None
        if recall is not None and precision is not None:
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        return cls(precision, recall, f1, int(tp), int(fp), int(fn))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeanScores:
    """Mean of per-series values; ``n_*`` say how many series each mean is over."""

    precision: float | None
    recall: float | None
    f1: float | None
    n_precision: int
    n_recall: int
    n_f1: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_bool(a: ArrayLike, name: str) -> BoolArray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return arr.astype(np.bool_)


def _pair(truth: ArrayLike, pred: ArrayLike) -> tuple[BoolArray, BoolArray]:
    t = _as_bool(truth, "truth")
    p = _as_bool(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"truth and pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    return t, p


def events(truth: ArrayLike) -> tuple[IntArray, IntArray]:
    """Start and end (exclusive) indices of the maximal runs of 1s in ``truth``."""
    t = _as_bool(truth, "truth").astype(np.int8)
    edges = np.diff(np.concatenate(([0], t, [0])))
    starts = np.flatnonzero(edges == 1).astype(np.int64)
    ends = np.flatnonzero(edges == -1).astype(np.int64)
    return starts, ends


def _hits_per_event(pred: BoolArray, starts: IntArray, ends: IntArray) -> IntArray:
    """Number of predicted points inside each event."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    csum = np.concatenate(([0], np.cumsum(pred, dtype=np.int64)))
    return (csum[ends] - csum[starts]).astype(np.int64)


def _counts(truth: BoolArray, pred: BoolArray) -> tuple[int, int, int]:
    tp = int(np.count_nonzero(truth & pred))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(truth & ~pred))
    return tp, fp, fn


def point_wise(truth: ArrayLike, pred: ArrayLike) -> Scores:
    """Ordinary point-wise precision, recall and F1."""
    t, p = _pair(truth, pred)
    return Scores.from_counts(*_counts(t, p))


def adjust_predictions(truth: ArrayLike, pred: ArrayLike, delay: int | None = None) -> BoolArray:
    """Predictions after point adjustment.

    With ``delay=None`` every event that contains a hit becomes all 1s. With ``delay=k`` an event is
    detected only when one of its first ``k + 1`` points is predicted; detected events become all
    1s and undetected events all 0s. Predictions outside events are unchanged.
    """
    t, p = _pair(truth, pred)
    starts, ends = events(t)
    out = p.copy()
    if len(starts) == 0:
        return out
    if delay is None:
        detected = _hits_per_event(p, starts, ends) > 0
    else:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        window_ends = np.minimum(ends, starts + delay + 1)
        detected = _hits_per_event(p, starts, window_ends) > 0
    # Paint each event with its verdict: a +/- marker at its bounds, cumulated.
    mark = np.zeros(len(t) + 1, dtype=np.int64)
    np.add.at(mark, starts[detected], 1)
    np.add.at(mark, ends[detected], -1)
    inside_detected = np.cumsum(mark[:-1]) > 0
    out[t] = False
    out |= inside_detected
    return out


def point_adjusted(truth: ArrayLike, pred: ArrayLike) -> Scores:
    """Point-adjusted P/R/F1: a hit anywhere in an event counts for all its points."""
    t, _ = _pair(truth, pred)
    return Scores.from_counts(*_counts(t, adjust_predictions(t, pred)))


def delay_adjusted(truth: ArrayLike, pred: ArrayLike, k: int = DEFAULT_DELAY) -> Scores:
    """k-delay point-adjusted P/R/F1 (AIOps 2018; k=7 by default)."""
    t, _ = _pair(truth, pred)
    return Scores.from_counts(*_counts(t, adjust_predictions(t, pred, delay=k)))


def event_pa(truth: ArrayLike, pred: ArrayLike) -> Scores:
    """Event-F1 with point adjustment, the metric of the published Argos results."""
    t, p = _pair(truth, pred)
    starts, ends = events(t)
    hits = _hits_per_event(p, starts, ends)
    tp = int(np.count_nonzero(hits))
    fn = len(starts) - tp
    fp = int(np.count_nonzero(p & ~t))
    return Scores.from_counts(tp, fp, fn)


def score_all(truth: ArrayLike, pred: ArrayLike, k: int = DEFAULT_DELAY) -> dict[str, Scores]:
    """Every label metric: keys ``point``, ``point_adjusted``, ``event_pa``, ``delay``."""
    t, p = _pair(truth, pred)
    return {
        "point": point_wise(t, p),
        "point_adjusted": point_adjusted(t, p),
        "event_pa": event_pa(t, p),
        "delay": delay_adjusted(t, p, k),
    }


ObjectiveKind = Literal["event-pa", "delay", "point"]


@dataclass(frozen=True)
class Objective:
    """What a generator optimises when it selects rules and fits their numbers.

    ``event-pa`` (the default) is :func:`event_pa`; ``delay:K`` is :func:`delay_adjusted` with
    ``k = K`` (operators who page on early detection); ``point`` is :func:`point_wise`. Written
    as text (``--objective``, manifests) by ``str()`` and read back by :meth:`parse`.
    """

    kind: ObjectiveKind = "event-pa"
    delay: int = DEFAULT_DELAY

    def __post_init__(self) -> None:
        if self.kind not in ("event-pa", "delay", "point"):
            raise ValueError(f"unknown objective kind {self.kind!r}")
        if self.delay < 0:
            raise ValueError(f"the delay of an objective must be >= 0, got {self.delay}")

    @classmethod
    def parse(cls, text: str) -> Objective:
        """``event-pa``, ``point``, ``delay`` (k = 7) or ``delay:K``; ``ValueError`` otherwise."""
        name, _, arg = text.strip().lower().partition(":")
        if name == "delay":
            if not arg:
                return cls("delay")
            if not arg.isdigit():
                raise ValueError(f"objective {text!r}: the delay must be a whole number (delay:7)")
            return cls("delay", int(arg))
        if name == "event-pa" and not arg:
            return cls("event-pa")
        if name == "point" and not arg:
            return cls("point")
        raise ValueError(
            f"unknown objective {text!r}; choose event-pa, delay:K (e.g. delay:7) or point"
        )

    def __str__(self) -> str:
        return f"delay:{self.delay}" if self.kind == "delay" else self.kind

    @property
    def metric_name(self) -> str:
        """How texts name this objective's F1: ``event-PA``, ``7-delay``, ``point-wise``."""
        if self.kind == "delay":
            return f"{self.delay}-delay"
        return "point-wise" if self.kind == "point" else "event-PA"

    @property
    def metric_key(self) -> str:
        """The name of this objective's F1 in manifests: ``event_pa_f1``, ``delay_7_f1``,
        ``point_f1``."""
        if self.kind == "delay":
            return f"delay_{self.delay}_f1"
        return "point_f1" if self.kind == "point" else "event_pa_f1"

    def score(self, truth: ArrayLike, pred: ArrayLike) -> Scores:
        """This objective's scores of one series."""
        if self.kind == "delay":
            return delay_adjusted(truth, pred, self.delay)
        return point_wise(truth, pred) if self.kind == "point" else event_pa(truth, pred)


EVENT_PA = Objective()
"""The default objective, the metric of the published Argos results."""


def resolve_guard(text: str, objective: Objective) -> Objective | None:
    """The LLM gate's guard metric (``argos train --guard``): ``none``, an objective's text, or
    ``auto``: k-delay F1 (k = 7) for the event-PA objective, event-PA for ``delay:K``, none for
    ``point``. A set that lowers the guard's F1 on train or on validation is not kept (see
    :mod:`argos.training.agents.nodes`). ``ValueError`` on anything else."""
    name = text.strip().lower()
    if name == "none":
        return None
    if name == "auto":
        if objective.kind == "event-pa":
            return Objective("delay", DEFAULT_DELAY)
        return EVENT_PA if objective.kind == "delay" else None
    return Objective.parse(name)


def aggregate_pooled(scores: Iterable[Scores]) -> Scores:
    """Pooled scores: counts summed over series (the AIOps 2018 convention)."""
    tp = fp = fn = 0
    for s in scores:
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
    return Scores.from_counts(tp, fp, fn)


def aggregate_mean(scores: Sequence[Scores]) -> MeanScores:
    """Mean over series of each defined value (the published Argos convention)."""

    def mean(values: list[float | None]) -> tuple[float | None, int]:
        defined = [v for v in values if v is not None]
        return (float(np.mean(defined)) if defined else None), len(defined)

    p, n_p = mean([s.precision for s in scores])
    r, n_r = mean([s.recall for s in scores])
    f, n_f = mean([s.f1 for s in scores])
    return MeanScores(p, r, f, n_p, n_r, n_f)


def format_score(
    x: float | None, digits: int = 3, *, missing: str = "–", spread: float | None = None
) -> str:
    """A metric value as tables print it: ``digits`` decimals, ``missing`` when undefined, and
    ``±spread`` (same decimals) when a spread over trials is given."""
    if x is None:
        return missing
    if spread is None:
        return f"{x:.{digits}f}"
    return f"{x:.{digits}f}±{spread:.{digits}f}"


def auc_pr(truth: ArrayLike, score: ArrayLike) -> float | None:
    """Area under the precision-recall curve (average precision) of a real-valued score.

    ``None`` when there are no true anomalies. Ties are treated as one threshold.
    """
    t = _as_bool(truth, "truth")
    s = np.asarray(score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"truth and score differ in length: {t.shape[0]} vs {s.shape[0]}")
    return _average_precision(t.astype(np.float64), s)


def _average_precision(
    weights: npt.NDArray[np.float64], s: npt.NDArray[np.float64]
) -> float | None:
    """Average precision with soft (0..1) relevance weights; binary weights give the usual AP."""
    total = float(weights.sum())
    if total == 0:
        return None
    s = np.nan_to_num(s, nan=-np.inf)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    w_sorted = weights[order]
    tp = np.cumsum(w_sorted)
    n = np.arange(1, len(s) + 1, dtype=np.float64)
    # Keep the last index of each run of tied scores: one threshold per distinct score.
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    precision = tp[last] / n[last]
    recall = tp[last] / total
    recall_prev = np.concatenate(([0.0], recall[:-1]))
    return float(np.sum((recall - recall_prev) * precision))


def vus_pr(
    truth: ArrayLike, score: ArrayLike, max_buffer: int = 100, steps: int = 11
) -> float | None:
    """Volume under the PR surface (after Paparrizos et al., VLDB 2022), simplified.

    For buffer lengths ``l`` in ``0..max_buffer`` (``steps`` values), each event is widened by
    ``l // 2`` points on both sides with relevance decaying linearly from 1 at the event to 0 at
    the buffer's edge, and the soft-label average precision is computed; VUS-PR is their mean.
    It rewards scores that rise near (not only inside) an event. ``None`` without true anomalies.
    """
    t = _as_bool(truth, "truth")
    s = np.asarray(score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"truth and score differ in length: {t.shape[0]} vs {s.shape[0]}")
    if not t.any():
        return None
    # Distance of every point to the nearest anomalous point (0 inside an event).
    idx = np.arange(len(t), dtype=np.float64)
    last = np.maximum.accumulate(np.where(t, idx, -np.inf))
    nxt = np.minimum.accumulate(np.where(t, idx, np.inf)[::-1])[::-1]
    dist = np.minimum(idx - last, nxt - idx)
    areas = []
    for buf in np.linspace(0, max_buffer, steps):
        half = int(buf // 2)
        w = np.clip(1.0 - dist / (half + 1), 0.0, 1.0)  # half == 0 gives the plain labels
        ap = _average_precision(w, s)
        if ap is not None:
            areas.append(ap)
    return float(np.mean(areas)) if areas else None
