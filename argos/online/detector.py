"""The online detector: exported rule sets on live metric streams, with exactly the batch labels.

A :class:`Detector` owns one loaded rule set, a :class:`~argos.sandbox.kernel.RuleEngine` that runs
the rules (isolated workers, or this process for proved builtin templates: see "Where rules run"
below) and the per-series stream state kept in the parent: the last accepted timestamp
(ordering) and the post-processing state (runs, cool-down, incidents). The rules' history
buffers live in the engine (``max(LOOKBACK) - 1`` points per series).

Semantics (see ``docs/detector.md``):

* **Finite lookback.** A rule's label at point ``t`` may depend only on points
  ``t - LOOKBACK + 1 .. t``. Then labelling new points with a buffer of the last ``LOOKBACK - 1``
  points gives exactly the labels of running the rule on the whole series. When a rule set is
  loaded, every rule is checked on a deterministic synthetic sample by streaming it in irregular
  micro-batches and comparing with one batch run; a rule that differs is flagged
  ``stream_exact=False`` (an error by default; a logged warning with ``strict=False``).
* **Packing.** Exact rules that also give the same labels when run once over the concatenated
  windows of several series (checked with three unlike samples) are *packed*: one call per push
  for all series with a full history, instead of one call per series.
* **Ordering.** Points may interleave across series; within a series timestamps must increase.
  A point whose timestamp equals the last accepted one is a ``duplicate``, an older one is
  ``late``, a non-finite value is ``invalid``: all three are dropped, counted and reported with
  their status, never an exception.
* **Combination.** ``or``: a point is raw-anomalous when any rule fires. ``fusion``: rules carry a
  role ``base``/``fn``/``fp``; raw = (base and no FP-rule fires) or (not base and an FN-rule fires).
  When the base is an external detector (``method:NAME``, ``csv:FILE``), its label comes with each
  point (``Point.base``; a missing one counts as normal and is counted as ``missing_base``).
* **Post-processing** (:mod:`argos.online.postprocess`, counted in points, causal, identical in
  batch and stream): ``min_duration`` (a point is anomalous once the raw label has held for that
  many consecutive points), ``cooldown`` (an anomalous point raises an *alert* only if no alert
  was raised in the previous ``cooldown`` points of the series) and ``incident_gap`` (anomalous
  points separated by at most that many normal points belong to the same incident).
* **Explanations.** Every anomalous point names the rules that fired and each rule's stated
  abnormal condition (the ``Abnormal:`` part of its docstring).
* **Fresh processes for the checks.** With isolated workers the batch references of both checks
  run in a second engine, started beside the serving one and closed after the checks: a rule
  that remembers labels across calls (a cache keyed by timestamps) cannot replay its batch
  answers in the streamed run. Each rule runs in its own process (:mod:`argos.sandbox.workers`).
* **Where rules run** (:data:`Isolation`). ``worker``: every rule in its own locked-down
  process. ``auto`` (the commands' default): a rule whose file is byte for byte a builtin
  template rendering (:func:`argos.rules.recognise.trusted_template`) is our own code and runs in
  this process, every other rule in its own worker (:class:`~argos.sandbox.mixed.MixedEngine`
  when a set has both). ``inprocess``: every rule here, for rule sets a human reviewed.
* **Alarm-rate guard.** A rule whose alarm rate over a window of streamed points jumps far above
  its rate on the verification sample (an alert storm: e.g. a rule that behaved at load and turns
  hostile later) is quarantined (:class:`AlarmRateGuard`): its labels are ``False`` until the
  rule set is reloaded, and :meth:`Detector.describe` and the service's metrics say so. Rules
  the engine quarantined for their time budget are reported the same way.

Rule sets are read and verified by :mod:`argos.online.rulesets`.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.data.series import Series
from argos.online.checks import (
    AlarmRateGuard,
    StreamExactness,
    packable_rules,
    stream_exactness,
    verification_sample,
)
from argos.online.engines import start_engines, trusted_rule_ids
from argos.online.points import Point, PointResult, PointStatus, point_results
from argos.online.postprocess import (
    PostProcessing,
    PostState,
    SeriesState,
    SeriesTable,
    post_process,
    post_process_point,
)
from argos.online.rulesets import LoadedRuleSet, load_rules
from argos.rules.artifacts import Role, RuleSetError
from argos.sandbox.kernel import (
    EngineResult,
    InProcessEngine,
    RuleEngine,
    RuleError,
    SeriesBatch,
    push_together,
)
from argos.sandbox.workers import WorkerLimits

__all__ = [
    "ISOLATIONS",
    "BatchDetection",
    "Detector",
    "Isolation",
    "combine",
    "fired_rule_ids",
]

log = logging.getLogger(__name__)


@dataclass
class BatchDetection:
    """Labels of a whole series: per rule, combined raw, and post-processed; ``errors`` are the
    rules that failed on it, with their messages (a failing rule's labels count as false)."""

    rule_ids: tuple[str, ...]
    rule_labels: BoolArray  # [n_rules, n]
    raw: BoolArray
    anomaly: BoolArray
    alert: BoolArray
    incident: IntArray
    errors: list[RuleError] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------------------------


Isolation = Literal["auto", "worker", "inprocess"]
"""Where a rule set's rules run: ``worker`` (every rule in its own locked-down process),
``inprocess`` (every rule in this process: trusted rule sets only) or ``auto`` (a rule whose file
is byte for byte a builtin template rendering in this process, every other rule in its own
worker; :func:`argos.online.engines.trusted_rule_ids`)."""

ISOLATIONS: tuple[Isolation, ...] = ("auto", "worker", "inprocess")


@dataclass(frozen=True)
class DetectorSettings:
    """How a rule set is run: what :meth:`Detector.open` takes besides the folder, and what a
    :class:`~argos.online.fleet.Fleet` applies to every set it opens.

    ``isolation="worker"`` (default) runs the rules in locked-down worker processes (one per
    rule; ``workers`` shards the series, ``limits`` bounds each call); ``"inprocess"`` runs them
    in this process and is for trusted rules only; ``"auto"`` runs the proved builtin-template
    renderings in this process and every other rule in its own worker (:data:`Isolation`).
    ``post`` is the alarm post-processing. With ``verify``, the load-time checks run
    (stream-exactness and packing), their batch references in a second engine of fresh
    processes, closed after them; ``strict`` refuses a set with a rule that is not stream-exact
    (else a logged warning).
    """

    isolation: Isolation = "worker"
    workers: int = 1
    limits: WorkerLimits | None = None
    post: PostProcessing = field(default_factory=PostProcessing)
    verify: bool = True
    strict: bool = True


def combine(
    rule_labels: BoolArray,
    roles: Sequence[Role],
    combination: Literal["or", "fusion"],
    base: BoolArray | None = None,
) -> BoolArray:
    """Combine per-rule labels ``[n_rules, n]`` into one raw label per point.

    For a fusion whose base is an external detector, ``base`` holds its labels.
    """
    n = rule_labels.shape[1]
    if combination == "or":
        if rule_labels.shape[0] == 0:
            return np.zeros(n, dtype=np.bool_)
        return np.asarray(rule_labels.any(axis=0), dtype=np.bool_)
    role = np.asarray(roles, dtype=object)
    if base is None:
        base = rule_labels[role == "base"].any(axis=0)
    fn = rule_labels[role == "fn"].any(axis=0)
    fp = rule_labels[role == "fp"].any(axis=0)
    return np.asarray((base & ~fp) | (~base & fn), dtype=np.bool_)


def fired_rule_ids(
    fired_at: BoolArray, rule_ids: Sequence[str], patterns: dict[int, tuple[str, ...]]
) -> list[tuple[str, ...]]:
    """The ids of the rules whose label is true in each column of ``fired_at`` (rules x points),
    in rule order. Up to 62 rules, each column's pattern is read as the bits of one integer and
    its ids looked up in ``patterns`` (filled as new patterns appear), one lookup a point."""
    if len(rule_ids) > 62:
        return [tuple(rule_ids[r] for r in np.flatnonzero(c).tolist()) for c in fired_at.T]
    bits = 1 << np.arange(len(rule_ids), dtype=np.int64)
    out = []
    for code in (bits @ fired_at).tolist():
        names = patterns.get(code)
        if names is None:
            names = patterns[code] = tuple(r for i, r in enumerate(rule_ids) if code >> i & 1)
        out.append(names)
    return out


_NO_T: IntArray = np.zeros(0, dtype=np.int64)
_NO_V: FloatArray = np.zeros(0, dtype=np.float64)


@dataclass
class _Admitted:
    """A push past the ordering policy: results so far (dropped points), the accepted points'
    series (``names``, their ``slots`` in the :class:`SeriesTable`), their input positions
    grouped by series (``order``, ``bounds``: series ``j`` is ``order[bounds[j]:bounds[j + 1]]``),
    the accepted points' fields in that order and the engine items."""

    points: Sequence[Point]
    results: list[PointResult | None]
    names: list[str]
    slots: IntArray
    order: Sequence[int]
    bounds: Sequence[int]
    fields: tuple[list[str], list[int], list[float]]
    """Series, timestamp and value of each accepted point, in ``order``."""
    items: SeriesBatch
    run: slice | None = None
    """``slots`` as a slice when they are consecutive slots in order (a scrape of series that
    joined together): the table's arrays then read and write them as views."""

    def done(self) -> list[PointResult]:
        """The results in input order (every point has one once the push is complete)."""
        return [r for r in self.results if r is not None]


def _quiet_rows(key: str, adm: _Admitted) -> Iterable[tuple[Any, ...]]:
    """The result fields of a scrape's points when no rule fired (:meth:`Detector._settle_quiet`),
    in input order (:func:`~argos.online.points.point_results` makes the results)."""
    series_l, ts_l, values_l = adm.fields
    no: tuple[str, ...] = ()
    return zip(
        series_l,
        ts_l,
        values_l,
        repeat("ok"),
        repeat(False),
        repeat(False),
        repeat(False),
        repeat(0),
        repeat(no),
        repeat(no),
        repeat(key),
        repeat(""),
    )


class Detector:
    """Streaming and batch detection with one rule set (thread-safe).

    Use :meth:`open` to load a folder. ``push`` is the streaming entry point; ``detect_arrays``
    and ``detect`` (the :class:`argos.methods.FittedDetector` protocol) label whole series
    statelessly and give the same labels as streaming the series from its first point.

    ``reference`` is a second engine of fresh processes for the load-time checks' batch runs
    (closed after them; :meth:`open` starts one); ``guard`` the alarm-rate guard's thresholds
    (:class:`~argos.online.checks.AlarmRateGuard`, default thresholds when omitted). The engine
    is closed when the constructor raises.
    """

    def __init__(
        self,
        ruleset: LoadedRuleSet,
        engine: RuleEngine,
        *,
        post: PostProcessing | None = None,
        verify: bool = True,
        strict: bool = True,
        key: str = "",
        reference: RuleEngine | None = None,
        guard: AlarmRateGuard | None = None,
    ) -> None:
        self._reference: RuleEngine | None = reference
        try:
            self._setup(ruleset, engine, post, key, guard)
            if verify:
                self._verify(strict)
        except BaseException:
            engine.close()
            raise
        finally:
            if reference is not None:
                reference.close()
            self._reference = None

    def _setup(
        self,
        ruleset: LoadedRuleSet,
        engine: RuleEngine,
        post: PostProcessing | None,
        key: str,
        guard: AlarmRateGuard | None,
    ) -> None:
        self.ruleset = ruleset
        self.key = key or Path(ruleset.directory).name
        """The name results carry (``PointResult.ruleset``): a fleet's key, else the folder name."""
        self.engine = engine
        self.post = post or PostProcessing()
        if engine.load_errors:
            detail = "; ".join(f"{k}: {v}" for k, v in engine.load_errors.items())
            raise RuleSetError(f"{ruleset.directory}: rules failed to load: {detail}")
        self.rule_ids = engine.rule_ids
        by_id = {r.id: r for r in ruleset.rules}
        self.conditions = {r.id: r.condition for r in ruleset.rules}
        self.roles: list[Role] = [by_id[i].role for i in self.rule_ids]
        self._lock = threading.Lock()
        self._series = SeriesTable()
        self._known_slots: tuple[list[str], int, IntArray, slice | None] | None = None
        """The series list of the last scrape, the table's layout then, their slots and those
        as a slice when they are consecutive (:attr:`_Admitted.run`)."""
        self._fired_patterns: dict[int, tuple[str, ...]] = {}
        self.counters: Counter[str] = Counter()
        self.rule_errors: Counter[str] = Counter()
        self.rule_fired: Counter[str] = Counter()
        self.last_errors: dict[str, str] = {}
        self.exactness: dict[str, StreamExactness] = {}
        self.guard = guard if guard is not None else AlarmRateGuard()
        self.baseline: dict[str, float] = {}
        """Each rule's alarm rate on the verification sample (the guard's reference)."""
        self._window_points = 0
        self._window_alarms = np.zeros(len(self.rule_ids), dtype=np.int64)

    def _verify(self, strict: bool) -> None:
        """The load-time checks: stream-exactness (refuse or warn), then packing."""
        self.exactness = self.check_stream_exact()
        bad = [e for e in self.exactness.values() if not e.exact]
        if bad and strict:
            raise RuleSetError(
                "rules are not stream-exact (label depends on more than LOOKBACK points): "
                + "; ".join(f"{e.rule_id}: {e.detail}" for e in bad)
            )
        for e in bad:
            log.warning(
                "NOT CAUSAL, running anyway (strict=False): rule %s is not stream-exact: %s",
                e.rule_id,
                e.detail,
            )
        exact = [e.rule_id for e in self.exactness.values() if e.exact]
        packable = self.check_packing(exact) if exact else set()
        self.engine.set_packed(sorted(packable))
        for rid in packable:
            e = self.exactness[rid]
            self.exactness[rid] = StreamExactness(rid, e.exact, e.detail, packed=True)

    @classmethod
    def open(
        cls,
        directory: str | Path,
        settings: DetectorSettings | None = None,
        *,
        key: str = "",
        guard: AlarmRateGuard | None = None,
    ) -> Detector:
        """Load a rule-set folder and start its engine, run as ``settings`` say
        (:class:`DetectorSettings`; its defaults when omitted). ``key`` names the set in results
        (default: the folder's name).
        """
        s = settings or DetectorSettings()
        if s.isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, not {s.isolation!r}")
        rs = load_rules(directory)
        codes = [r.to_code() for r in rs.rules]
        if s.isolation == "worker":
            trusted: list[str] = []
        elif s.isolation == "inprocess":
            trusted = [c.id for c in codes]
        else:
            trusted = trusted_rule_ids(rs)
        recognised = s.isolation == "auto"
        engine, reference = start_engines(codes, trusted, s.workers, s.limits, s.verify, recognised)
        return cls(
            rs,
            engine,
            post=s.post,
            verify=s.verify,
            strict=s.strict,
            key=key,
            reference=reference,
            guard=guard,
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def stream_exact(self) -> dict[str, bool]:
        """Per rule: did the finite-lookback check pass (missing when not checked)."""
        return {k: v.exact for k, v in self.exactness.items()}

    def describe(self) -> dict[str, Any]:
        """Rule set summary plus isolation and stream-exactness (for the API and CLI)."""
        out = self.ruleset.summary()
        out["isolation"] = self.engine.isolation
        out["post_processing"] = self.post.model_dump()
        quarantined = self.engine.quarantined
        out["quarantined"] = dict(quarantined)
        for r in out["rules"]:
            r["quarantined"] = quarantined.get(r["id"])
            e = self.exactness.get(r["id"])
            r["stream_exact"] = None if e is None else e.exact
            r["packed"] = False if e is None else e.packed
            if e is not None and not e.exact:
                r["stream_exact_detail"] = e.detail
        return out

    # -- checks -------------------------------------------------------------------------------
    def check_stream_exact(
        self, timestamps: IntArray | None = None, values: FloatArray | None = None
    ) -> dict[str, StreamExactness]:
        """Stream a sample in irregular micro-batches and compare with one batch run, per rule
        (:func:`argos.online.checks.stream_exactness`; :func:`verification_sample` unless a
        sample is given). The batch run goes through the reference engine of fresh processes
        when there is one; its alarm rates become the guard's :attr:`baseline`."""
        if timestamps is None or values is None:
            timestamps, values = verification_sample()
        with self._lock:
            out, self.baseline = stream_exactness(
                self.engine, self._reference or self.engine, self.rule_ids, timestamps, values
            )
        return out

    def check_packing(self, rule_ids: Sequence[str]) -> set[str]:
        """Which of these (stream-exact) rules give the same labels when run once over the
        concatenated windows of several series (:func:`argos.online.checks.packable_rules`)."""
        with self._lock:
            return packable_rules(
                self.engine, self._reference or self.engine, self.rule_ids, rule_ids
            )

    # -- batch --------------------------------------------------------------------------------
    def detect_arrays(
        self, timestamps: IntArray, values: FloatArray, base: BoolArray | None = None
    ) -> BatchDetection:
        """Label a whole series at once (stateless; same labels as streaming it from the start).

        Timestamps must be strictly increasing and values finite (a ``ValueError`` says where
        not): batch input is one clean series, unlike a stream. ``base`` is the external base
        detector's labels, required exactly when the rule set fuses with an external base.
        """
        t = np.asarray(timestamps, dtype=np.int64)
        v = np.asarray(values, dtype=np.float64)
        if t.shape != v.shape or t.ndim != 1:
            raise ValueError(f"timestamps {t.shape} and values {v.shape} must be equal 1-d")
        base_arr: BoolArray | None = None
        if self.ruleset.external_base is not None:
            if base is None:
                raise ValueError(
                    f"this rule set corrects an external base detector "
                    f"({self.ruleset.external_base}); pass its labels as base"
                )
            base_arr = np.asarray(base, dtype=np.bool_)
            if base_arr.shape != v.shape:
                raise ValueError(f"base has shape {base_arr.shape}, values {v.shape}")
        elif base is not None:
            raise ValueError("this rule set has no external base detector; do not pass base")
        if len(t) > 1 and not (np.diff(t) > 0).all():
            i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
            raise ValueError(f"timestamps must be strictly increasing; index {i} is not")
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"values must be finite; index {i} is {v[i]}")
        res = self.engine.batch([(t, v)])
        labels = res.labels[0]
        self._count_errors(res)
        raw = combine(labels, self.roles, self.ruleset.combination, base_arr)
        anomaly, alert, incident = post_process(raw, PostState(), self.post)
        return BatchDetection(
            self.rule_ids,
            labels,
            raw,
            anomaly,
            alert,
            incident,
            list(res.errors),
        )

    def detect(self, series: Series) -> BoolArray:
        """The :class:`argos.methods.FittedDetector` protocol: post-processed labels of every
        point."""
        return self.detect_arrays(series.timestamps, series.values).anomaly

    # -- streaming ----------------------------------------------------------------------------
    def push(self, points: Sequence[Point]) -> list[PointResult]:
        """Process a micro-batch of points (any mix of series); results in input order.

        Points of one series must be in time order; late, duplicate and non-finite points are
        dropped with their status. All series in the batch go to the engine at once (one
        request per rule worker).
        """
        if not points:
            return []
        with self._lock:
            return self._push_locked(points)

    def _push_locked(self, points: Sequence[Point]) -> list[PointResult]:
        admitted = self._admit(points)
        if not admitted.items:
            return admitted.done()
        return self._complete(admitted, self.engine.push(admitted.items))

    @classmethod
    def push_together(
        cls,
        parts: Sequence[tuple[Detector, Sequence[Point]]],
        series: Sequence[list[str]] | None = None,
    ) -> list[list[PointResult]]:
        """:meth:`push` of several detectors whose rules all run in this process (the sets of
        a fleet), at once: their engines' steady rows are labelled together, so rules of
        different sets that share a template score compute it once
        (:func:`argos.sandbox.kernel.push_together`). Each detector's results are those its own
        push gives. Every detector's engine must be an :class:`InProcessEngine`. ``series``:
        each part's points' series ids, when the caller has them (a steady scrape passes the
        same lists push after push, and each detector then reuses the slots it found for them,
        see :meth:`_admit`)."""
        engines: list[InProcessEngine] = []
        for det, _ in parts:
            if not isinstance(det.engine, InProcessEngine):
                raise TypeError(f"rule set {det.key} does not run in this process")
            engines.append(det.engine)
        locks = [d._lock for d in sorted({id(d): d for d, _ in parts}.values(), key=id)]
        taken = 0
        try:
            for lock in locks:  # one order for every caller: no deadlock
                lock.acquire()
                taken += 1
            admitted = (
                [det._admit(pts) for det, pts in parts]
                if series is None
                else cls._admit_scrapes(parts, series)
            )
            todo = [i for i, adm in enumerate(admitted) if adm.items]
            labelled = push_together([(engines[i].kernel, admitted[i].items) for i in todo])
            out: list[list[PointResult]] = [[] for _ in admitted]
            quiet: list[int] = []
            for i, res in zip(todo, labelled, strict=True):
                if parts[i][0]._settle_quiet(admitted[i], res):
                    quiet.append(i)
                else:
                    out[i] = parts[i][0]._complete(admitted[i], res)
            # the results of every quiet set in one call
            made = point_results(
                itertools.chain.from_iterable(
                    _quiet_rows(parts[i][0].key, admitted[i]) for i in quiet
                )
            )
            a = 0
            for i in quiet:
                b = a + len(admitted[i].order)
                out[i] = made[a:b]
                a = b
            for i, adm in enumerate(admitted):
                if not adm.items:
                    out[i] = adm.done()
            return out
        finally:
            for lock in locks[:taken]:
                lock.release()

    @staticmethod
    def _admit_scrapes(
        parts: Sequence[tuple[Detector, Sequence[Point]]], series: Sequence[list[str]]
    ) -> list[_Admitted]:
        """:meth:`_admit` of each part (``series``: its points' series ids), the timestamps and
        values of all parts' points read in one pass and made into one array each (each
        part's are a slice of them)."""
        ts = [p.timestamp for _, pts in parts for p in pts]
        vs = [p.value for _, pts in parts for p in pts]
        t_all = np.array(ts, dtype=np.int64)
        v_all = np.array(vs, dtype=np.float64)
        finite = bool(np.isfinite(v_all).all())
        out: list[_Admitted] = []
        a = 0
        for (det, pts), names in zip(parts, series, strict=True):
            b = a + len(pts)
            fields = (ts[a:b], vs[a:b], t_all[a:b], v_all[a:b])
            adm = det._admit_scrape(pts, names, fields, finite) if b - a > 1 else None
            out.append(det._admit(pts, names) if adm is None else adm)
            a = b
        return out

    def _admit(self, points: Sequence[Point], names: list[str] | None = None) -> _Admitted:
        """The ordering policy: drop late, duplicate and non-finite points (with their status),
        group the others by series, as engine items. A scrape of known series (one finite,
        newer point each: the steady state) is checked and recorded with a few array
        operations. ``names``: the points' series ids, when the caller has them; given the same
        list object as the last scrape, the slots found for it then are reused while no series
        has gained or lost its slot since (:attr:`SeriesTable.layout`)."""
        if len(points) < 2:
            return self._admit_each(points)
        admitted = self._admit_scrape(points, names)
        return self._admit_each(points) if admitted is None else admitted

    def _admit_scrape(
        self,
        points: Sequence[Point],
        names: list[str] | None,
        fields: tuple[list[int], list[float], IntArray, FloatArray] | None = None,
        finite: bool = False,
    ) -> _Admitted | None:
        """:meth:`_admit` of a scrape of known series (one finite, newer point each), or None
        when the points are not one. ``fields``: their timestamps and values as lists and as
        arrays, when the caller has them; ``finite``: every value is known to be finite."""
        n = len(points)
        table = self._series
        known = self._known_slots
        if names is None or known is None or known[0] is not names or known[1] != table.layout:
            names = [p.series for p in points] if names is None else names
            slots = table.slots(names)
            known = None
            if min(slots) >= 0 and len(set(slots)) == n:
                at = np.array(slots, dtype=np.int64)
                run = (
                    slice(slots[0], slots[0] + n)
                    if slots == list(range(slots[0], slots[0] + n))
                    else None
                )
                known = self._known_slots = (names, table.layout, at, run)
        if known is not None:
            at, run = known[2], known[3]
            where = at if run is None else run
            if fields is None:
                ts = [p.timestamp for p in points]
                vs = [p.value for p in points]
                t_all = np.array(ts, dtype=np.int64)
                v_all = np.array(vs, dtype=np.float64)
            else:
                ts, vs, t_all, v_all = fields
            newer = t_all > table.last_ts[where]
            if not finite:
                newer &= np.isfinite(v_all)
            if np.count_nonzero(newer) == n:  # count_nonzero: the cheapest reduction
                table.last_ts[where] = t_all
                return _Admitted(
                    points,
                    [None] * n,
                    names,
                    at,
                    range(n),
                    range(n + 1),
                    (names, ts, vs),
                    SeriesBatch(names, t_all, v_all, range(n + 1)),
                    run,
                )
        return None

    def _admit_each(self, points: Sequence[Point]) -> _Admitted:
        """:meth:`_admit` point by point (new series, dropped points, several points of a
        series)."""
        table = self._series
        results: list[PointResult | None] = [None] * len(points)
        groups: dict[str, list[int]] = {}
        isfinite = math.isfinite
        for i, p in enumerate(points):
            series, ts = p.series, p.timestamp
            if not isfinite(p.value):
                results[i] = PointResult(series, ts, p.value, "invalid", ruleset=self.key)
                self.counters["dropped_invalid"] += 1
                continue
            j = table.slot(series)
            if j < 0:
                table.add(series, ts)
            else:
                last = int(table.last_ts[j])
                if ts <= last:
                    status: PointStatus = "duplicate" if ts == last else "late"
                    results[i] = PointResult(series, ts, p.value, status, ruleset=self.key)
                    self.counters[f"dropped_{status}"] += 1
                    continue
                table.last_ts[j] = ts
            group = groups.get(series)
            if group is None:
                groups[series] = [i]
            else:
                group.append(i)
        names = list(groups)
        order = [i for s in names for i in groups[s]]
        bounds = [0, *itertools.accumulate(len(groups[s]) for s in names)]
        accepted = [points[i] for i in order]
        ts_l = [p.timestamp for p in accepted]
        vs_l = [p.value for p in accepted]
        return _Admitted(
            points,
            results,
            names,
            np.array(table.slots(names), dtype=np.int64),
            order,
            bounds,
            ([p.series for p in accepted], ts_l, vs_l),
            SeriesBatch(
                names,
                np.array(ts_l, dtype=np.int64) if ts_l else _NO_T,
                np.array(vs_l, dtype=np.float64) if vs_l else _NO_V,
                bounds,
            ),
        )

    def _settle_quiet(self, adm: _Admitted, res: EngineResult) -> bool:
        """When no rule fired on a scrape (one accepted point per series, every point accepted,
        no rule error, plain OR without an external base): its bookkeeping, and True; its
        results are then :func:`_quiet_rows`. Else nothing, and False (:meth:`_complete`)."""
        n = len(adm.order)
        if (
            res.errors
            or self.ruleset.external_base is not None
            or self.ruleset.combination != "or"
            or len(adm.names) != n
            or n != len(adm.points)
            or not isinstance(adm.order, range)
        ):
            return False
        labels = res.all_labels()
        if np.count_nonzero(labels):
            return False
        self._series.pos[adm.slots if adm.run is None else adm.run] += 1
        self.counters["points"] += n
        self.counters["anomalies"] += 0  # present from the first push, as _complete makes them
        self.counters["alerts"] += 0
        self._watch_alarm_rate(labels, False)
        return True

    def _complete(self, adm: _Admitted, res: EngineResult) -> list[PointResult]:
        """Combine the engine's labels, post-process them per series and build the results."""
        if self._settle_quiet(adm, res):
            return point_results(_quiet_rows(self.key, adm))
        points, results, names, order, bounds = (
            adm.points,
            adm.results,
            adm.names,
            adm.order,
            adm.bounds,
        )
        self._count_errors(res)
        errs_by_item: dict[int, tuple[str, ...]] = {}
        for e in res.errors:
            errs_by_item[e.item] = (*errs_by_item.get(e.item, ()), e.rule_id)
        # combine and post-process all series at once; only series with raw alarms loop, and a
        # push without any alarm (the common case) costs no per-point numpy work
        n = len(order)
        labels = res.all_labels()
        base: BoolArray | None = None
        if self.ruleset.external_base is not None:
            given = [points[i].base for i in order]
            missing = given.count(None)
            if missing:
                self.counters["missing_base"] += missing
            base = np.array([bool(b) for b in given], dtype=np.bool_)
        fired_any = bool(np.count_nonzero(labels))
        one_each = len(names) == n
        if fired_any or base is not None or self.ruleset.combination != "or":
            raw = combine(labels, self.roles, self.ruleset.combination, base)
            raw_any = bool(np.count_nonzero(raw))
        else:  # no rule fired and "or": nothing is raw-anomalous
            raw, raw_any = np.zeros(n, dtype=np.bool_), False
        # every series' position advances by its points; a series with raw alarms then
        # post-processes them from the position it had before this push
        table, at = self._series, adm.slots
        if one_each:
            table.pos[at if adm.run is None else adm.run] += 1
        elif n:
            ends = np.asarray(bounds, dtype=np.int64)
            table.pos[at] += ends[1:] - ends[:-1]
        if raw_any and one_each:  # a scrape with alarms: one step per series, no arrays
            post = self.post
            raw_l = raw.tolist()
            anomaly_l, alert_l, incident_l = [False] * n, [False] * n, [0] * n
            for j in np.flatnonzero(raw).tolist():
                st = table.post_state(names[j], int(table.pos[at[j]]) - 1)
                anomaly_l[j], alert_l[j], incident_l[j] = post_process_point(True, st, post)
            n_anomalies, n_alerts = anomaly_l.count(True), alert_l.count(True)
        elif raw_any:
            anomaly = np.zeros(n, dtype=np.bool_)
            alert = np.zeros(n, dtype=np.bool_)
            incident = np.zeros(n, dtype=np.int64)
            at_raw = np.searchsorted(bounds, np.flatnonzero(raw), side="right") - 1
            for j in sorted(set(at_raw.tolist())):
                a, b = bounds[j], bounds[j + 1]
                st = table.post_state(names[j], int(table.pos[at[j]]) - (b - a))
                anomaly[a:b], alert[a:b], incident[a:b] = post_process(raw[a:b], st, self.post)
            anomaly_l, alert_l, raw_l = anomaly.tolist(), alert.tolist(), raw.tolist()
            incident_l = incident.tolist()
            n_anomalies, n_alerts = int(anomaly.sum()), int(alert.sum())
        else:
            anomaly_l = alert_l = raw_l = [False] * n
            incident_l = [0] * n
            n_anomalies = n_alerts = 0
        rule_ids, key = self.rule_ids, self.key
        fired_l: list[tuple[str, ...]] = [()] * n
        if fired_any:
            plain_or = self.ruleset.combination == "or" and base is None
            cols = np.flatnonzero(raw if plain_or else labels.any(axis=0))
            fired_at = labels[:, cols]
            names_at = fired_rule_ids(fired_at, rule_ids, self._fired_patterns)
            for pos, fired in zip(cols.tolist(), names_at, strict=True):
                fired_l[pos] = fired
            for r, count in enumerate(fired_at.sum(axis=1).tolist()):
                if count:
                    self.rule_fired[rule_ids[r]] += count
        errors_l: Iterable[tuple[str, ...]] = repeat(())
        if errs_by_item:  # an item is a series: its points share its errors
            get = errs_by_item.get
            errors_l = [
                get(j, ()) for j in range(len(names)) for _ in range(bounds[j + 1] - bounds[j])
            ]
        series_l, ts_l, values_l = adm.fields
        made = point_results(
            zip(
                series_l,
                ts_l,
                values_l,
                repeat("ok"),
                anomaly_l,
                alert_l,
                raw_l,
                incident_l,
                fired_l,
                errors_l,
                repeat(key),
                repeat(""),
            )
        )
        self.counters["points"] += n
        self.counters["anomalies"] += n_anomalies
        self.counters["alerts"] += n_alerts
        self._watch_alarm_rate(labels, fired_any)
        if n == len(points) and isinstance(order, range):
            return made  # every point accepted, in input order
        for pos, i in enumerate(order):
            results[i] = made[pos]
        return adm.done()

    def _watch_alarm_rate(self, labels: BoolArray, fired: bool) -> None:
        """Count the rules' alarms in the current window (``fired``: any label is true); at its
        end, quarantine the rules in an alert storm (:class:`AlarmRateGuard`)."""
        if labels.shape[0] != len(self._window_alarms) or not labels.shape[1]:
            return
        self._window_points += labels.shape[1]
        if fired:
            self._window_alarms += labels.sum(axis=1)
        if self._window_points < self.guard.window:
            return
        n, alarms = self._window_points, self._window_alarms
        self._window_points, self._window_alarms = 0, np.zeros_like(alarms)
        for r, rid in enumerate(self.rule_ids):
            rate, base = alarms[r] / n, self.baseline.get(rid, 0.0)
            limit = self.guard.threshold(base)
            if rate > limit and rid not in self.engine.quarantined:
                reason = (
                    f"alert storm: fired on {rate:.0%} of the last {n} streamed points (on the "
                    f"verification sample: {base:.1%}; limit {limit:.0%}); quarantined until "
                    "the rule set is reloaded"
                )
                self.engine.quarantine(rid, reason)
                log.warning("rule set %s: rule %s: %s", self.key, rid, reason)

    def push_arrays(
        self, series: str, timestamps: IntArray, values: FloatArray
    ) -> list[PointResult]:
        """Convenience: push consecutive points of one series."""
        return self.push(
            [
                Point(series, int(t), float(v))
                for t, v in zip(
                    np.asarray(timestamps).tolist(), np.asarray(values).tolist(), strict=True
                )
            ]
        )

    def _count_errors(self, res: EngineResult) -> None:
        for e in res.errors:
            self.rule_errors[e.rule_id] += 1
            self.last_errors[e.rule_id] = e.message

    # -- state --------------------------------------------------------------------------------
    @property
    def series_ids(self) -> list[str]:
        """Series seen so far."""
        with self._lock:
            return list(self._series)

    @property
    def n_series(self) -> int:
        """How many series have stream state."""
        return len(self._series)

    def has_series(self, series: str) -> bool:
        """Whether this series has stream state."""
        return series in self._series

    def export_state(self, series: Sequence[str] | None = None) -> list[SeriesState]:
        """The stream state of these series (those seen so far), or of every series."""
        with self._lock:
            table = self._series
            names = list(table) if series is None else [s for s in series if s in table]
            hist = {s: (t, v) for s, t, v in self.engine.history(names)}
            out = []
            for s in names:
                t, v = hist.get(s, (np.zeros(0, np.int64), np.zeros(0)))
                last_ts, post = table.state(s)
                out.append(
                    SeriesState(
                        series=s,
                        last_timestamp=last_ts,
                        post=asdict(post),
                        timestamps=t.tolist(),
                        values=v.tolist(),
                    )
                )
            return out

    def import_state(self, states: Sequence[SeriesState]) -> None:
        """Replace the stream state of these series (e.g. taken over from another process).

        Labels stay exact when the state came from a rule set whose largest LOOKBACK is at
        least this one's (the history holds enough points).
        """
        with self._lock:
            for st in states:
                self.engine.forget([st.series])
                self._series.set_state(st.series, st.last_timestamp, PostState(**st.post))
                if st.timestamps:
                    self.engine.seed(
                        st.series,
                        np.asarray(st.timestamps, dtype=np.int64),
                        np.asarray(st.values, dtype=np.float64),
                    )

    def forget(self, series: Sequence[str]) -> None:
        """Drop all stream state of these series (the next point starts them afresh)."""
        with self._lock:
            self.engine.forget(list(series))
            for s in series:
                self._series.forget(s)

    def carry_state_from(self, other: Detector) -> None:
        """Adopt another detector's stream state (hot reload): ordering, post-processing and
        the rule history of every series.

        Labels stay exact for a rule whose LOOKBACK is at most the old set's largest one.
        """
        self.import_state(other.export_state())

    def stats(self) -> dict[str, Any]:
        """Counters: points, anomalies, alerts, dropped per reason, rule errors and firings."""
        with self._lock:
            return {
                "series": len(self._series),
                **{k: int(v) for k, v in self.counters.items()},
                "rule_errors": dict(self.rule_errors),
                "rule_fired": dict(self.rule_fired),
                "quarantined": sorted(self.engine.quarantined),
            }

    def close(self) -> None:
        """Stop the engine (workers)."""
        self.engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
