"""The exact threshold sweep of the builtin search, with the cool-down counting.

A rule is "a causal score reaches a threshold". The sweep scores it with an
:class:`~argos.metrics.Objective`, through one abstraction: a :class:`Part` (one train or
validation slice of one series) is a list of *events*, each with a **hit window** (an alarm
inside it catches the event) and a **weight** (what the event counts in TP, or in FN when
missed); the normal points flagged are the false alarms. :func:`part_of` builds them:

- ``event-pa``: hit window = the whole labeled event, weight 1 (:func:`argos.metrics.event_pa`);
- ``delay:K``: hit window = the first ``K + 1`` points of the event, weight = its length in points
  (a detected event becomes all TP, a missed one all FN: :func:`argos.metrics.delay_adjusted`);
- ``point``: every labeled point is its own event of weight 1 (:func:`argos.metrics.point_wise`).

The F1 of a part is ``2 TP / (2 TP + FP + FN)`` with weighted TP and FN, averaged over the parts
that have events (``Objective.score`` averaged over series). It only changes at the maximum score
of an event's hit window, so :func:`sweep` finds the best threshold of a structure in O(n log n):
two sorted arrays per part and ``searchsorted`` without a cool-down (:class:`Table`), and alarm
intervals ``(m[t], s[t]]`` with ``m`` the :func:`prior_max` of the cool-down window with one
(:class:`QuietTable`). It works optionally conditional on the flags of rules already chosen
(``base``), and places the threshold inside the gap below the optimal candidate. For few long
events with the delay objective it can maximise instead the expected F1 of the next events, whose
catch rate is shrunk towards that of a random stretch of normal points (:class:`ShrunkTable`).
:func:`threshold_counts` and :func:`flags_counts` score fixed thresholds / predictions the same
way (:class:`Counts`).

This module knows nothing of shapes or configurations: only scores, labels, objectives and
thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.metrics import EVENT_PA, Objective
from argos.rules.templates import apply_cooldown

#: How clearly a threshold candidate separates what it catches: (normal points' scores, the
#: candidate, the next lower score that matters) -> margin (larger = clearer). Breaks selection
#: ties; :func:`std_margin` in production.
MarginFn = Callable[[FloatArray, float, float], float]


@dataclass(frozen=True)
class Part:
    """Labels of one contiguous part (train or validation) of one series, as the events an
    objective scores (see the module doc): each event's hit window and weight."""

    lo: int
    hi: int
    starts: IntArray  # hit window starts (the event starts), relative to lo
    ends: IntArray  # hit window ends (exclusive), relative to lo
    normal: BoolArray  # True for points outside every labeled event (relative to lo)
    weights: IntArray  # what each event counts in TP (hit) or FN (missed)

    @property
    def n_events(self) -> int:
        return len(self.starts)

    @property
    def weight(self) -> int:
        """The total weight of the events (TP + FN of every threshold)."""
        return int(self.weights.sum())


def _events(labels: BoolArray) -> tuple[IntArray, IntArray]:
    lab = labels.astype(np.int8)
    d = np.diff(np.concatenate(([0], lab, [0])))
    return np.flatnonzero(d == 1).astype(np.int64), np.flatnonzero(d == -1).astype(np.int64)


def part_of(labels: BoolArray, lo: int, hi: int, objective: Objective = EVENT_PA) -> Part:
    """The part ``[lo, hi)`` of a series with these labels, as ``objective`` counts its events."""
    seg = labels[lo:hi]
    st, en = _events(seg)
    if objective.kind == "point":
        points = np.flatnonzero(seg).astype(np.int64)
        return Part(lo, hi, points, points + 1, ~seg, np.ones(len(points), dtype=np.int64))
    if objective.kind == "delay":
        window_ends = np.minimum(en, st + objective.delay + 1)
        return Part(lo, hi, st, window_ends, ~seg, (en - st).astype(np.int64))
    return Part(lo, hi, st, en, ~seg, np.ones(len(st), dtype=np.int64))


def event_max(s: FloatArray, part: Part) -> FloatArray:
    seg = s[part.lo : part.hi]
    if part.n_events == 0:
        return np.empty(0)
    padded = np.concatenate((seg, [-np.inf]))
    idx = np.empty(2 * part.n_events, dtype=np.int64)
    idx[0::2] = part.starts
    idx[1::2] = part.ends
    return np.maximum.reduceat(padded, idx)[0::2]


def event_hit(flags: BoolArray, part: Part) -> BoolArray:
    if part.n_events == 0:
        return np.zeros(0, dtype=bool)
    c = np.concatenate(([0], np.cumsum(flags[part.lo : part.hi])))
    return (c[part.ends] - c[part.starts]) > 0


@dataclass(frozen=True)
class Counts:
    """Per part: the weighted true positives, the false alarms and the events' total weight."""

    tp: IntArray
    fp: IntArray
    events: IntArray

    def f1(self) -> float | None:
        """Mean F1 over the parts that have events (None if none has)."""
        has = self.events > 0
        if not has.any():
            return None
        tp, fp, e = self.tp[has], self.fp[has], self.events[has]
        return float(np.mean(2 * tp / (2 * tp + fp + (e - tp))))


def threshold_counts(
    scores: Sequence[FloatArray],
    parts: Sequence[Part],
    threshold: float,
    base: Sequence[BoolArray] | None = None,
    quiet: int = 0,
) -> Counts:
    """Counts of ``score >= threshold`` (with the cool-down ``quiet``, OR-ed with the ``base``
    flags) on the given parts."""
    tp, fp, ev = [], [], []
    for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
        # a cool-down looks back before the part; without one, only the part is compared
        seg = alarm(s, threshold, quiet) if quiet else s[part.lo : part.hi] >= threshold
        flags = seg[part.lo : part.hi] if quiet else seg
        if base is not None:
            flags = flags | base[i][part.lo : part.hi]
        hit = event_hit(np.concatenate((np.zeros(part.lo, bool), flags)), part)
        tp.append(int(part.weights[hit].sum()))
        fp.append(int((flags & part.normal).sum()))
        ev.append(part.weight)
    return Counts(np.array(tp), np.array(fp), np.array(ev))


def flags_counts(flags: Sequence[BoolArray], parts: Sequence[Part]) -> Counts:
    """Counts of fixed predictions (full-length bool arrays) on the given parts."""
    tp, fp, ev = [], [], []
    for f, part in zip(flags, parts, strict=True):
        tp.append(int(part.weights[event_hit(f, part)].sum()))
        fp.append(int((f[part.lo : part.hi] & part.normal).sum()))
        ev.append(part.weight)
    return Counts(np.array(tp), np.array(fp), np.array(ev))


def std_margin(normal: FloatArray, c: float, below: float) -> float:
    """How clearly the candidate ``c`` stands above the next lower score ``below``: that gap in
    standard deviations of the normal points' scores, capped at 10 (the margin of :func:`sweep`)."""
    normal = normal[np.isfinite(normal)]
    cap = 10.0
    if not math.isfinite(below):
        return cap
    spread = float(normal.std()) if len(normal) > 1 else 0.0
    return min(cap, (c - below) / spread) if spread > 0 else cap


def sweep(
    scores: Sequence[FloatArray],
    parts: Sequence[Part],
    base: Sequence[BoolArray] | None = None,
    max_candidates: int = 4000,
    gap: float = 0.5,
    margin: MarginFn = std_margin,
    quiet: int = 0,
    max_duty: float | None = None,
    catch_prior: float | None = None,
    window: int = 1,
) -> tuple[float, float, float]:
    """The threshold maximising the mean F1 over the parts (as their events count it), and
    that F1.

    ``scores`` are directional (higher = more anomalous, ``-inf`` = never). With ``base`` (flags of
    rules already chosen, OR-ed in) the sweep counts only what the new rule adds. With ``quiet``
    the rule has that cool-down (:func:`alarm`) and the counts are the cooled-down alarms' (exact,
    :class:`QuietTable`); false alarms then no longer fall monotonically as the threshold rises
    (a lower one can merge bursts), and the candidates are the scores of the event points, so the
    optimum is the best of those, not of every threshold.

    The returned threshold sits inside the gap between the optimal candidate and the next lower
    score that matters (normal scores and event maxima), so every point of the plateau keeps its
    side; ``gap`` places it there: 0.5 = midway, smaller = nearer the candidate (fewer alarms on
    new data). Returns ``(threshold, f1, margin)``, where the margin is that gap in units of the
    standard deviation of the normal points' scores (capped at 10; :func:`std_margin`): how
    robustly the threshold separates what it catches; ``margin`` computes it from (the normal
    points' scores, the candidate, the next lower score). ``(inf, f1 of base alone or 0, 0)`` when
    no threshold helps.

    With ``catch_prior`` (no cool-down), the F1 maximised is the expected one of the next events,
    each caught with the training events' catch rate shrunk towards that of a random ``window``
    of normal points (:class:`ShrunkTable`), over every threshold, not only the event maxima.
    """
    table: Table
    if catch_prior is not None:
        if quiet:
            raise ValueError("catch_prior needs a rule without a cool-down")
        table = ShrunkTable(scores, parts, base, catch_prior, window)
    elif quiet:
        table = QuietTable(scores, parts, base, quiet)
    else:
        table = Table(scores, parts, base)
    if not table.has.any():
        return math.inf, 0.0, 0.0
    cands = table.candidates()
    if len(cands) == 0:
        return math.inf, table.base_f1, 0.0
    if max_duty is not None:
        cands = cands[_duty(table.normal(), cands) <= max_duty]
        if len(cands) == 0:
            return math.inf, table.base_f1, 0.0
    if len(cands) > max_candidates:
        cands = np.unique(np.quantile(cands, np.linspace(0, 1, max_candidates)))
    f1 = table.f1(cands)
    # highest threshold among the best (ties: the more conservative rule)
    best = int(len(f1) - 1 - np.argmax(f1[::-1]))
    if f1[best] <= table.base_f1 + 1e-12:
        return math.inf, table.base_f1, 0.0
    c = float(cands[best])
    below = -math.inf
    for arr in table.levels:
        j = int(np.searchsorted(arr, c, side="left"))
        if j > 0 and np.isfinite(arr[j - 1]):
            below = max(below, float(arr[j - 1]))
    thr = c if not math.isfinite(below) else c - gap * (c - below)
    if not thr < c and below < c:  # rounding: keep strictly within the gap
        thr = c
    return thr, float(f1[best]), margin(table.normal(), c, below)


def _duty(normal: FloatArray, cands: FloatArray) -> FloatArray:
    """For each candidate threshold, the share of the normal points whose score reaches it."""
    if len(normal) == 0:
        return np.zeros(len(cands))
    ranked = np.sort(normal)
    share: FloatArray = (len(ranked) - np.searchsorted(ranked, cands, side="left")) / len(ranked)
    return share


class Table:
    """Counts of ``score >= c`` for many thresholds ``c`` at once (no cool-down).

    Only the maximum of an event's hit window decides whether it is hit, and each normal point is
    a false alarm exactly when its own score reaches ``c``: two sorted arrays per part (the
    events' with the suffix sums of their weights) and ``searchsorted``.
    """

    def __init__(
        self,
        scores: Sequence[FloatArray],
        parts: Sequence[Part],
        base: Sequence[BoolArray] | None,
    ) -> None:
        self._start(parts)
        self.ev_sorted: list[FloatArray] = []
        self.ev_weight_above: list[FloatArray] = []  # [j] = weight of ev_sorted[j:]
        self.ne_sorted: list[FloatArray] = []
        for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
            emax = event_max(s, part)
            weights = part.weights
            normal_scores = s[part.lo : part.hi][part.normal]
            if base is not None:
                hit, bn = self._base(base[i], part, i)
                emax, weights = emax[~hit], weights[~hit]
                normal_scores = normal_scores[~bn]
            order = np.argsort(emax, kind="stable")
            above = np.cumsum(weights[order][::-1])[::-1]
            self.ev_sorted.append(emax[order])
            self.ev_weight_above.append(np.concatenate((above, [0])).astype(float))
            self.ne_sorted.append(np.sort(normal_scores))
        # the scores whose side of the threshold matters (for placing it inside the gap)
        self.levels: list[FloatArray] = [*self.ne_sorted, *self.ev_sorted]

    def _start(self, parts: Sequence[Part]) -> None:
        """The events' weight per part, and the true positives / false alarms of the rules chosen
        before."""
        self.events = np.array([p.weight for p in parts], dtype=float)
        self.has = self.events > 0
        self.tp0 = np.zeros(len(parts))
        self.fp0 = np.zeros(len(parts))

    def _base(self, b: BoolArray, part: Part, i: int) -> tuple[BoolArray, BoolArray]:
        hit = event_hit(b, part)
        bn = b[part.lo : part.hi][part.normal]
        self.tp0[i] = part.weights[hit].sum()
        self.fp0[i] = bn.sum()
        return hit, bn

    @property
    def base_f1(self) -> float:
        h = self.has
        tp0, fp0, ev = self.tp0[h], self.fp0[h], self.events[h]
        return float(np.mean(2 * tp0 / (2 * tp0 + fp0 + ev - tp0)))

    def candidates(self) -> FloatArray:
        allmax = np.concatenate(self.ev_sorted) if self.ev_sorted else np.empty(0)
        return np.unique(allmax[np.isfinite(allmax)])

    def counts(self, i: int, cands: FloatArray) -> tuple[FloatArray, FloatArray]:
        ev, ne = self.ev_sorted[i], self.ne_sorted[i]
        tp = self.tp0[i] + self.ev_weight_above[i][np.searchsorted(ev, cands, side="left")]
        fp = self.fp0[i] + len(ne) - np.searchsorted(ne, cands, side="left")
        return tp, fp

    def f1(self, cands: FloatArray) -> FloatArray:
        """Mean F1 over the parts with events, at every candidate threshold."""
        total = np.zeros(len(cands))
        for i in np.flatnonzero(self.has).tolist():
            tp, fp = self.counts(i, cands)
            total += 2 * tp / (2 * tp + fp + self.events[i] - tp)
        mean: FloatArray = total / self.has.sum()
        return mean

    def normal(self) -> FloatArray:
        return np.concatenate(self.ne_sorted) if self.ne_sorted else np.empty(0)


class ShrunkTable(Table):
    """Expected counts of ``score >= c`` on the next events, for few long events (no cool-down).

    With one to three labeled events, whether a threshold catches *those* events says little
    about the next one, and the plain sweep picks, among hundreds of shapes, the one and the
    threshold that catch them with the fewest alarms: the next event's start then often stays
    below it. Here the chance that an event is caught at threshold ``c`` is the training events'
    own catch rate shrunk towards the base rate, the share ``q(c)`` of the ``window``-point
    stretches of normal points (what an event's hit window is) holding a score ``>= c``; per
    part, with ``n`` events and ``caught(c)`` the share of their weight caught::

        p(c) = (n * caught(c) + catch_prior * q(c)) / (n + catch_prior)

    ``catch_prior`` is the weight of that prior in events (a Beta prior): the next event's
    start is taken to look, with that weight, like any other stretch of the series. It matters
    with one to three events and fades with many. The expected TP is the events' weight times
    ``p(c)``; false alarms are counted as in :class:`Table`, and the F1 is computed from them
    as usual. Every score (normal points and event maxima) is a candidate,
    since the expected F1 changes at each.
    """

    def __init__(
        self,
        scores: Sequence[FloatArray],
        parts: Sequence[Part],
        base: Sequence[BoolArray] | None,
        catch_prior: float,
        window: int,
    ) -> None:
        super().__init__(scores, parts, base)
        if catch_prior < 0 or window < 1:
            raise ValueError("catch_prior must be >= 0 and window >= 1")
        self.prior = catch_prior
        self.n_events = [p.n_events for p in parts]
        self.win_sorted: list[FloatArray] = []  # maxima of the stretches base did not catch
        self.win_base: list[int] = []  # stretches caught by base already
        self.n_win: list[int] = []
        for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
            seg, normal = s[part.lo : part.hi], part.normal
            if len(seg) < window:
                self.win_sorted.append(np.empty(0))
                self.win_base.append(0)
                self.n_win.append(0)
                continue
            ok = _all_in_window(normal, window)
            wmax = np.lib.stride_tricks.sliding_window_view(seg, window).max(axis=1)
            caught = np.zeros(len(ok), dtype=bool)
            if base is not None:
                caught = _any_in_window(base[i][part.lo : part.hi], window)
            self.win_sorted.append(np.sort(wmax[ok & ~caught]))
            self.win_base.append(int((ok & caught).sum()))
            self.n_win.append(int(ok.sum()))

    @property
    def base_f1(self) -> float:
        return float(self.f1(np.array([math.inf]))[0])

    def candidates(self) -> FloatArray:
        allmax = np.concatenate([*self.ev_sorted, *self.ne_sorted])
        return np.unique(allmax[np.isfinite(allmax)])

    def counts(self, i: int, cands: FloatArray) -> tuple[FloatArray, FloatArray]:
        tp, fp = super().counts(i, cands)
        if self.n_win[i] == 0:
            rate = np.zeros(len(cands))
        else:
            w = self.win_sorted[i]
            above = len(w) - np.searchsorted(w, cands, side="left")
            rate = (self.win_base[i] + above) / self.n_win[i]
        n = self.n_events[i]
        expected: FloatArray = (n * tp + self.prior * rate * self.events[i]) / (n + self.prior)
        return expected, fp


def _all_in_window(mask: BoolArray, window: int) -> BoolArray:
    """For each ``window``-point stretch ``[t, t + window)`` of ``mask``: whether all are set."""
    c = np.concatenate(([0], np.cumsum(mask)))
    full: BoolArray = (c[window:] - c[:-window]) == window
    return full


def _any_in_window(mask: BoolArray, window: int) -> BoolArray:
    """For each ``window``-point stretch ``[t, t + window)`` of ``mask``: whether any is set."""
    c = np.concatenate(([0], np.cumsum(mask)))
    some: BoolArray = (c[window:] - c[:-window]) > 0
    return some


class QuietTable(Table):
    """The same counts for a rule with a cool-down of ``quiet`` points.

    With ``m[t]`` the largest score of the ``quiet`` points before ``t``, point ``t`` alarms at
    threshold ``c`` exactly when ``m[t] < c <= s[t]``. So a normal point is a false alarm for
    ``c`` in ``(m[t], s[t]]``: counted as ``#(s >= c) - #(min(s, m) >= c)`` from two sorted arrays;
    and an event is hit for ``c`` in the union of the intervals of its hit window's points, marked
    per event on the sorted candidates (weighted). Exact, and O(n log n) per structure like the
    plain sweep.
    """

    def __init__(
        self,
        scores: Sequence[FloatArray],
        parts: Sequence[Part],
        base: Sequence[BoolArray] | None,
        quiet: int,
    ) -> None:
        self._start(parts)
        self.ne_sorted = []
        self.ne_held: list[FloatArray] = []  # sorted min(s, m) of the normal points
        # per part: the alarm intervals (m, s] of the event points, and each point's event
        self.iv_lo: list[FloatArray] = []
        self.iv_hi: list[FloatArray] = []
        self.iv_event: list[IntArray] = []
        self.ev_weights: list[IntArray] = []
        self.levels = []
        for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
            m = prior_max(s, quiet)[part.lo : part.hi]
            seg = s[part.lo : part.hi]
            normal = part.normal.copy()
            hit = np.zeros(part.n_events, dtype=bool)
            if base is not None:
                hit, _ = self._base(base[i], part, i)
                normal &= ~base[i][part.lo : part.hi]
            self.ne_sorted.append(np.sort(seg[normal]))
            self.ne_held.append(np.sort(np.minimum(seg[normal], m[normal])))
            # the points of the hit windows of the events still to hit, and their event
            owner = np.cumsum(np.isin(np.arange(len(seg)), part.starts)) - 1
            pending = in_windows(part)
            if part.n_events:
                pending &= ~hit[np.maximum(owner, 0)]
            idx = np.flatnonzero(pending)
            live = seg[idx] > m[idx]  # points that can alarm at some threshold
            self.iv_lo.append(m[idx][live])
            self.iv_hi.append(seg[idx][live])
            self.iv_event.append(owner[idx][live])
            self.ev_weights.append(part.weights)
            # as in the plain sweep, the gap is bounded by normal scores and event maxima (the
            # other event points only add alarms inside events), plus the points whose alarms
            # could silence the part's first ones
            before = s[max(0, part.lo - quiet) : part.lo]
            emax = event_max(s, part)[~hit]
            self.levels.append(np.sort(np.concatenate((before, seg[normal], emax))))

    def candidates(self) -> FloatArray:
        tops = np.concatenate(self.iv_hi) if self.iv_hi else np.empty(0)
        return np.unique(tops[np.isfinite(tops)])

    def counts(self, i: int, cands: FloatArray) -> tuple[FloatArray, FloatArray]:
        ne, held = self.ne_sorted[i], self.ne_held[i]
        fp = (
            self.fp0[i]
            + (len(ne) - np.searchsorted(ne, cands, side="left"))
            - (len(held) - np.searchsorted(held, cands, side="left"))
        )
        tp = self.tp0[i] + _covered_events(
            self.iv_lo[i], self.iv_hi[i], self.iv_event[i], cands, self.ev_weights[i]
        )
        return tp, fp


def in_windows(part: Part) -> BoolArray:
    """The points of the part (relative to ``lo``) inside some event's hit window."""
    mark = np.zeros(part.hi - part.lo + 1, dtype=np.int64)
    np.add.at(mark, part.starts, 1)
    np.add.at(mark, part.ends, -1)
    inside: BoolArray = np.cumsum(mark[:-1]) > 0
    return inside


def _covered_events(
    lo: FloatArray, hi: FloatArray, event: IntArray, cands: FloatArray, weights: IntArray
) -> FloatArray:
    """For each (sorted) candidate c, the weight of the events that have a point with
    ``lo < c <= hi``."""
    if len(lo) == 0:
        return np.zeros(len(cands))
    first = np.searchsorted(cands, lo, side="right")  # first candidate above lo
    stop = np.searchsorted(cands, hi, side="right")  # first candidate above hi
    keep = first < stop
    ids, ev = np.unique(event[keep], return_inverse=True)
    diff = np.zeros((len(ids), len(cands) + 1), dtype=np.int32)
    np.add.at(diff, (ev, first[keep]), 1)
    np.add.at(diff, (ev, stop[keep]), -1)
    covered = np.cumsum(diff[:, :-1], axis=1) > 0
    hits: FloatArray = (covered * weights[ids][:, None]).sum(axis=0).astype(float)
    return hits


def prior_max(score: FloatArray, quiet: int) -> FloatArray:
    """``m[t]``: the largest of ``score[t - quiet .. t - 1]`` (``-inf`` where there is none).

    Built from maxima over power-of-two widths (O(n log quiet)).
    """
    n = len(score)
    acc = np.full(n, -np.inf)
    block = np.asarray(score, dtype=float).copy()  # block[t] = max of the `width` points up to t
    width, offset, q = 1, 0, int(quiet)
    while q:
        if q & 1 and offset < n:
            np.maximum(acc[offset:], block[: n - offset], out=acc[offset:])
        offset += width if q & 1 else 0
        q >>= 1
        if q:
            nxt = block.copy()
            if width < n:
                np.maximum(nxt[width:], block[: n - width], out=nxt[width:])
            block, width = nxt, 2 * width
    out = np.full(n, -np.inf)
    out[1:] = acc[:-1]
    return out


def alarm(score: FloatArray, threshold: float, quiet: int) -> BoolArray:
    """Where a rule fires: the score reaches the threshold (with a cool-down of ``quiet`` points:
    only when it did not in the ``quiet`` points before)."""
    on = score >= threshold
    return apply_cooldown(on, quiet) if quiet else on
