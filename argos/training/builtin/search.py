"""The embedded, LLM-free rule generator: an exact threshold search over the template grammar.

For one training unit (a series, or all series of a partition) the search:

1. proposes structures from :mod:`argos.rules.templates` sized to the data (windows scaled to the
   series length, the seasonal period from the timestamps or the autocorrelation of the train
   values);
2. computes each (transform, scorer, params) score ONCE over train + validation (causal, so the
   validation part sees its real history), then for every direction and persistence sweeps ALL
   thresholds exactly: event-PA F1 as a function of the threshold only changes at the maximum score
   of a true event, so the best threshold is found in O(n log n) by sorting; every rule has a
   cool-down (it alarms once per burst: its condition must have been off for half a labeled event
   before), and the sweep counts the cooled-down alarms, still exactly and in O(n log n);
3. fits the threshold on the train part only and scores the structure on the validation part
   (selection uses validation; train F1 only breaks ties and fills in when validation has no event);
4. composes an OR of up to ``max_rules`` rules greedily: each new rule's threshold is swept
   conditionally on the events and false alarms the rules already chosen have, and it is kept only
   when it improves the selection score by ``min_gain``; then gives each chosen rule the AND gate
   (a second shape that must hold at the same point) that raises the selection score most, if by
   ``min_gain`` (units with 3 labeled events or more); no threshold may leave its condition on for
   more than ``max_duty`` of the normal points;
5. re-fits the chosen thresholds on train + validation (never test: the search never receives test
   labels) and places each threshold inside the gap below the optimal event maximum (a quarter of
   the way down by default), so it is not sitting on a training point.

Deterministic: no randomness is used except the optional ``trials`` subsampling, seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray, ProgressFn
from argos.rules.templates import (
    SCORERS,
    Direction,
    Gate,
    RuleSpec,
    Structure,
    apply_cooldown,
    compile_score,
    directional,
)

SIMPLE_SCORERS = ("band", "static", "zscore", "robust_z")
Z_SCORERS = ("zscore", "robust_z")  # thresholds in deviations, capped by SearchConfig.max_z


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
class SearchConfig:
    """Knobs of the search (defaults are what ``argos train`` uses).

    Attributes:
        persistences: consecutive points a rule must hold before it fires.
        max_rules: at most this many rules are OR-ed into the rule set.
        min_gain: an extra OR member must raise the selection score by at least this much.
        top_k: how many ranked candidates are kept in the result (for reports and composition).
        refit: re-fit the chosen thresholds on train + validation after selection.
        trials: if set, evaluate at most this many structures (a seeded random subset).
        seed: seed for ``trials`` subsampling.
        max_candidates: cap on distinct thresholds swept per structure (quantiles beyond it).
        resolution: selection scores closer than this count as a tie, broken by the margin.
        gap: where the threshold sits in the gap below the optimal event maximum (0.5: midway;
            0.25, nearer the event maximum, was better on the validation protocol).
        few_events_gap: ``gap`` for units with fewer than ``few_events`` events.
        few_events_long_gap: ``gap`` for those units when their events are long (``long_event``):
            .75 with the std margin (few-event protocol, 179 long pseudo-units: .498 vs .367 for
            .97 with the relative margin, the previous default, and .454 for .9 with the std
            margin; ``benchmarks/few_event_protocol.py``).
        few_events_order: for those units, break selection ties by simplicity (static value
            first) instead of the margin (off: the validation protocol preferred the margin).
        few_events_or: for those units, when their events are long (``long_event`` points or
            more on average), OR this many rules of different shapes, each fit on its own
            (1 = the normal composition).
        long_event: mean labeled event length (points) above which events count as long.
        val_weight: weight of the validation F1 in the selection score (the rest: train F1).
        few_events: with fewer labeled events than this (train + validation, all series), only
            the simple scorers of :data:`SIMPLE_SCORERS` on values and differences are searched.
        band: in that regime, also search a band around the train median of the values (the
            centre is fitted like the threshold: on the train part, re-fitted on train +
            validation with the thresholds). Off: on the NAB validation protocol it won ties by
            its name and lost on drifting levels (.363 vs .409), and with the relative margin
            it changed nothing (.437 both).
        few_events_margin: the margin that breaks selection ties for units with few LONG events
            (``"std"``: the gap below the threshold in standard deviations of the normal scores,
            capped at 10, as for every other unit; ``"relative"``: the share of the event
            maximum's excess over the median normal score that is clear of the next lower score,
            in [0, 1]; ``"uncapped"``: the std margin without the cap). With one event most
            shapes separate it perfectly and the capped std margin ties them all, so the rule
            name decides; ``"relative"`` won on the small NAB validation protocol (.437 vs .409)
            but lost on the few-event protocol (.367 vs .401 at gap .97, .452 vs .480 at .5), so
            ``"std"`` is the default.
        simple_first: in that regime, the simplest candidate (band, then static, ...) goes first
            unless another shape is strictly better on both train and validation (off: .355 vs
            .409 on the NAB validation protocol).
        few_events_long_shapes: for units with few LONG events, search only these (transform,
            scorer) pairs of the simple ones (``("value", "band")`` adds the band around the
            train median); None searches them all.
        cooldown: every rule alarms once per burst: an alarm needs the rule's condition off for
            the ``cooldown`` x (mean labeled event length) points before it (at least 1; 0 = no
            cool-down). Event-PA counts every alarm point outside an event as a false alarm and
            only the first inside one as useful; operators want one alert per incident too. The
            thresholds are swept with the cooled-down counts. Few-event protocol: long units .586
            vs .556 without it (.571 / .557 / .513 for .25 / 1 / 2), short .721 vs .596;
            validation protocol: Yahoo per partition .895 vs .768, KPI .764 vs .743
            (docs/generator.md).
        few_events_long_directions: the directions searched for units with few LONG events:
            one alarm anywhere in a long event is a hit, so a direction learnt from one or two
            events only risks missing the next one (``("both",)``; few-event protocol, 179 long
            units, with ``few_events_long_persistences``, before the cool-down: .559 vs .504).
        few_events_long_persistences: the persistences searched for those units (``(1,)``: a
            persistence only delays or loses the one alarm a long event needs).
        few_events_or_ties: for those units, OR the next shape (``few_events_or``) only when it
            ties the best one on selection (same ``resolution`` step): a weaker second shape
            mostly adds false alarms (few-event protocol, 179 long units: .586 / .628 mean /
            pooled vs .585 / .592; the 49 from NAB .452 vs .438).
        max_z: a z-score rule (rolling or robust) whose fitted threshold is more than this many
            deviations is dropped: it only separates its events because a window sat on one
            value (MAD or std ~ 0), and "more than 2.2e6 robust deviations" is no rule an
            operator can review (12 committed rules had 100 to 3e14 before). None keeps them.
            Few-event protocol, 179 long / 959 short units: .591 / .724 vs .586 / .721 without
            the cap (.592 / .720 at 50; the 49 from NAB .444 vs .452); validation protocol: KPI
            and Yahoo unchanged, NAB over three cuts .368 vs .392 (a known cost: docs/generator.md).
        unlabeled_cooldown: a unit with no labeled anomaly at all gets one unsupervised rule: the
            value leaves the band around its train + validation median that it kept there,
            alarming once per excursion (this cool-down, in points). Every baseline does the
            same ("beyond anything seen in training"). So does a unit whose labeled events no
            structure can catch (e.g. a burst just before the event keeps every rule in its
            cool-down). None exports no rule for such units.
            Decided on the zero-event protocol (``few_event_protocol.py --k 0``: 594 pre-test
            pseudo-units with no fitting event and one to catch; mean event-PA F1 on the 145
            long / 449 short units): 10 points .480 / .320, none .425 / .265 (= the
            static-threshold baseline's own fallback), 1 point .446 / .301, 100 points .525 /
            .255.
        max_duty: a rule's condition may hold on at most this share of the normal points it is
            fit on (before the cool-down). With a cool-down, a threshold under the noise makes
            the condition hold almost always, so the rule alarms only after a warm-up or a rare
            quiet spell, and the sweep counts such a rule as "catches the event, no false alarm"
            ("more than 0.98 standard deviations", 0.004 for one committed rule). None allows
            any threshold. Few-event protocol, 179 long / 959 short units: .601 / .727 vs .591
            / .724 without (the 49 from NAB .458 vs .444; .05: .598 / .727, .01: .601 / .726);
            validation protocol: NAB over three cuts .406 vs .368, Yahoo per partition .898 vs
            .895 (A1 .693 vs .648), KPI unchanged.
        and_gates: AND composition: each chosen rule may get a gate, a second shape that must
            hold at the same point (units with ``few_events`` events or more; see
            :func:`_add_gates`). Validation protocol: KPI .783 vs .764, Yahoo per partition .923
            vs .898, per series .762 vs .758, NAB unchanged (its units have fewer events).
    """

    persistences: tuple[int, ...] = (1, 2, 3)
    max_rules: int = 3
    min_gain: float = 0.01
    top_k: int = 10
    refit: bool = True
    trials: int | None = None
    seed: int = 0
    max_candidates: int = 4000
    resolution: float = 0.02
    few_events: int = 3
    val_weight: float = 0.5
    gap: float = 0.25
    few_events_gap: float = 0.9
    few_events_long_gap: float = 0.75
    few_events_order: bool = False
    few_events_or: int = 2
    long_event: int = 20
    band: bool = False
    few_events_margin: str = "std"
    simple_first: bool = False
    few_events_long_shapes: tuple[tuple[str, str], ...] | None = None
    cooldown: float = 0.5
    few_events_long_directions: tuple[Direction, ...] = ("both",)
    few_events_long_persistences: tuple[int, ...] = (1,)
    few_events_or_ties: bool = True
    unlabeled_cooldown: int | None = 10
    max_z: float | None = 20.0
    max_duty: float | None = 0.02
    and_gates: bool = True
    weekly: bool = True


@dataclass(frozen=True)
class Candidate:
    """A structure with its threshold fit on train and its scores.

    Attributes:
        structure: the rule shape.
        threshold: fitted on the train part.
        train_f1: event-PA F1 on train (mean over series with events), at ``threshold``.
        val_f1: event-PA F1 on validation (None when validation has no event).
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


@dataclass
class SearchResult:
    """What the search returns for one training unit.

    Attributes:
        rules: the chosen rules (OR-ed), thresholds final.
        ranking: the top candidates by selection score (single rules, thresholds fit on train).
        tried: number of (structure, direction, persistence) candidates evaluated.
        selection: selection score of the chosen OR-set (thresholds fit on train).
        train_f1 / val_f1: of the chosen OR-set with its final thresholds.
    """

    rules: list[RuleSpec]
    ranking: list[Candidate]
    tried: int
    selection: float
    train_f1: float | None
    val_f1: float | None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Event bookkeeping and the exact threshold sweep
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """Labels of one contiguous part (train or validation) of one series, as events."""

    lo: int
    hi: int
    starts: IntArray  # event starts, relative to lo
    ends: IntArray  # event ends (exclusive), relative to lo
    normal: BoolArray  # True for points outside every event (relative to lo)

    @property
    def n_events(self) -> int:
        return len(self.starts)


def _events(labels: BoolArray) -> tuple[IntArray, IntArray]:
    lab = labels.astype(np.int8)
    d = np.diff(np.concatenate(([0], lab, [0])))
    return np.flatnonzero(d == 1).astype(np.int64), np.flatnonzero(d == -1).astype(np.int64)


def _part(labels: BoolArray, lo: int, hi: int) -> _Part:
    seg = labels[lo:hi]
    st, en = _events(seg)
    return _Part(lo, hi, st, en, ~seg)


def _event_max(s: FloatArray, part: _Part) -> FloatArray:
    seg = s[part.lo : part.hi]
    if part.n_events == 0:
        return np.empty(0)
    padded = np.concatenate((seg, [-np.inf]))
    idx = np.empty(2 * part.n_events, dtype=np.int64)
    idx[0::2] = part.starts
    idx[1::2] = part.ends
    return np.maximum.reduceat(padded, idx)[0::2]


def _event_hit(flags: BoolArray, part: _Part) -> BoolArray:
    if part.n_events == 0:
        return np.zeros(0, dtype=bool)
    c = np.concatenate(([0], np.cumsum(flags[part.lo : part.hi])))
    return (c[part.ends] - c[part.starts]) > 0


@dataclass(frozen=True)
class _Counts:
    tp: IntArray
    fp: IntArray
    events: IntArray

    def f1(self) -> float | None:
        """Mean event-PA F1 over the series that have events (None if none has)."""
        has = self.events > 0
        if not has.any():
            return None
        tp, fp, e = self.tp[has], self.fp[has], self.events[has]
        return float(np.mean(2 * tp / (2 * tp + fp + (e - tp))))


def _counts(
    scores: Sequence[FloatArray],
    parts: Sequence[_Part],
    threshold: float,
    base: Sequence[BoolArray] | None = None,
    quiet: int = 0,
) -> _Counts:
    tp, fp, ev = [], [], []
    for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
        # a cool-down looks back before the part; without one, only the part is compared
        seg = _alarm(s, threshold, quiet) if quiet else s[part.lo : part.hi] >= threshold
        flags = seg[part.lo : part.hi] if quiet else seg
        if base is not None:
            flags = flags | base[i][part.lo : part.hi]
        hit = _event_hit(np.concatenate((np.zeros(part.lo, bool), flags)), part)
        tp.append(int(hit.sum()))
        fp.append(int((flags & part.normal).sum()))
        ev.append(part.n_events)
    return _Counts(np.array(tp), np.array(fp), np.array(ev))


def flags_counts(flags: Sequence[BoolArray], parts: Sequence[_Part]) -> _Counts:
    """Event-PA counts of fixed predictions (full-length bool arrays) on the given parts."""
    tp, fp, ev = [], [], []
    for f, part in zip(flags, parts, strict=True):
        tp.append(int(_event_hit(f, part).sum()))
        fp.append(int((f[part.lo : part.hi] & part.normal).sum()))
        ev.append(part.n_events)
    return _Counts(np.array(tp), np.array(fp), np.array(ev))


def sweep_threshold(
    scores: Sequence[FloatArray],
    parts: Sequence[_Part],
    base: Sequence[BoolArray] | None = None,
    max_candidates: int = 4000,
    gap: float = 0.5,
    quiet: int = 0,
    max_duty: float | None = None,
) -> tuple[float, float]:
    """The threshold maximising mean event-PA F1 over the parts, and that F1 (see :func:`sweep`)."""
    thr, f1, _ = sweep(scores, parts, base, max_candidates, gap, quiet=quiet, max_duty=max_duty)
    return thr, f1


def sweep(
    scores: Sequence[FloatArray],
    parts: Sequence[_Part],
    base: Sequence[BoolArray] | None = None,
    max_candidates: int = 4000,
    gap: float = 0.5,
    margin_kind: str = "std",
    quiet: int = 0,
    max_duty: float | None = None,
) -> tuple[float, float, float]:
    """The threshold maximising mean event-PA F1 over the parts, and that F1.

    ``scores`` are directional (higher = more anomalous, ``-inf`` = never). With ``base`` (flags of
    rules already chosen, OR-ed in) the sweep counts only what the new rule adds. With ``quiet``
    the rule has that cool-down (:func:`_alarm`) and the counts are the cooled-down alarms' (exact,
    :class:`_QuietTable`); false alarms then no longer fall monotonically as the threshold rises
    (a lower one can merge bursts), and the candidates are the scores of the event points, so the
    optimum is the best of those, not of every threshold.

    The returned threshold sits inside the gap between the optimal candidate and the next lower
    score that matters (normal scores and event maxima), so every point of the plateau keeps its
    side; ``gap`` places it there: 0.5 = midway, smaller = nearer the candidate (fewer alarms on
    new data). Returns ``(threshold, f1, margin)``, where the margin is that gap in units of the
    standard deviation of the normal points' scores (capped at 10): how robustly the threshold
    separates what it catches. ``(inf, f1 of base alone or 0, 0)`` when no threshold helps.
    ``margin_kind`` ``"relative"`` measures the margin as ``(event max - next lower score) /
    (event max - median normal score)`` instead (in [0, 1], comparable across shapes),
    ``"uncapped"`` as the std margin without its cap.
    """
    table = _QuietTable(scores, parts, base, quiet) if quiet else _Table(scores, parts, base)
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
    return thr, float(f1[best]), _margin(table.normal(), c, below, margin_kind)


def _duty(normal: FloatArray, cands: FloatArray) -> FloatArray:
    """For each candidate threshold, the share of the normal points whose score reaches it."""
    if len(normal) == 0:
        return np.zeros(len(cands))
    ranked = np.sort(normal)
    share: FloatArray = (len(ranked) - np.searchsorted(ranked, cands, side="left")) / len(ranked)
    return share


def _margin(normal: FloatArray, c: float, below: float, kind: str) -> float:
    """How clearly the candidate ``c`` stands above the next lower score ``below`` (see sweep)."""
    normal = normal[np.isfinite(normal)]
    cap = 10.0
    if kind == "relative":
        # the share of the event maximum's excess over the typical normal score that is clear of
        # the next lower score: 1 = nothing else comes near, 0 = the event barely stands out
        typical = float(np.median(normal)) if len(normal) else -math.inf
        if not math.isfinite(below) or not math.isfinite(typical) or c <= typical:
            return 1.0
        return min(1.0, (c - below) / (c - typical))
    if not math.isfinite(below):
        return cap
    spread = float(normal.std()) if len(normal) > 1 else 0.0
    cap = math.inf if kind == "uncapped" else cap
    return min(cap, (c - below) / spread) if spread > 0 else cap


class _Table:
    """Event-PA counts of ``score >= c`` for many thresholds ``c`` at once (no cool-down).

    Only an event's maximum decides whether it is hit, and each normal point is a false alarm
    exactly when its own score reaches ``c``: two sorted arrays per part and ``searchsorted``.
    """

    def __init__(
        self,
        scores: Sequence[FloatArray],
        parts: Sequence[_Part],
        base: Sequence[BoolArray] | None,
    ) -> None:
        self._start(parts)
        self.ev_sorted: list[FloatArray] = []
        self.ne_sorted: list[FloatArray] = []
        for i, (s, part) in enumerate(zip(scores, parts, strict=True)):
            emax = _event_max(s, part)
            normal_scores = s[part.lo : part.hi][part.normal]
            if base is not None:
                hit, bn = self._base(base[i], part, i)
                emax = emax[~hit]
                normal_scores = normal_scores[~bn]
            self.ev_sorted.append(np.sort(emax))
            self.ne_sorted.append(np.sort(normal_scores))
        # the scores whose side of the threshold matters (for placing it inside the gap)
        self.levels: list[FloatArray] = [*self.ne_sorted, *self.ev_sorted]

    def _start(self, parts: Sequence[_Part]) -> None:
        """Events per part, and the true positives / false alarms of the rules chosen before."""
        self.events = np.array([p.n_events for p in parts], dtype=float)
        self.has = self.events > 0
        self.tp0 = np.zeros(len(parts))
        self.fp0 = np.zeros(len(parts))

    def _base(self, b: BoolArray, part: _Part, i: int) -> tuple[BoolArray, BoolArray]:
        hit = _event_hit(b, part)
        bn = b[part.lo : part.hi][part.normal]
        self.tp0[i] = hit.sum()
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
        tp = self.tp0[i] + len(ev) - np.searchsorted(ev, cands, side="left")
        fp = self.fp0[i] + len(ne) - np.searchsorted(ne, cands, side="left")
        return tp, fp

    def f1(self, cands: FloatArray) -> FloatArray:
        """Mean event-PA F1 over the parts with events, at every candidate threshold."""
        total = np.zeros(len(cands))
        for i in np.flatnonzero(self.has).tolist():
            tp, fp = self.counts(i, cands)
            total += 2 * tp / (2 * tp + fp + self.events[i] - tp)
        mean: FloatArray = total / self.has.sum()
        return mean

    def normal(self) -> FloatArray:
        return np.concatenate(self.ne_sorted) if self.ne_sorted else np.empty(0)


class _QuietTable(_Table):
    """The same counts for a rule with a cool-down of ``quiet`` points.

    With ``m[t]`` the largest score of the ``quiet`` points before ``t``, point ``t`` alarms at
    threshold ``c`` exactly when ``m[t] < c <= s[t]``. So a normal point is a false alarm for
    ``c`` in ``(m[t], s[t]]``: counted as ``#(s >= c) - #(min(s, m) >= c)`` from two sorted arrays;
    and an event is hit for ``c`` in the union of its points' intervals, marked per event on the
    sorted candidates. Exact, and O(n log n) per structure like the plain sweep.
    """

    def __init__(
        self,
        scores: Sequence[FloatArray],
        parts: Sequence[_Part],
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
            # the points of the events still to hit, and the event each belongs to
            owner = np.cumsum(np.isin(np.arange(len(seg)), part.starts)) - 1
            pending = ~part.normal
            if part.n_events:
                pending &= ~hit[np.maximum(owner, 0)]
            idx = np.flatnonzero(pending)
            live = seg[idx] > m[idx]  # points that can alarm at some threshold
            self.iv_lo.append(m[idx][live])
            self.iv_hi.append(seg[idx][live])
            self.iv_event.append(owner[idx][live])
            # as in the plain sweep, the gap is bounded by normal scores and event maxima (the
            # other event points only add alarms inside events), plus the points whose alarms
            # could silence the part's first ones
            before = s[max(0, part.lo - quiet) : part.lo]
            emax = _event_max(s, part)[~hit]
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
        tp = self.tp0[i] + _covered_events(self.iv_lo[i], self.iv_hi[i], self.iv_event[i], cands)
        return tp, fp


def _covered_events(
    lo: FloatArray, hi: FloatArray, event: IntArray, cands: FloatArray
) -> FloatArray:
    """For each (sorted) candidate c, how many events have a point with ``lo < c <= hi``."""
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
    hits: FloatArray = covered.sum(axis=0).astype(float)
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


def _alarm(score: FloatArray, threshold: float, quiet: int) -> BoolArray:
    """Where a rule fires: the score reaches the threshold (with a cool-down of ``quiet`` points:
    only when it did not in the ``quiet`` points before)."""
    on = score >= threshold
    return apply_cooldown(on, quiet) if quiet else on


# --------------------------------------------------------------------------------------------------
# Proposing structures
# --------------------------------------------------------------------------------------------------


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


def propose_structures(
    series: Sequence[FitSeries], *, weekly: bool = True
) -> list[tuple[str, str, tuple[tuple[str, float], ...]]]:
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
    out: list[tuple[str, str, tuple[tuple[str, float], ...]]] = []
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


# --------------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------------


def _simplicity(st: Structure) -> tuple[int, int, float, int]:
    """Rank of a shape by simplicity: static value, static difference, robust z, z-score, others;
    longer windows (steadier statistics) and shorter persistence first."""
    order = {("value", "band"): -1, ("value", "static"): 0, ("diff", "static"): 1}
    rank = order.get(st.key, 2 + list(SCORERS).index(st.scorer) + 10 * (st.transform != "value"))
    dirs = {"both": 0, "up": 1, "down": 2}[st.direction]
    return (rank, st.persistence, -st.param_dict.get("window", 0.0), dirs)


def _selection(
    train_f1: float, val_counts: _Counts, val_weight: float = 0.5
) -> tuple[float | None, float]:
    vf1 = val_counts.f1()
    if vf1 is None:
        # no validation event: penalise validation false alarms against the train fit
        fp = float(val_counts.fp.sum())
        return None, train_f1 / (1.0 + 0.1 * fp)
    return vf1, (1.0 - val_weight) * train_f1 + val_weight * vf1


def search(
    series: Sequence[FitSeries],
    config: SearchConfig = SearchConfig(),
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Search the grammar for the best OR-set of rules for one training unit (see module doc)."""
    if not series:
        raise ValueError("search needs at least one series")
    train_parts = [_part(fs.labels, 0, fs.val_start) for fs in series]
    val_parts = [_part(fs.labels, fs.val_start, len(fs.values)) for fs in series]
    all_parts = [_part(fs.labels, 0, len(fs.values)) for fs in series]
    if sum(p.n_events for p in train_parts) + sum(p.n_events for p in val_parts) == 0:
        if config.unlabeled_cooldown is None:
            return SearchResult([], [], 0, 0.0, None, None, [_NO_LABEL])
        rule = _unlabeled_rule(series, config.unlabeled_cooldown)
        note = f"{_NO_LABEL}: one unsupervised rule, the value leaving the band it kept there"
        return SearchResult([rule], [], 1, 0.0, None, None, [note])
    fit_on_all = sum(p.n_events for p in train_parts) == 0
    triples = propose_structures(series, weekly=config.weekly)
    n_events = sum(p.n_events for p in all_parts)
    few = n_events < config.few_events and config.few_events_order
    margin_kind = "std"
    quiet = _quiet_points(all_parts, config)
    long = _long_events(all_parts, config)
    directions: tuple[Direction, ...] | None = None
    if n_events < config.few_events:
        # too few labeled events to choose among hundreds of shapes: keep the simple ones, and
        # lean towards recall inside the (flat) optimal threshold interval
        triples = [t for t in triples if t[1] in SIMPLE_SCORERS and t[0] in ("value", "diff")]
        shapes = config.few_events_long_shapes if long else None
        if config.band or (shapes is not None and ("value", "band") in shapes):
            center = _center(series, None if fit_on_all else "train")
            triples.insert(0, ("value", "band", (("center", center),)))
        if shapes is not None:
            triples = [t for t in triples if (t[0], t[1]) in shapes]
        config = replace(config, gap=config.few_events_long_gap if long else config.few_events_gap)
        if long:
            # one alarm anywhere inside a long event is a hit: a direction or a persistence
            # learnt from one or two events only costs recall on the next one
            margin_kind = config.few_events_margin
            directions = config.few_events_long_directions
            config = replace(config, persistences=config.few_events_long_persistences)
    if config.trials is not None and config.trials < len(triples):
        rng = np.random.default_rng(config.seed)
        keep = sorted(rng.choice(len(triples), size=config.trials, replace=False).tolist())
        triples = [triples[i] for i in keep]
    fit_parts = all_parts if fit_on_all else train_parts
    ranking: list[Candidate] = []
    tried = 0
    best_sel = -1.0
    for transform, scorer, params in triples:
        fn = compile_score(transform, scorer)
        pd_ = dict(params)
        raw = [fn(fs.values, fs.timestamps, pd_) for fs in series]
        for direction in _directions(scorer, directions):
            for k in config.persistences:
                st = Structure(transform, scorer, params, direction, k)
                scores = [directional(r, direction, k) for r in raw]
                tried += 1
                thr, tf1, margin = sweep(
                    scores,
                    fit_parts,
                    None,
                    config.max_candidates,
                    config.gap,
                    margin_kind,
                    quiet,
                    config.max_duty,
                )
                if not _reviewable(st, thr, config):
                    continue
                vc = _counts(scores, val_parts, thr, None, quiet)
                if fit_on_all:  # no train event: fit and select on train + validation together
                    vf1, sel = vc.f1(), tf1
                else:
                    vf1, sel = _selection(tf1, vc, config.val_weight)
                ranking.append(Candidate(st, thr, tf1, vf1, int(vc.fp.sum()), sel, margin))
                best_sel = max(best_sel, sel)
        if progress is not None:
            progress(tried, max(best_sel, 0.0))
    res = config.resolution
    if few:
        # Occam: among (near-)ties the simplest shape wins, before the margin
        ranking.sort(key=lambda c: (-round(c.selection / res), _simplicity(c.structure), -c.margin))
    else:
        ranking.sort(
            key=lambda c: (-round(c.selection / res), -c.margin, -c.train_f1, c.structure.name)
        )
    if not ranking:
        note = "no structure caught a labeled event"
        if config.unlabeled_cooldown is None:
            return SearchResult([], [], tried, 0.0, None, None, [note])
        rule = _unlabeled_rule(series, config.unlabeled_cooldown)
        note += ": one unsupervised rule, the value leaving the band it kept there"
        return SearchResult([rule], [], tried, 0.0, None, None, [note])
    if n_events < config.few_events and config.simple_first:
        ranking = _simple_first(ranking)
    if fit_on_all:
        chosen, sel = _compose(series, ranking, all_parts, all_parts, config, True, quiet)
        if config.and_gates and n_events >= config.few_events:
            chosen, sel = _add_gates(
                series, chosen, ranking, all_parts, all_parts, config, sel, True, quiet
            )
    else:
        chosen, sel = _compose(series, ranking, train_parts, val_parts, config, False, quiet)
        if config.and_gates and n_events >= config.few_events:
            chosen, sel = _add_gates(
                series, chosen, ranking, train_parts, val_parts, config, sel, False, quiet
            )
    final = _refit(series, chosen, all_parts, config, quiet) if config.refit else chosen
    if n_events < config.few_events and config.few_events_or > 1 and long:
        # long events: one alarm anywhere inside is a hit, so a second shape buys recall
        final = _independent_or(series, ranking, all_parts, config, quiet)
    flags = _flags(series, final)
    final_train = flags_counts(flags, train_parts).f1()
    final_val = flags_counts(flags, val_parts).f1()
    return SearchResult(final, ranking[: config.top_k], tried, sel, final_train, final_val)


_NO_LABEL = "no labeled anomaly in train/validation"


def _unlabeled_rule(series: Sequence[FitSeries], cooldown: int) -> RuleSpec:
    """The rule for a unit without any label: the value leaves the band around its train +
    validation median that it kept there (beyond the largest deviation seen, by one step of the
    data's resolution), alarming once per excursion."""
    center = _center(series, None)
    dev = np.concatenate([np.abs(fs.values - center) for fs in series])
    dev = dev[np.isfinite(dev)]
    widest = float(dev.max()) if len(dev) else 0.0
    step = data_resolution(series)
    thr = widest + step if step > 0 else float(np.nextafter(widest, math.inf))
    return RuleSpec(Structure("value", "band", (("center", center),), "both", 1), thr, cooldown)


def _center(series: Sequence[FitSeries], part: str | None) -> float:
    """The median of the unit's values on the train part (``"train"``) or train + validation."""
    vals = np.concatenate([fs.values[: fs.val_start] if part else fs.values for fs in series])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else 0.0


def _recenter(series: Sequence[FitSeries], st: Structure) -> Structure:
    """A band structure with its centre re-fitted on train + validation (others unchanged)."""
    if st.scorer != "band":
        return st
    params = tuple((k, _center(series, None) if k == "center" else v) for k, v in st.params)
    return replace(st, params=params)


def _simple_first(ranking: list[Candidate]) -> list[Candidate]:
    """The simplest shape's best candidate first, unless the top one beats it on train AND
    validation (strictly)."""
    simplest = min(_simplicity(c.structure)[0] for c in ranking)
    simple = next(c for c in ranking if _simplicity(c.structure)[0] == simplest)
    top = ranking[0]
    if top is simple:
        return ranking
    better_val = (
        top.val_f1 > simple.val_f1
        if top.val_f1 is not None and simple.val_f1 is not None
        else top.val_fp < simple.val_fp
    )
    if top.train_f1 > simple.train_f1 and better_val:
        return ranking
    return [simple, *[c for c in ranking if c is not simple]]


def _mean_event_length(parts: Sequence[_Part]) -> float:
    """Mean length (points) of the labeled events of the parts (0 when there is none)."""
    n = sum(p.n_events for p in parts)
    length = sum(int((p.ends - p.starts).sum()) for p in parts)
    return length / n if n else 0.0


def _quiet_points(parts: Sequence[_Part], config: SearchConfig) -> int:
    """The rules' cool-down in points: ``config.cooldown`` times the mean labeled event length,
    at least 1 (0 when the cool-down is off)."""
    if config.cooldown <= 0:
        return 0
    return max(1, round(config.cooldown * _mean_event_length(parts)))


def _directions(scorer: str, wanted: tuple[Direction, ...] | None) -> tuple[Direction, ...]:
    """The scorer's directions, restricted to ``wanted`` when it offers any of them."""
    own = SCORERS[scorer].directions
    keep = tuple(d for d in own if wanted is None or d in wanted)
    return keep or own


def _step(c: Candidate, config: SearchConfig) -> int:
    """The candidate's selection score in steps of ``config.resolution`` (equal = a tie)."""
    return round(c.selection / config.resolution)


def _long_events(parts: Sequence[_Part], config: SearchConfig) -> bool:
    """Whether the labeled events are long on average (``long_event`` points or more)."""
    return _mean_event_length(parts) >= config.long_event


def _scores_of(series: Sequence[FitSeries], st: Structure) -> list[FloatArray]:
    fn = compile_score(st.transform, st.scorer)
    p = st.param_dict
    return [
        directional(fn(fs.values, fs.timestamps, p), st.direction, st.persistence) for fs in series
    ]


def _gated(series: Sequence[FitSeries], st: Structure, gate: Gate | None) -> list[FloatArray]:
    """The structure's scores where the gate holds (``-inf`` elsewhere): thresholding them gives
    the AND of the two conditions, exactly as the rendered rule computes it."""
    scores = _scores_of(series, st)
    if gate is None:
        return scores
    opens = _scores_of(series, gate.structure)
    return [np.where(g >= gate.threshold, s, -np.inf) for s, g in zip(scores, opens, strict=True)]


def _flags(series: Sequence[FitSeries], rules: Sequence[RuleSpec]) -> list[BoolArray]:
    out = [np.zeros(len(fs.values), dtype=bool) for fs in series]
    for r in rules:
        for i, s in enumerate(_gated(series, r.structure, r.gate)):
            out[i] |= _alarm(s, r.threshold, r.cooldown)
    return out


def _add_gates(
    series: Sequence[FitSeries],
    chosen: Sequence[RuleSpec],
    ranking: Sequence[Candidate],
    train_parts: Sequence[_Part],
    val_parts: Sequence[_Part],
    config: SearchConfig,
    sel: float,
    in_sample: bool = False,
    quiet: int = 0,
) -> tuple[list[RuleSpec], float]:
    """AND composition: each chosen rule in turn gets the gate (a second shape that must hold at
    the same point) that raises the selection score most, if by at least ``min_gain``.

    For a gate shape, its threshold is swept with the rule's own fixed, then the rule's threshold
    again given the gate (it may go lower once the gate removes its false alarms): two exact
    sweeps, each conditional on the other rules of the set.
    """
    pool: list[Structure] = []
    for c in ranking[: 4 * config.top_k]:
        st = replace(c.structure, persistence=1)
        if st not in pool:
            pool.append(st)
    cache: dict[Structure, list[FloatArray]] = {}
    out = list(chosen)
    for i, rule in enumerate(out):
        if rule.gate is not None:
            continue
        others = out[:i] + out[i + 1 :]
        base = _flags(series, others) if others else None
        main = _scores_of(series, rule.structure)
        best: tuple[float, RuleSpec] | None = None
        for st in pool:
            if st.key == rule.structure.key:
                continue
            opens = cache.get(st)
            if opens is None:
                opens = cache[st] = _scores_of(series, st)
            masked = [
                np.where(m >= rule.threshold, g, -np.inf) for m, g in zip(main, opens, strict=True)
            ]
            g_thr, _ = sweep_threshold(
                masked, train_parts, base, config.max_candidates, config.gap, quiet, config.max_duty
            )
            if not _reviewable(st, g_thr, config):
                continue
            gated = [np.where(g >= g_thr, m, -np.inf) for m, g in zip(main, opens, strict=True)]
            thr, tf1 = sweep_threshold(
                gated, train_parts, base, config.max_candidates, config.gap, quiet, config.max_duty
            )
            if not _reviewable(rule.structure, thr, config):
                continue
            candidate = RuleSpec(rule.structure, thr, quiet, gate=Gate(st, g_thr))
            if in_sample:
                cand_sel = tf1
            else:
                flags = [_alarm(s, thr, quiet) for s in gated]
                if base is not None:
                    flags = [b | f for b, f in zip(base, flags, strict=True)]
                _, cand_sel = _selection(tf1, flags_counts(flags, val_parts), config.val_weight)
            if best is None or cand_sel > best[0]:
                best = (cand_sel, candidate)
        if best is not None and best[0] >= sel + config.min_gain:
            sel = best[0]
            out[i] = best[1]
    return out, sel


def _compose(
    series: Sequence[FitSeries],
    ranking: Sequence[Candidate],
    train_parts: Sequence[_Part],
    val_parts: Sequence[_Part],
    config: SearchConfig,
    in_sample: bool = False,
    quiet: int = 0,
) -> tuple[list[RuleSpec], float]:
    """Greedy OR: start from the best single rule, add conditionally-fit rules while they help."""
    first = ranking[0]
    chosen = [RuleSpec(first.structure, first.threshold, quiet)]
    sel = first.selection
    pool = [c.structure for c in ranking[1 : 1 + 4 * config.top_k]]
    base = _flags(series, chosen)
    while len(chosen) < config.max_rules and pool:
        best: tuple[float, RuleSpec, int] | None = None
        for j, st in enumerate(pool):
            scores = _scores_of(series, st)
            thr, tf1 = sweep_threshold(
                scores, train_parts, base, config.max_candidates, config.gap, quiet, config.max_duty
            )
            if not _reviewable(st, thr, config):
                continue
            rule = RuleSpec(st, thr, quiet)
            flags = [b | _alarm(s, thr, quiet) for b, s in zip(base, scores, strict=True)]
            if in_sample:
                cand_sel = tf1
            else:
                _, cand_sel = _selection(tf1, flags_counts(flags, val_parts), config.val_weight)
            if best is None or cand_sel > best[0]:
                best = (cand_sel, rule, j)
        if best is None or best[0] < sel + config.min_gain:
            break
        sel = best[0]
        chosen.append(best[1])
        pool.pop(best[2])
        base = _flags(series, chosen)
    return chosen, sel


def _independent_or(
    series: Sequence[FitSeries],
    ranking: Sequence[Candidate],
    all_parts: Sequence[_Part],
    config: SearchConfig,
    quiet: int = 0,
) -> list[RuleSpec]:
    """The best ``few_events_or`` candidates of different score shapes, each fit on its own."""
    out: list[RuleSpec] = []
    keys: set[tuple[str, str]] = set()
    for c in ranking:
        if c.structure.key in keys:
            continue
        if out and config.few_events_or_ties and _step(c, config) < _step(ranking[0], config):
            break  # only shapes as good as the best one add recall without adding doubt
        st = _recenter(series, c.structure)
        scores = _scores_of(series, st)
        thr, _ = sweep_threshold(
            scores, all_parts, None, config.max_candidates, config.gap, quiet, config.max_duty
        )
        if not _reviewable(st, thr, config):
            continue
        keys.add(c.structure.key)
        out.append(RuleSpec(st, thr, quiet))
        if len(out) >= config.few_events_or:
            break
    return out


def _reviewable(st: Structure, thr: float, config: SearchConfig) -> bool:
    """A finite threshold an operator can review: a z-score rule needing more than
    ``config.max_z`` deviations is a degenerate scale (a window that sat on one value), not a
    rule."""
    if not math.isfinite(thr):
        return False
    return config.max_z is None or st.scorer not in Z_SCORERS or abs(thr) <= config.max_z


def _refit(
    series: Sequence[FitSeries],
    chosen: Sequence[RuleSpec],
    all_parts: Sequence[_Part],
    config: SearchConfig,
    quiet: int = 0,
) -> list[RuleSpec]:
    """Re-fit the thresholds in order on train + validation, each given the earlier ones."""
    out: list[RuleSpec] = []
    base: list[BoolArray] | None = None
    for r in chosen:
        st = _recenter(series, r.structure)
        scores = _gated(series, st, r.gate)
        thr, _ = sweep_threshold(
            scores, all_parts, base, config.max_candidates, config.gap, quiet, config.max_duty
        )
        if not math.isfinite(thr):
            continue  # adds nothing on train + validation once the earlier rules are in
        if not _reviewable(st, thr, config):
            st, thr = r.structure, r.threshold  # keep the train fit
            scores = _gated(series, st, r.gate)
        out.append(RuleSpec(st, thr, quiet, gate=r.gate))
        new = [_alarm(s, thr, quiet) for s in scores]
        base = new if base is None else [b | f for b, f in zip(base, new, strict=True)]
    return out
