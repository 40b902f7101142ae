"""A fleet: every rule set of a deployment in one process, each series routed to its own.

``argos train`` writes one rule set per unit (a series, or a partition of series) into a run
folder. A :class:`Fleet` serves such a folder (or any folder of rule-set folders, or one rule-set
folder) behind the surface the service, ``argos detect`` and the Redis consumer use: ``push``,
``detect_arrays``, ``export_state``/``import_state``/``forget``, ``stats``, ``describe``.

- **Routing** (:class:`Routes`, read from the manifests only, no rule is loaded for it): a series
  goes to the set whose manifest lists it in ``training.series`` (a per-series unit wins over a
  partition unit that also lists it), else to the set of its partition (``training.partition``:
  a series id ``"A1/real_70"`` belongs to partition ``A1``, the dataset loaders' naming), else to
  the ``default`` set (``--default-rules``) when given, else it is refused: the point comes back
  with status ``unrouted`` and a per-series message, and is counted. A single rule-set folder is a
  fleet of one set that every series is routed to.
- **Isolation.** Each set is its own :class:`~argos.online.detector.Detector` with its own engine,
  so its rules run in its own worker processes and only ever see its own series; packing (one rule
  call for many series) stays within a set.
- **Lazy.** A set is opened (rules verified, workers started) when its first series arrives, so
  memory and start-up grow with the sets in use, not with the sets on disk.
- **Per-set reload** (:meth:`Fleet.reload`): the folder is scanned again; a set whose manifest
  changed is loaded and verified beside the old one, then, under the push lock, its series' state
  is carried over and it is swapped in; the other sets are not touched. A set that fails to load
  keeps serving its previous version and is reported (:class:`ReloadReport`, ``load_errors``).
- **A failing set stays alone.** A set whose engine is down answers ``unavailable`` for its own
  points; the other sets' points in the same push are labelled as usual.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import ValidationError

from argos._types import BoolArray, FloatArray, IntArray
from argos.online.detector import BatchDetection, Detector, DetectorSettings
from argos.online.points import Point, PointResult
from argos.online.postprocess import SeriesState
from argos.online.rulesets import load_rules
from argos.rules.artifacts import MANIFEST, Manifest, RuleSetError
from argos.sandbox.kernel import InProcessEngine
from argos.sandbox.workers import RuleWorkerError

__all__ = [
    "Fleet",
    "ReloadReport",
    "Routes",
    "RuleSetEntry",
    "StreamDetector",
    "UnroutedSeriesError",
    "scan_rule_sets",
]

log = logging.getLogger(__name__)

DEFAULT_KEY = "default"


class StreamDetector(Protocol):
    """What a stream consumer needs: a :class:`Detector` or a :class:`Fleet`."""

    def push(self, points: Sequence[Point]) -> list[PointResult]: ...

    def export_state(self, series: Sequence[str] | None = None) -> list[SeriesState]: ...

    def import_state(self, states: Sequence[SeriesState]) -> None: ...

    def forget(self, series: Sequence[str]) -> None: ...


class UnroutedSeriesError(LookupError):
    """No rule set of the fleet serves this series."""


@dataclass(frozen=True)
class RuleSetEntry:
    """What the router knows of a rule-set folder, from its manifest alone.

    ``key`` is the folder's name (stable across re-exports: it names the set in results, metrics
    and the API); ``series``/``partition`` come from the manifest's ``training`` record;
    ``fingerprint`` (the manifest's and every ``.py`` file's bytes) changes whenever a rule, a
    parameter or the combination changes, or a file is tampered with: a reload reloads exactly
    the sets whose fingerprint changed.
    """

    key: str
    directory: Path
    series: tuple[str, ...] = ()
    partition: str | None = None
    manifest_id: str = ""
    name: str = ""
    fingerprint: str = ""

    @classmethod
    def read(cls, key: str, directory: Path) -> RuleSetEntry:
        """Read ``directory/manifest.json``; :class:`RuleSetError` when it is missing or invalid."""
        path = directory / MANIFEST
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RuleSetError(f"{directory}: cannot read {MANIFEST}: {exc.strerror}") from None
        try:
            m = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise RuleSetError(f"{path}: invalid manifest: {exc}") from exc
        training = m.training
        return cls(
            key=key,
            directory=directory,
            series=tuple(training.series) if training else (),
            partition=training.partition if training else None,
            manifest_id=m.id,
            name=m.name or m.id,
            fingerprint=folder_fingerprint(directory, raw),
        )


def folder_fingerprint(directory: Path, manifest: bytes) -> str:
    """SHA-256 over the manifest and every ``.py`` file under ``directory`` (names and bytes)."""
    h = hashlib.sha256(manifest)
    for path in sorted(directory.rglob("*.py")):
        h.update(str(path.relative_to(directory)).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0unreadable")
    return h.hexdigest()


def scan_rule_sets(rules: Path) -> tuple[dict[str, RuleSetEntry], dict[str, str], bool]:
    """The rule sets of a deployment folder: entries by key, folders that failed, and whether
    ``rules`` is itself one rule-set folder (then it is the only entry and serves every series).

    A folder of rule sets (a training run folder: one folder per unit plus ``summary.json``) gives
    one entry per direct sub-folder holding a ``manifest.json``. Raises :class:`RuleSetError` when
    the folder holds neither.
    """
    if not rules.is_dir():
        raise RuleSetError(f"{rules}: no such folder")
    if (rules / MANIFEST).is_file():
        entry = RuleSetEntry.read(rules.name or "ruleset", rules)
        return {entry.key: entry}, {}, True
    entries: dict[str, RuleSetEntry] = {}
    failed: dict[str, str] = {}
    for sub in sorted(p for p in rules.iterdir() if p.is_dir() and (p / MANIFEST).is_file()):
        try:
            entries[sub.name] = RuleSetEntry.read(sub.name, sub)
        except RuleSetError as exc:
            failed[sub.name] = str(exc)
    if not entries and not failed:
        raise RuleSetError(
            f"{rules}: no {MANIFEST} here or in any sub-folder (expected a rule-set folder or a "
            "training run folder of rule sets)"
        )
    return entries, failed, False


def partition_of_series(series: str) -> str | None:
    """The partition named by a series id (``"A1/real_7"`` -> ``"A1"``), or ``None``."""
    head, sep, _ = series.partition("/")
    return head if sep else None


@dataclass
class Routes:
    """Series id -> rule-set key: listed series, then partitions, then the default set."""

    by_series: dict[str, str] = field(default_factory=dict)
    by_partition: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    conflicts: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Series routed so far -> key (a scrape routes the same series again and again); routes
    are rebuilt, not edited, when the folder changes, so this never goes stale."""

    @classmethod
    def build(cls, entries: Sequence[RuleSetEntry], default: str | None) -> Routes:
        """Routes of these entries (in key order). A series listed by two per-series sets, or a
        partition claimed by two sets, goes to the first and is reported in ``conflicts``."""
        r = cls(default=default)
        ordered = sorted(entries, key=lambda e: e.key)
        for e in ordered:
            if e.partition is None:
                continue
            if e.partition in r.by_partition:
                r.conflicts.append(
                    f"partition {e.partition!r} is claimed by {r.by_partition[e.partition]} and "
                    f"{e.key}; routing it to {r.by_partition[e.partition]}"
                )
                continue
            r.by_partition[e.partition] = e.key
            for s in e.series:
                r.by_series.setdefault(s, e.key)
        claimed: dict[str, str] = {}
        for e in ordered:
            if e.partition is not None:
                continue
            for s in e.series:
                if s in claimed:
                    r.conflicts.append(
                        f"series {s!r} is listed by {claimed[s]} and {e.key}; "
                        f"routing it to {claimed[s]}"
                    )
                    continue
                claimed[s] = e.key
                r.by_series[s] = e.key
        return r

    def route(self, series: str) -> str | None:
        """The key of the rule set for this series, or ``None`` (refused)."""
        key = self.resolved.get(series)
        if key is not None:
            return key
        key = self.by_series.get(series)
        if key is None:
            part = partition_of_series(series)
            if part is not None:
                key = self.by_partition.get(part)
            if key is None:
                key = self.default
        if key is not None:  # refused series are not remembered (their names are unbounded)
            self.resolved[series] = key
        return key

    def listed(self) -> dict[str, list[str]]:
        """Per set key, the series routed to it by name (not by partition or as the default)."""
        out: dict[str, list[str]] = {}
        for s, k in self.by_series.items():
            out.setdefault(k, []).append(s)
        return out


@dataclass
class ReloadReport:
    """What :meth:`Fleet.reload` did, per rule-set key."""

    reloaded: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (the reload endpoint's answer)."""
        return {
            "reloaded": self.reloaded,
            "added": self.added,
            "removed": self.removed,
            "unchanged": len(self.unchanged),
            "failed": self.failed,
        }


class _Slot:
    """An open set's detector and the batch requests using it (closed when retired and idle)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.inflight = 0
        self.retired = False


@dataclass
class _Routing:
    """How a push's points split over the sets: each set's point indices (``parts``), the open
    in-process sets among them with their series ids (``together``, ``series``), and the slots
    the sets had. A steady scrape sends the same series in the same order push after push, so
    the next push reuses it while :meth:`holds`."""

    names: list[str]
    routes: Routes
    parts: list[tuple[str, list[int]]]
    slots: list[_Slot | None]
    together: list[tuple[str, list[int], Detector]]
    series: list[list[str]]
    complete: bool
    """Every point was routed (a routing with unrouted points is never reused)."""

    def holds(self, names: list[str], routes: Routes, open_slots: dict[str, _Slot]) -> bool:
        """Whether a push of ``names`` routes the same way: the same series in the same order,
        the same routes and the same open sets."""
        return (
            self.complete
            and self.routes is routes
            and self.names == names
            and all(
                open_slots.get(key) is slot
                for (key, _), slot in zip(self.parts, self.slots, strict=True)
            )
        )


PushObserver = Callable[[str, int, float], None]
"""Called after each set's part of a push: rule-set key, points, seconds."""


class Fleet:
    """Many rule sets in one process; every series is routed to its own (thread-safe).

    ``rules`` is a rule-set folder (every series goes to it) or a folder of rule-set folders (a
    training run folder); ``default_rules`` a rule-set folder for series that no set lists.
    ``settings`` are applied to every set (:class:`DetectorSettings`; when omitted its defaults
    but not strict: a set with a rule that is not stream-exact is served, with a warning).
    ``parallel`` > 1 pushes the parts of a multi-set push concurrently when their rules run in
    worker processes; sets whose rules all run in this process (``isolation="auto"`` with builtin
    templates) are pushed in the calling thread meanwhile (threads would only contend for the GIL).
    ``freeze_heap``: after each set opens (or reloads) and after a push that brought new series,
    move every object then alive out of the cyclic garbage collector's reach (:func:`gc.freeze`;
    reference counting still frees them). The process's long-lived heap (modules, rule sets,
    series state) is then never scanned again, so a full collection during a push costs
    milliseconds instead of tens of them: the service and the stream consumer, long-running
    processes that own their interpreter, set it; a library caller decides for its own process.
    """

    def __init__(
        self,
        rules: str | Path,
        *,
        default_rules: str | Path | None = None,
        settings: DetectorSettings | None = None,
        parallel: int = 1,
        freeze_heap: bool = False,
    ) -> None:
        self.rules = Path(rules)
        self.freeze_heap = freeze_heap
        self.default_rules = None if default_rules is None else Path(default_rules)
        self.settings = settings or DetectorSettings(strict=False)
        self.on_push: PushObserver | None = None
        self._lock = threading.Lock()  # maps below
        self._push_lock = threading.RLock()  # stream state: pushes, imports, swaps
        self._reload_lock = threading.Lock()
        self._open_locks: dict[str, threading.Lock] = {}
        self._slots: dict[str, _Slot] = {}
        self._routing: _Routing | None = None  # the last push's, for a steady scrape
        self.load_errors: dict[str, str] = {}
        self.unrouted: Counter[str] = Counter()
        self.reloads: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(parallel) if parallel > 1 else None
        self._closed = False
        entries, failed, single = self._scan()
        self.single = single
        self._entries = entries
        self.load_errors.update(failed)
        for key, err in failed.items():
            log.error("rule set %s cannot be read: %s", key, err)
        self.routes = self._build_routes(entries)

    # -- scanning ---------------------------------------------------------------------------------
    def _scan(self) -> tuple[dict[str, RuleSetEntry], dict[str, str], bool]:
        entries, failed, single = scan_rule_sets(self.rules)
        if self.default_rules is not None:
            if single:
                raise RuleSetError(
                    f"{self.rules} is one rule set that serves every series; a default set "
                    "needs a folder of rule sets"
                )
            if DEFAULT_KEY in entries:
                raise RuleSetError(f"{self.rules}: a rule set folder is named {DEFAULT_KEY!r}")
            entries[DEFAULT_KEY] = RuleSetEntry.read(DEFAULT_KEY, self.default_rules)
        return entries, failed, single

    def _build_routes(self, entries: dict[str, RuleSetEntry]) -> Routes:
        if self.single:
            (key,) = entries
            return Routes(default=key)
        listed = [e for k, e in entries.items() if k != DEFAULT_KEY]
        routes = Routes.build(listed, DEFAULT_KEY if DEFAULT_KEY in entries else None)
        for c in routes.conflicts:
            log.warning("routing: %s", c)
        return routes

    # -- routing ----------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """Every rule set of the deployment (open or not)."""
        return list(self._entries)

    @property
    def open_keys(self) -> list[str]:
        """The rule sets opened so far (a series of theirs arrived)."""
        with self._lock:
            return list(self._slots)

    def route(self, series: str) -> str | None:
        """The key of the rule set that serves ``series`` (``None``: refused)."""
        return self.routes.route(series)

    def entry(self, key: str) -> RuleSetEntry:
        """The manifest facts of a set."""
        return self._entries[key]

    def _unrouted_message(self, series: str) -> str:
        return (
            f"no rule set for series {series!r}: no manifest in {self.rules} lists it or its "
            "partition, and no default rule set is configured (--default-rules)"
        )

    # -- opening ----------------------------------------------------------------------------------
    def _open_detector(self, e: RuleSetEntry) -> Detector:
        det = Detector.open(e.directory, self.settings, key=e.key)
        if self.freeze_heap:
            gc.freeze()
        return det

    def open_single(self) -> Fleet:
        """Open the set now when the fleet is one rule set, so that a broken set is refused
        before any input (its error raises here, the fleet closed); the sets of a folder of rule
        sets still open when their first series arrives. Returns the fleet."""
        if self.single:
            try:
                self.detector(self.keys[0])
            except BaseException:
                self.close()
                raise
        return self

    def detector(self, key: str) -> Detector:
        """The set's detector, opened on first use; raises what opening raises
        (:class:`RuleSetError`, :class:`RuleWorkerError`) and remembers it in ``load_errors``."""
        slot = self._slots.get(key)
        if slot is not None:
            return slot.detector
        with self._lock:
            if self._closed:
                raise RuleWorkerError("the fleet is closed")
            lock = self._open_locks.setdefault(key, threading.Lock())
        with lock:
            slot = self._slots.get(key)
            if slot is not None:
                return slot.detector
            if key not in self._entries:
                raise UnroutedSeriesError(f"no rule set {key!r}")
            t0 = time.perf_counter()
            try:
                det = self._open_detector(self._entries[key])
            except (RuleSetError, RuleWorkerError, OSError) as exc:
                self.load_errors[key] = str(exc)
                log.error("rule set %s failed to load: %s", key, exc)
                raise
            with self._lock:
                self._slots[key] = _Slot(det)
                self.load_errors.pop(key, None)
            log.info("rule set %s opened in %.2f s", key, time.perf_counter() - t0)
            return det

    def open_all(self) -> dict[str, str]:
        """Open every set now (instead of on first use); returns the sets that failed."""
        failed: dict[str, str] = {}
        for key in self._entries:
            try:
                self.detector(key)
            except (RuleSetError, RuleWorkerError, OSError) as exc:
                failed[key] = str(exc)
        return failed

    def _acquire(self, key: str) -> _Slot:
        self.detector(key)
        with self._lock:
            slot = self._slots[key]
            slot.inflight += 1
            return slot

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.inflight -= 1
            close = slot.retired and slot.inflight == 0
        if close:
            slot.detector.close()

    # -- streaming --------------------------------------------------------------------------------
    def push(self, points: Sequence[Point]) -> list[PointResult]:
        """Route a micro-batch (any mix of series and sets); results in input order.

        Each set gets one push with its own points (packed rule calls within the set). Points of
        series no set serves come back ``unrouted``; points of a set that cannot run
        ``unavailable``; both carry the reason in ``detail`` and are counted.
        """
        if not points:
            return []
        results: list[PointResult | None] = [None] * len(points)
        names = [p.series for p in points]
        known = len(self.routes.resolved)
        with self._push_lock:
            routing = self._routing
            if routing is None or not routing.holds(names, self.routes, self._slots):
                routing = self._routing = self._route(points, names, results)
            parts, together = routing.parts, routing.together
            done: dict[str, list[PointResult]] = {}
            if len(together) > 1:
                done.update(self._push_sets_together(together, routing.series, points))
            rest = [(key, idx) for key, idx in parts if key not in done]
            if self._pool is not None and len(rest) > 1:
                pending = {
                    key: self._pool.submit(self._push_set, key, idx, points)
                    for key, idx in rest
                    if not self._in_process(key)
                }
                for key, idx in rest:
                    if key not in pending:
                        done[key] = self._push_set(key, idx, points)
                for key, fut in pending.items():
                    done[key] = fut.result()
            else:
                for key, idx in rest:
                    done[key] = self._push_set(key, idx, points)
        for key, idx in parts:
            for i, r in zip(idx, done[key], strict=True):
                results[i] = r
        if self.freeze_heap and len(self.routes.resolved) > known:
            gc.freeze()  # the new series' state lives as long as the series
        return cast(list[PointResult], results)  # every point has its result now

    def _route(
        self, points: Sequence[Point], names: list[str], results: list[PointResult | None]
    ) -> _Routing:
        """Split a push over the sets; an unrouted point gets its result in ``results`` here.
        Sets whose rules all run in this process are pushed together (rules of different sets
        sharing a template score compute it once); sets with worker processes one by one, or
        concurrently with a pool."""
        groups: dict[str, list[int]] = {}
        route, resolved = self.routes.route, self.routes.resolved
        complete = True
        for i, name in enumerate(names):
            key = resolved.get(name) or route(name)
            if key is None:
                p = points[i]
                self.unrouted[name] += 1
                results[i] = PointResult(
                    name,
                    p.timestamp,
                    p.value,
                    "unrouted",
                    detail=self._unrouted_message(name),
                )
                complete = False
                continue
            group = groups.get(key)
            if group is None:
                groups[key] = [i]
            else:
                group.append(i)
        parts = list(groups.items())
        slots = [self._slots.get(key) for key, _ in parts]
        together, series = [], []
        for (key, idx), slot in zip(parts, slots, strict=True):
            if slot is not None and isinstance(slot.detector.engine, InProcessEngine):
                together.append((key, idx, slot.detector))
                series.append([names[i] for i in idx])
        return _Routing(names, self.routes, parts, slots, together, series, complete)

    def _push_sets_together(
        self,
        parts: Sequence[tuple[str, Sequence[int], Detector]],
        series: Sequence[list[str]],
        points: Sequence[Point],
    ) -> dict[str, list[PointResult]]:
        """The points of several open in-process sets in one :meth:`Detector.push_together`
        (``series``: each set's points' series ids); each set's observed time is the joint time
        shared by its points."""
        subs = [(det, [points[i] for i in idx]) for _, idx, det in parts]
        t0 = time.perf_counter()
        res = Detector.push_together(subs, series)
        if self.on_push is not None:
            per_point = (time.perf_counter() - t0) / max(1, sum(len(idx) for _, idx, _ in parts))
            for key, idx, _ in parts:
                self.on_push(key, len(idx), per_point * len(idx))
        return {key: r for (key, _, _), r in zip(parts, res, strict=True)}

    def _in_process(self, key: str) -> bool:
        """Whether an open set runs all its rules in this process (no worker to wait for)."""
        slot = self._slots.get(key)
        return slot is not None and isinstance(slot.detector.engine, InProcessEngine)

    def _push_set(self, key: str, idx: Sequence[int], points: Sequence[Point]) -> list[PointResult]:
        sub = [points[i] for i in idx]
        t0 = time.perf_counter()
        try:
            res = self.detector(key).push(sub)
        except (RuleSetError, RuleWorkerError, OSError) as exc:
            why = f"rule set {key} is unavailable: {exc}"
            return [
                PointResult(p.series, p.timestamp, p.value, "unavailable", ruleset=key, detail=why)
                for p in sub
            ]
        if self.on_push is not None:
            self.on_push(key, len(sub), time.perf_counter() - t0)
        return res

    def result_json(self, result: PointResult, *, explain: bool = True) -> dict[str, Any]:
        """A result as a JSON line/record, explained with its own set's stated conditions
        (``explain=False``: only the ids of the rules that fired; see :meth:`conditions_of`)."""
        if not explain:
            return result.to_json({}, explain=False)
        slot = self._slots.get(result.ruleset)
        return result.to_json(slot.detector.conditions if slot is not None else {})

    def conditions_of(self, results: Sequence[PointResult]) -> dict[str, dict[str, str]]:
        """The stated condition of every rule that fired in these results, once: rule set ->
        rule -> condition (what a response sends instead of a copy per point)."""
        out: dict[str, dict[str, str]] = {}
        for r in results:
            if r.fired:
                out.setdefault(r.ruleset, {}).update(dict.fromkeys(r.fired, ""))
        for key, rules in out.items():
            slot = self._slots.get(key)
            conditions = slot.detector.conditions if slot is not None else {}
            for rid in rules:
                rules[rid] = conditions.get(rid, "")
        return out

    # -- batch ------------------------------------------------------------------------------------
    def detect_arrays(
        self,
        series: str,
        timestamps: IntArray,
        values: FloatArray,
        base: BoolArray | None = None,
    ) -> tuple[Detector, BatchDetection]:
        """Label a whole series with its own set (stateless); the set's detector and the labels.

        Raises :class:`UnroutedSeriesError` when no set serves it, and what the set raises.
        """
        key = self.route(series)
        if key is None:
            raise UnroutedSeriesError(self._unrouted_message(series))
        slot = self._acquire(key)
        try:
            return slot.detector, slot.detector.detect_arrays(timestamps, values, base)
        finally:
            self._release(slot)

    # -- state ------------------------------------------------------------------------------------
    def _by_open_set(self, series: Sequence[str]) -> Iterator[tuple[Detector, list[str]]]:
        grouped: dict[str, list[str]] = {}
        for s in series:
            key = self.route(s)
            if key is not None and key in self._slots:
                grouped.setdefault(key, []).append(s)
        for key, names in grouped.items():
            yield self._slots[key].detector, names

    def export_state(self, series: Sequence[str] | None = None) -> list[SeriesState]:
        """The stream state of these series (those seen so far), or of every series."""
        with self._push_lock:
            if series is None:
                return [st for slot in self._open_slots() for st in slot.detector.export_state()]
            grouped = self._by_open_set(series)
            return [st for det, names in grouped for st in det.export_state(names)]

    def import_state(self, states: Sequence[SeriesState]) -> None:
        """Install these series' states in their own sets (opened if needed); states of series
        no set serves are skipped (logged)."""
        grouped: dict[str, list[SeriesState]] = {}
        for st in states:
            key = self.route(st.series)
            if key is None:
                log.warning("no rule set for series %r: its state is not imported", st.series)
                continue
            grouped.setdefault(key, []).append(st)
        with self._push_lock:
            for key, sts in grouped.items():
                self.detector(key).import_state(sts)

    def forget(self, series: Sequence[str]) -> None:
        """Drop the stream state of these series."""
        with self._push_lock:
            for det, names in self._by_open_set(series):
                det.forget(names)

    def has_series(self, series: str) -> bool:
        """Whether this series has stream state."""
        key = self.route(series)
        slot = None if key is None else self._slots.get(key)
        return slot is not None and slot.detector.has_series(series)

    @property
    def n_series(self) -> int:
        """Series with stream state, over every set."""
        return sum(slot.detector.n_series for slot in self._open_slots())

    def _open_slots(self) -> list[_Slot]:
        with self._lock:
            return list(self._slots.values())

    # -- reload -----------------------------------------------------------------------------------
    def reload(self, *, force: bool = False) -> ReloadReport:
        """Scan the folder again and reload what changed (``force``: every set), set by set.

        An open set whose manifest changed is loaded and verified beside the old one (its workers
        started), then its series' state is carried over and it is swapped in under the push
        lock; sets not opened yet are only checked (manifest, hashes, static gate) and open on
        first use. A set that fails keeps its previous version and is reported in ``failed``
        (and ``load_errors``); untouched sets keep their detectors and state.
        """
        report = ReloadReport()
        with self._reload_lock:
            try:
                entries, failed, single = self._scan()
            except RuleSetError as exc:  # the whole folder is unreadable: keep everything
                report.failed["*"] = str(exc)
                self.reloads["failed"] += 1
                return report
            if single != self.single:
                report.failed["*"] = "the folder changed between one rule set and a folder of sets"
                self.reloads["failed"] += 1
                return report
            report.failed.update(failed)
            new_entries = dict(entries)
            fresh: dict[str, Detector] = {}
            for key, e in entries.items():
                old = self._entries.get(key)
                same = old is not None and old.fingerprint == e.fingerprint
                if same and not force and (key not in self.load_errors or key in self._slots):
                    report.unchanged.append(key)
                    continue
                opened = key in self._slots
                try:
                    if opened:
                        fresh[key] = self._open_detector(e)
                    else:
                        load_rules(e.directory)
                except (RuleSetError, RuleWorkerError, OSError) as exc:
                    report.failed[key] = str(exc)
                    if old is not None:
                        new_entries[key] = old
                    else:
                        new_entries.pop(key)
                    continue
                (report.reloaded if old is not None else report.added).append(key)
            for key in failed:  # unreadable manifest: keep the previous version if there was one
                if key in self._entries:
                    new_entries[key] = self._entries[key]
            report.removed = sorted(set(self._entries) - set(new_entries))
            retired: list[_Slot] = []
            with self._push_lock:
                for key, det in fresh.items():
                    old_slot = self._slots[key]
                    try:
                        det.carry_state_from(old_slot.detector)
                    except Exception as exc:  # reported; the old set keeps serving
                        det.close()
                        report.failed[key] = f"carrying the stream state over failed: {exc}"
                        report.reloaded.remove(key)
                        new_entries[key] = self._entries[key]
                        continue
                    with self._lock:
                        self._slots[key] = _Slot(det)
                        retired.append(old_slot)
                for key in report.removed:
                    with self._lock:
                        slot = self._slots.pop(key, None)
                    if slot is not None:
                        retired.append(slot)
                self._entries = new_entries
                self.routes = self._build_routes(new_entries)
                with self._lock:
                    # unchanged: the folder is back to the version that runs
                    for key in [
                        *report.reloaded,
                        *report.added,
                        *report.removed,
                        *report.unchanged,
                    ]:
                        self.load_errors.pop(key, None)
                    self.load_errors.update(report.failed)
            for slot in retired:
                self._retire(slot)
        for key, err in report.failed.items():
            log.error("reload: rule set %s failed, previous version kept: %s", key, err)
        self.reloads["failed" if report.failed else "ok"] += 1
        return report

    def _retire(self, slot: _Slot) -> None:
        with self._lock:
            slot.retired = True
            close = slot.inflight == 0
        if close:
            slot.detector.close()

    # -- introspection ----------------------------------------------------------------------------
    def describe(self, *, stats: bool = True) -> dict[str, Any]:
        """Every set: its series (listed), partition, whether it is open, its last load error,
        and when open its rules, stream-exactness, isolation (and counters)."""
        sets = []
        listed = self.routes.listed()
        for key, e in self._entries.items():
            item: dict[str, Any] = {
                "key": key,
                "directory": str(e.directory),
                "manifest_id": e.manifest_id,
                "name": e.name,
                "partition": e.partition,
                "series": listed.get(key, []),
                "open": key in self._slots,
                "load_error": self.load_errors.get(key),
            }
            slot = self._slots.get(key)
            if slot is not None:
                item.update(slot.detector.describe())
                item["id"] = slot.detector.ruleset.id
                if stats:
                    item["stats"] = slot.detector.stats()
            sets.append(item)
        failed_only = {k: v for k, v in self.load_errors.items() if k not in self._entries}
        return {
            "rules": str(self.rules),
            "single": self.single,
            "default": self.routes.default if not self.single else None,
            "partitions": dict(self.routes.by_partition),
            "conflicts": list(self.routes.conflicts),
            "unreadable": failed_only,
            "rulesets": sets,
        }

    def stats(self) -> dict[str, Any]:
        """Counters summed over the open sets, the refused points, and per set."""
        total: Counter[str] = Counter()
        per_set: dict[str, dict[str, Any]] = {}
        for key, slot in list(self._slots.items()):
            st = slot.detector.stats()
            per_set[key] = st
            for k, v in st.items():
                if isinstance(v, int):
                    total[k] += v
        out: dict[str, Any] = {k: int(v) for k, v in total.items()}
        out["rulesets_open"] = len(per_set)
        out["unrouted"] = int(sum(self.unrouted.values()))
        out["unrouted_series"] = len(self.unrouted)
        if not self.single:
            out["rulesets"] = per_set
        if self.load_errors:
            out["load_errors"] = dict(self.load_errors)
        return out

    def close(self) -> None:
        """Stop every set's engine."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            self._retire(slot)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
