"""Running compiled rules on windows of per-series history: the rule kernel and its engines.

:class:`RuleKernel` is plain numpy: it runs rules on windows and keeps, per series, the last
``max(LOOKBACK) - 1`` points (a bounded history buffer), so a caller only ships new points. It is
what a rule worker process runs (:mod:`argos.sandbox.worker_main`); :class:`InProcessEngine`
(trusted code only) uses it directly in the calling process, where a rule proved to be a builtin
template rendering labels the series of a scrape (full history, one new point) by its last-point
form (:mod:`argos.rules.lastpoint`: only the scores the last label needs, bit for bit), and
:func:`push_together` pushes several such kernels (a fleet's sets) with one evaluation of every
score they share. A rule in a worker always runs its own code.

Both engines, this module's :class:`InProcessEngine` and :class:`argos.sandbox.workers.WorkerEngine`
(isolated worker processes), implement :class:`RuleEngine`, which :mod:`argos.online.detector`
uses. Rule source is compiled by :func:`argos.rules.contract.exec_rule_source`, the one place that
executes it.
"""

from __future__ import annotations

import itertools
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.contract import exec_rule_source
from argos.rules.keptblocks import BlockCache, SeriesRows
from argos.rules.lastpoint import LastPointProgram, evaluate_last, last_point_program
from argos.rules.recognise import trusted_template

log = logging.getLogger(__name__)

RuleFn = Callable[[FloatArray, IntArray, dict[str, Any]], Any]

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class RuleCode:
    """One rule as shipped to an engine: id, source code, parameters and finite lookback."""

    id: str
    code: str
    params: Mapping[str, Any]
    lookback: int

    def to_json(self) -> dict[str, Any]:
        """JSON form for the worker protocol."""
        return {
            "id": self.id,
            "code": self.code,
            "params": dict(self.params),
            "lookback": self.lookback,
        }


@dataclass(frozen=True)
class RuleError:
    """A rule failed on one item of a request (``item`` indexes the request's items)."""

    item: int
    rule_id: str
    message: str


@dataclass
class EngineResult:
    """Per-item rule labels ``bool[n_rules, n_points]`` and the rule errors of the request.

    A failing rule contributes ``False`` labels for the points it failed on. ``joined`` holds all
    items' labels side by side (``bool[n_rules, total_points]``) when the engine produced them that
    way; :meth:`all_labels` builds it otherwise.
    """

    labels: Sequence[BoolArray]
    errors: list[RuleError] = field(default_factory=list)
    joined: BoolArray | None = None

    def all_labels(self) -> BoolArray:
        """Every item's labels side by side, in item order."""
        if self.joined is None:
            self.joined = (
                np.concatenate(self.labels, axis=1) if self.labels else np.zeros((0, 0), np.bool_)
            )
        return self.joined


class PointColumns(Sequence[BoolArray]):
    """The labels of items of one point each (a scrape's series): item ``i`` is column ``i`` of
    the joined labels, a view made when it is read."""

    def __init__(self, joined: BoolArray) -> None:
        self.joined = joined

    def __len__(self) -> int:
        return int(self.joined.shape[1])

    @overload
    def __getitem__(self, i: int) -> BoolArray: ...

    @overload
    def __getitem__(self, i: slice) -> list[BoolArray]: ...

    def __getitem__(self, i: int | slice) -> BoolArray | list[BoolArray]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        j = i % len(self)
        out: BoolArray = self.joined[:, j : j + 1]
        return out


class SeriesBatch(Sequence[tuple[str, IntArray, FloatArray]]):
    """New points of several series as one pair of arrays: series ``names[j]`` has the points
    ``bounds[j]:bounds[j + 1]``. It is the sequence of ``(series, timestamps, values)`` items an
    engine's ``push`` takes (built on access), and lets :class:`RuleKernel` take a scrape (one
    point per series) as the arrays themselves instead of one pair of arrays per series."""

    def __init__(
        self, names: Sequence[str], timestamps: IntArray, values: FloatArray, bounds: Sequence[int]
    ) -> None:
        self.names = names
        self.timestamps = timestamps
        self.values = values
        self.bounds = bounds
        self.one_each = len(timestamps) == len(names)
        """Every series has exactly one new point."""

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> tuple[str, IntArray, FloatArray]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, IntArray, FloatArray]]: ...

    def __getitem__(
        self, i: int | slice
    ) -> tuple[str, IntArray, FloatArray] | list[tuple[str, IntArray, FloatArray]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        a, b = self.bounds[i], self.bounds[i + 1]
        return self.names[i], self.timestamps[a:b], self.values[a:b]


class RuleEngine(Protocol):
    """What the detector needs from whatever runs the rules (in-process or isolated workers)."""

    @property
    def rule_ids(self) -> tuple[str, ...]: ...

    @property
    def load_errors(self) -> Mapping[str, str]: ...

    @property
    def isolation(self) -> str: ...

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult: ...

    def batch(self, items: Sequence[tuple[IntArray, FloatArray]]) -> EngineResult: ...

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None: ...

    def forget(self, series: Sequence[str]) -> None: ...

    def history(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]: ...

    def set_packed(self, rule_ids: Sequence[str]) -> None: ...

    @property
    def quarantined(self) -> Mapping[str, str]: ...

    def quarantine(self, rule_id: str, reason: str) -> None: ...

    def close(self) -> None: ...


def _rule_filename(rule_id: str) -> str:
    return f"<rule {rule_id}>"


def compile_rule(rule_id: str, code: str) -> RuleFn:
    """A rule module's ``detect`` function (:func:`argos.rules.contract.exec_rule_source`).

    Raises whatever the module raises while loading, or ``TypeError`` when it defines no callable
    ``detect``.
    """
    detect, _ = exec_rule_source(code, _rule_filename(rule_id), f"argos_rule_{rule_id}")
    fn: RuleFn = detect
    return fn


def _describe_exception(exc: BaseException, rule_id: str) -> str:
    """``Type: message`` plus the rule's own frames (file, line), trimmed."""
    filename = _rule_filename(rule_id)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    where = f" (rule line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:MAX_ERROR_CHARS]


def validate_labels(out: object, n: int) -> BoolArray:
    """Check one rule output: shape ``(n,)``, boolean or 0/1 numbers without NaN.

    Raises ``ValueError`` naming the problem.
    """
    arr = np.asarray(out)
    if arr.shape != (n,):
        raise ValueError(f"bad output: shape {arr.shape}, expected ({n},)")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError("bad output: contains NaN")
        if ((arr != 0) & (arr != 1)).any():
            raise ValueError("bad output: values other than 0/1")
        return np.asarray(arr != 0, dtype=np.bool_)
    raise ValueError(f"bad output: dtype {arr.dtype} is not boolean or 0/1")


class HistoryStore:
    """The last ``keep`` points of every series.

    Series whose history is full live in rows of 2-D arrays used as ring buffers: giving many of
    them one new point each (the steady state of a service scraping many series) writes one slot
    per row (:meth:`append_one`), O(1) per series whatever ``keep`` is, instead of shifting
    every row. A row has ``slots = keep + 1`` slots, so after a new point its whole window (the
    ``keep`` points before it, then it) is still there to read (:class:`RowWindows`). The values
    are stored twice, slot ``j`` also at ``j + slots``, so any trailing window of a row is one
    contiguous slice: the windows of a scrape's series, appended together in row order, are a
    view of the store, not a copy. Series still warming up (or seeded with fewer points) are
    kept as arrays of their own.

    Each row has a stamp (:meth:`stamps`): one more per point :meth:`append_one` gives it, a
    fresh value (never one more than a stamp any row had) on every other change of what the row
    holds (:meth:`set`, a new row, another series moved into it): what is derived from a row's
    history, the blocks :class:`~argos.rules.keptblocks.BlockCache` keeps, is valid for it only
    through that chain of stamps.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.slots = keep + 1
        """Slots of a row: its ``keep`` points and the one that left with the latest append."""
        self._rows: dict[str, int] = {}
        self._names: list[str] = []
        self._t = np.zeros((16, self.slots), dtype=np.int64)
        self._v = np.zeros((16, 2 * self.slots), dtype=np.float64)
        self._end = np.zeros(16, dtype=np.int64)
        """Per row, the slot after its newest point."""
        self._stamp = np.zeros(16, dtype=np.int64)
        self._short: dict[str, tuple[IntArray, FloatArray]] = {}
        self.layout = 0
        """Bumped whenever a series gains, loses or changes its row (what :meth:`rows` and
        :meth:`run` found stay true while it is unchanged)."""

    def __len__(self) -> int:
        return len(self._rows) + len(self._short)

    def row(self, series: str) -> int:
        """The row of a series with a full history, or -1."""
        return self._rows.get(series, -1)

    def rows(self, series: Sequence[str]) -> list[int]:
        """:meth:`row` of each of these series."""
        get = self._rows.get
        return [get(s, -1) for s in series]

    def get(self, series: str) -> tuple[IntArray, FloatArray]:
        """A series' history (empty arrays for an unknown series); copies, safe to keep."""
        row = self._rows.get(series)
        if row is not None:
            end = int(self._end[row])
            t_cols = (np.arange(end + self.slots - self.keep, end + self.slots)) % self.slots
            v = self._v[row, end + self.slots - self.keep : end + self.slots].copy()
            return self._t[row, t_cols], v
        t, v = self._short.get(series, (_EMPTY_T, _EMPTY_V))
        return t.copy(), v.copy()

    def set(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """Replace a series' history with the last ``keep`` points of these arrays."""
        cut = max(0, len(values) - self.keep)
        t = np.asarray(timestamps[cut:], dtype=np.int64)
        v = np.asarray(values[cut:], dtype=np.float64)
        if len(v) == self.keep:
            self._short.pop(series, None)
            row = self._rows.get(series)
            if row is None:
                row = self._add_row(series)
            self._t[row, : self.keep] = t
            self._v[row, : self.keep] = v
            self._v[row, self.slots : self.slots + self.keep] = v
            self._end[row] = self.keep
            self._stamp[row] = _fresh_stamp()
        else:
            self._drop_row(series)
            self._short[series] = (t.copy(), v.copy())

    @staticmethod
    def run(rows: IntArray) -> int:
        """The first of these rows when they are consecutive rows in order, else -1."""
        m = len(rows)
        first = int(rows[0]) if m else -1
        if m and int(rows[-1]) - first == m - 1 and rows.tolist() == list(range(first, first + m)):
            return first
        return -1

    def append_one(
        self, rows: IntArray, timestamps: IntArray, values: FloatArray, first: int | None = None
    ) -> RowWindows:
        """One new point for each of these full rows (distinct); the rows then hold their last
        ``keep`` points. Returns their windows (history then the new point), read on demand.
        ``first``: :meth:`run` of the rows, when the caller knows it."""
        m, n = len(rows), self.slots
        if first is None:
            first = self.run(rows)
        if first >= 0:
            run = slice(first, first + m)
            e = int(self._end[first])
            if m == 1 or np.count_nonzero(self._end[run] != e) == 0:  # a scrape's rows in order
                self._t[run, e] = timestamps
                self._v[run, e] = values
                self._v[run, e + n] = values
                e = 0 if e + 1 == n else e + 1
                self._end[run] = e
                self._stamp[run] += 1
                return RowWindows(self, rows, self._end[run].copy(), e, first)
        ends = self._end[rows]
        self._t[rows, ends] = timestamps
        self._v[rows, ends] = values
        self._v[rows, ends + n] = values
        ends += 1
        ends[ends == n] = 0
        self._end[rows] = ends
        self._stamp[rows] += 1
        end = int(ends[0]) if m and ends.min() == ends.max() else -1
        return RowWindows(self, rows, ends, end, -1)

    def stamps(self, win: RowWindows) -> IntArray:
        """The stamp of each row of these windows (see the class docstring): a new array."""
        if win.first >= 0:
            run: IntArray = self._stamp[win.first : win.first + len(win.rows)].copy()
            return run
        out: IntArray = self._stamp[win.rows]
        return out

    def values(self, win: RowWindows, width: int) -> FloatArray:
        """The last ``width`` values (``<= slots``) of these windows, oldest first: a view of
        the store when the rows are a run appended together (read-only), else a copy."""
        if win.end >= 0:
            a, b = win.end + self.slots - width, win.end + self.slots
            if win.first >= 0:
                view: FloatArray = self._v[win.first : win.first + len(win.rows), a:b]
                view.flags.writeable = False
                return view
            out: FloatArray = self._v[win.rows, a:b]
            return out
        cols = win.ends[:, None] + np.arange(self.slots - width, self.slots)[None, :]
        gathered: FloatArray = self._v[win.rows[:, None], cols]
        return gathered

    def timestamps(self, win: RowWindows, width: int) -> IntArray:
        """The last ``width`` timestamps of these windows, oldest first: a new array."""
        n = self.slots
        if win.end >= 0:  # one slice, or two where the ring wraps
            e = win.end
            if e >= width:
                out: IntArray = self._t[win.rows, e - width : e]
                return out
            joined: IntArray = np.concatenate(
                (self._t[win.rows, n - (width - e) :], self._t[win.rows, :e]), axis=1
            )
            return joined
        cols = (win.ends[:, None] + np.arange(n - width, n)[None, :]) % n
        gathered: IntArray = self._t[win.rows[:, None], cols]
        return gathered

    def forget(self, series: str) -> None:
        """Drop a series."""
        self._short.pop(series, None)
        self._drop_row(series)

    def __contains__(self, series: object) -> bool:
        return series in self._rows or series in self._short

    def items(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]:
        """The history of these series (those present), or of every series; copies."""
        names = [*self._rows, *self._short] if series is None else [s for s in series if s in self]
        for s in names:
            t, v = self.get(s)
            yield s, t, v

    def _add_row(self, series: str) -> int:
        row = len(self._names)
        if row == len(self._t):
            self._t = np.concatenate((self._t, np.zeros_like(self._t)))
            self._v = np.concatenate((self._v, np.zeros_like(self._v)))
            self._end = np.concatenate((self._end, np.zeros_like(self._end)))
            self._stamp = np.concatenate((self._stamp, np.zeros_like(self._stamp)))
        self._names.append(series)
        self._rows[series] = row
        self._stamp[row] = _fresh_stamp()
        self.layout += 1
        return row

    def _drop_row(self, series: str) -> None:
        row = self._rows.pop(series, None)
        if row is None:
            return
        self.layout += 1
        last = len(self._names) - 1
        if row != last:  # move the last row into the hole
            moved = self._names[last]
            self._t[row] = self._t[last]
            self._v[row] = self._v[last]
            self._end[row] = self._end[last]
            self._stamp[row] = _fresh_stamp()
            self._names[row] = moved
            self._rows[moved] = row
        self._names.pop()


_STAMPS = itertools.count(1)


def _fresh_stamp() -> int:
    """A row stamp no row of any store had (2 ** 40 apart: no row gets that many points)."""
    return next(_STAMPS) << 40


@dataclass(slots=True)
class RowWindows:
    """The windows of rows of a :class:`HistoryStore` that just got one new point each: each
    row's history then its new point, its last ``width <= store.slots`` points read on demand
    (a rule reads its own ``LOOKBACK``, a last-point form fewer). Valid until these rows change
    again."""

    store: HistoryStore
    rows: IntArray
    ends: IntArray
    end: int
    """The rows' common end slot, or -1 when they differ."""
    first: int
    """With a common end, the first row when the rows are ``first, first + 1, ...``; else -1."""

    def view(self, width: int) -> FloatArray:
        """The last ``width`` values of each window, ``(rows, width)``, read-only (a view of the
        store when it can be)."""
        out = self.store.values(self, width)
        out.flags.writeable = False
        return out

    def values(self, width: int) -> FloatArray:
        """The last ``width`` values of each window, ``(rows, width)``: a new array."""
        out = self.store.values(self, width)
        return out if out.flags.writeable else out.copy()

    def timestamps(self, width: int) -> IntArray:
        """The last ``width`` timestamps of each window, ``(rows, width)``: a new array."""
        return self.store.timestamps(self, width)


_EMPTY_T: IntArray = np.zeros(0, dtype=np.int64)
_EMPTY_V: FloatArray = np.zeros(0, dtype=np.float64)


Steady = tuple[list[int], RowWindows]
"""Items with a full history and one new point: (item indices, their windows), rows of one
matrix."""

LastPointRequest = tuple[int, LastPointProgram, FloatArray, SeriesRows]
"""A rule's last-point form to run on a push's steady rows: (rule row, program, value windows,
the rows as series of the kernel's history, for the blocks it keeps between pushes)."""


@dataclass
class Prepared:
    """A push whose points are in the history and whose windows wait for labels."""

    windows: list[tuple[IntArray, FloatArray, int]]
    steady: Steady | None


def _last_point_form(rule: RuleCode) -> LastPointProgram | None:
    """The rule's last-point form, when it is a proved template rendering that has one."""
    spec = trusted_template(rule, rule.code, rule.lookback)
    return None if spec is None else last_point_program(spec, rule.params)


def _evaluate(requests: Sequence[LastPointRequest]) -> list[BoolArray] | None:
    """:func:`~argos.rules.lastpoint.evaluate_last`, or None should it ever fail (then every
    rule runs itself on its windows, as without the last-point forms)."""
    if not requests:
        return []
    try:
        return evaluate_last(
            [(prog, rows) for _, prog, rows, _ in requests], [s for _, _, _, s in requests]
        )
    except Exception:
        log.exception("last-point evaluation failed; the rules run on their windows")
        return None


def evaluate_requests(requests: Sequence[LastPointRequest]) -> dict[int, BoolArray]:
    """Run one kernel's last-point requests; rule row -> labels of the steady rows."""
    labels = _evaluate(requests)
    if labels is None:
        return {}
    return {r: lab for (r, _, _, _), lab in zip(requests, labels, strict=True)}


def push_together(
    pushes: Sequence[tuple[RuleKernel, Sequence[tuple[str, IntArray, FloatArray]]]],
) -> list[EngineResult]:
    """:meth:`RuleKernel.push` of several kernels (the rule sets of a fleet, in this process) at
    once: rules of different kernels that share a score (the same template shape, other
    thresholds) compute it once over all their steady rows
    (:func:`~argos.rules.lastpoint.evaluate_last`). Each kernel's labels are those its own push
    gives."""
    prepared = [kernel.prepare(items) for kernel, items in pushes]
    wanted = [kernel.requests(p) for (kernel, _), p in zip(pushes, prepared, strict=True)]
    labels = _evaluate([req for reqs in wanted for req in reqs])
    if labels is None:
        labels, wanted = [], [[] for _ in wanted]
    it = iter(labels)
    out = []
    for (kernel, _), p, reqs in zip(pushes, prepared, wanted, strict=True):
        given = {r: next(it) for r, _, _, _ in reqs}
        out.append(kernel.finish(p, given))
    return out


class RuleKernel:
    """Compiled rules plus a bounded per-series history of the last ``max(LOOKBACK) - 1`` points.

    A rule with lookback ``L`` labels ``k`` new points by running on its last ``L - 1`` history
    points followed by the ``k`` new points, and keeping the last ``k`` labels. For a rule whose
    label at ``t`` depends only on points ``t - L + 1 .. t`` this equals running it on the whole
    series (:mod:`argos.online.detector` verifies that property when it loads a rule set).
    Each rule gets its own copies of the arrays, so a rule that writes into its inputs cannot
    corrupt the history or another rule's input.
    """

    def __init__(
        self,
        rules: Sequence[RuleCode],
        *,
        contain_interrupts: bool = False,
        last_point: bool = False,
    ) -> None:
        self.contain_interrupts = contain_interrupts
        self.skipped: set[int] = set()
        self.rules: list[RuleCode] = []
        self.functions: list[RuleFn] = []
        self.load_errors: dict[str, str] = {}
        for rule in rules:
            if rule.lookback < 1:
                self.load_errors[rule.id] = f"LOOKBACK must be >= 1, got {rule.lookback}"
                continue
            try:
                fn = compile_rule(rule.id, rule.code)
            except BaseException as exc:  # rule code may raise anything while loading
                self.load_errors[rule.id] = "while loading: " + _describe_exception(exc, rule.id)
                continue
            self.rules.append(rule)
            self.functions.append(fn)
        self.history_len = max((r.lookback for r in self.rules), default=1) - 1
        self._history = HistoryStore(self.history_len)
        self._scrape_rows: tuple[Sequence[str], int, IntArray, int] | None = None
        """The series list of the last scrape (a :class:`SeriesBatch`'s names), the store's
        layout then, their rows and :meth:`HistoryStore.run` of them: reused for the same list
        object while the layout is unchanged."""
        self.blocks = BlockCache()
        """The blocks of the wide windows of the last-point forms, kept per history row between
        pushes (:mod:`argos.rules.keptblocks`)."""
        self.packed: set[int] = set()
        self.programs: list[LastPointProgram | None] = [
            _last_point_form(rule) if last_point else None for rule in self.rules
        ]
        """Per rule, its last-point form (:mod:`argos.rules.lastpoint`) when ``last_point`` and
        the rule is a proved template rendering: series with a full history and one new point
        get their labels from it instead of a call of the rule on their windows."""
        self._program_width = min(
            self._history.slots,
            max((key.width for p in self.programs if p is not None for key in p.keys), default=1),
        )
        """Trailing points of a window that the last-point forms read."""

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded, in label-row order."""
        return tuple(r.id for r in self.rules)

    def _reraise_interrupt(self, exc: BaseException) -> None:
        """Ctrl-C in a trusted in-process kernel stops the caller; in a rule worker (nothing
        outside can interrupt it) a ``KeyboardInterrupt`` is the rule's own doing: contained."""
        if isinstance(exc, KeyboardInterrupt) and not self.contain_interrupts:
            raise exc

    @property
    def n_series(self) -> int:
        """How many series currently have a history."""
        return len(self._history)

    def _run_one(
        self, r: int, timestamps: IntArray, values: FloatArray, k: int
    ) -> tuple[BoolArray | None, str]:
        """Rule ``r`` on the window ending with ``k`` new points: (last ``k`` labels, error)."""
        rule, fn = self.rules[r], self.functions[r]
        n = len(values)
        start = max(0, n - (rule.lookback - 1 + k))
        try:
            out = fn(values[start:].copy(), timestamps[start:].copy(), dict(rule.params))
            labels = validate_labels(out, n - start)
        except BaseException as exc:  # a rule failing (even SystemExit) must not stop others
            self._reraise_interrupt(exc)
            return None, _describe_exception(exc, rule.id)
        return labels[len(labels) - k :], ""

    def _run_packed(
        self, r: int, windows: Sequence[tuple[IntArray, FloatArray, int]], members: Sequence[int]
    ) -> list[BoolArray] | None:
        """Rule ``r`` ONCE on the concatenated windows of several series; None if it failed.

        Every member's window starts with ``LOOKBACK - 1`` points of its own history, so for a
        finite-lookback rule the labels of its new points cannot see the series before it.
        """
        rule, fn = self.rules[r], self.functions[r]
        h = rule.lookback - 1
        segs_t = [windows[i][0][len(windows[i][0]) - (h + windows[i][2]) :] for i in members]
        segs_v = [windows[i][1][len(windows[i][1]) - (h + windows[i][2]) :] for i in members]
        t = np.concatenate(segs_t)
        v = np.concatenate(segs_v)
        try:
            labels = validate_labels(fn(v, t, dict(rule.params)), len(v))
        except BaseException as exc:  # re-run one by one to attribute the error
            self._reraise_interrupt(exc)
            return None
        out: list[BoolArray] = []
        a = 0
        for seg in segs_v:
            out.append(labels[a + h : a + len(seg)])
            a += len(seg)
        return out

    def _label(
        self,
        windows: Sequence[tuple[IntArray, FloatArray, int]],
        pack: bool,
        steady: Steady | None = None,
        given: Mapping[int, BoolArray] | None = None,
    ) -> EngineResult:
        """Labels ``bool[n_rules, k]`` of the last ``k`` points of each window.

        ``steady`` = (item indices, their windows): items with a full history and one new
        point, whose windows are rows of one matrix. A packed rule runs once over all those rows
        (raveled); ``windows`` has empty placeholders for them. ``given``: per rule, the labels
        of the steady rows already computed (by its last-point form).
        """
        errors: list[RuleError] = []
        ks = [k for _, _, k in windows]
        offsets = np.concatenate(([0], np.cumsum(ks))).astype(np.int64)
        joined = np.zeros((len(self.rules), int(offsets[-1])), dtype=np.bool_)
        steady_items: list[int] = steady[0] if steady is not None else []
        steady_set = set(steady_items)
        # the other items (a steady push has none: no per-series loop per rule then)
        rest = [i for i, w in enumerate(windows) if w[2] and i not in steady_set]
        for r, rule in enumerate(self.rules):
            if r in self.skipped:  # quarantined: labels stay False
                continue
            done: set[int] = set()
            if steady is not None:
                idx, win = steady
                last = None if given is None else given.get(r)
                width = min(rule.lookback, win.store.slots)
                if last is None and pack and r in self.packed and len(idx) > 1:
                    last = self._run_rows(r, win.timestamps(width), win.values(width))
                if last is not None:
                    joined[r, offsets[idx]] = last
                else:
                    t_win, v_win = win.timestamps(width), win.values(width)
                    for j, i in enumerate(idx):
                        one, err = self._run_one(r, t_win[j], v_win[j], 1)
                        if one is None:
                            errors.append(RuleError(i, rule.id, err))
                        else:
                            joined[r, offsets[i]] = one[0]
            if pack and r in self.packed and len(rest) > 1:
                h = rule.lookback - 1
                members = [i for i in rest if len(windows[i][1]) - windows[i][2] >= h]
                if len(members) > 1:
                    res = self._run_packed(r, windows, members)
                    if res is not None:
                        for i, packed_labels in zip(members, res, strict=True):
                            joined[r, offsets[i] : offsets[i + 1]] = packed_labels
                        done.update(members)
            for i in rest:
                if i in done:
                    continue
                t, v, k = windows[i]
                one, err = self._run_one(r, t, v, k)
                if one is None:
                    errors.append(RuleError(i, rule.id, err))
                else:
                    joined[r, offsets[i] : offsets[i + 1]] = one
        labels = [joined[:, offsets[i] : offsets[i + 1]] for i in range(len(windows))]
        return EngineResult(labels, errors, joined)

    def _run_rows(self, r: int, t_own: IntArray, v_own: FloatArray) -> BoolArray | None:
        """Rule ``r`` ONCE over the raveled rows of full windows, each the rule's own
        ``LOOKBACK`` points (the window a series alone gives it); the label of each row's last
        point, or None if the rule failed (then it runs row by row to attribute the error)."""
        fn, rule = self.functions[r], self.rules[r]
        width = v_own.shape[1]
        try:
            # the rows are this call's own arrays: a rule that writes into them reaches no other
            out = fn(v_own.reshape(-1), t_own.reshape(-1), dict(rule.params))
            labels = validate_labels(out, v_own.size)
        except BaseException as exc:
            self._reraise_interrupt(exc)
            return None
        return labels.reshape(-1, width)[:, -1]

    def set_packed(self, rule_ids: Sequence[str]) -> None:
        """Rules that may run once over the concatenated windows of many series (see
        :meth:`push`); the detector enables this only for rules that passed its check."""
        wanted = set(rule_ids)
        self.packed = {r for r, rule in enumerate(self.rules) if rule.id in wanted}

    def batch(self, items: Sequence[tuple[IntArray, FloatArray]]) -> EngineResult:
        """Stateless: run every rule on each whole ``(timestamps, values)`` item."""
        return self._label([(t, v, len(v)) for t, v in items], pack=False)

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult:
        """Stateful: label the new points of each series and append them to its history.

        The caller guarantees that timestamps increase within and across pushes of a series, and
        names each series at most once per push. A rule enabled with :meth:`set_packed` runs
        once for all series whose history already holds ``LOOKBACK - 1`` points (their windows
        concatenated), which removes the per-call cost that dominates when many series get a few
        points each; series with a full history and one new point are handled as rows of one
        matrix (no per-series numpy work at all), and a rule with a last-point form
        (:attr:`programs`) computes only their last labels.
        """
        prepared = self.prepare(items)
        return self.finish(prepared, evaluate_requests(self.requests(prepared)))

    def prepare(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> Prepared:
        """The first half of :meth:`push`: append the new points to the history and return the
        windows to label (:meth:`requests` and :meth:`finish` do the rest)."""
        store = self._history
        if isinstance(items, SeriesBatch) and items.one_each and len(items) > 1:
            known = self._scrape_rows
            if known is None or known[0] is not items.names or known[1] != store.layout:
                rows_l = store.rows(items.names)
                if min(rows_l) >= 0:
                    rows_a = np.array(rows_l, dtype=np.int64)
                    known = self._scrape_rows = (
                        items.names,
                        store.layout,
                        rows_a,
                        store.run(rows_a),
                    )
                else:
                    known = None
            if known is not None:  # a scrape of series with full histories: rows of one matrix
                n = len(items)
                win = store.append_one(known[2], items.timestamps, items.values, known[3])
                return Prepared([(_EMPTY_T, _EMPTY_V, 1)] * n, (list(range(n)), win))
        rows_l = store.rows([s for s, _, _ in items])
        steady_idx = [
            i
            for i, (row, (_, _, v)) in enumerate(zip(rows_l, items, strict=True))
            if row >= 0 and len(v) == 1
        ]
        steady: Steady | None = None
        if len(steady_idx) > 1:
            if len(steady_idx) == len(items):
                rows = np.array(rows_l, dtype=np.int64)
                t_new = np.concatenate([t for _, t, _ in items]).astype(np.int64, copy=False)
                v_new = np.concatenate([v for _, _, v in items]).astype(np.float64, copy=False)
            else:
                rows = np.array([rows_l[i] for i in steady_idx], dtype=np.int64)
                t_new = np.array([items[i][1][0] for i in steady_idx], dtype=np.int64)
                v_new = np.array([items[i][2][0] for i in steady_idx], dtype=np.float64)
            steady = (steady_idx, store.append_one(rows, t_new, v_new))
        else:
            steady_idx = []
        in_steady = set(steady_idx)
        windows: list[tuple[IntArray, FloatArray, int]] = []
        for i, (series, t_new, v_new) in enumerate(items):
            if i in in_steady:
                windows.append((_EMPTY_T, _EMPTY_V, 1))
                continue
            t_old, v_old = store.get(series)
            t_win = np.concatenate((t_old, np.asarray(t_new, dtype=np.int64)))
            v_win = np.concatenate((v_old, np.asarray(v_new, dtype=np.float64)))
            windows.append((t_win, v_win, len(v_new)))
            store.set(series, t_win, v_win)
        return Prepared(windows, steady)

    def requests(self, prepared: Prepared) -> list[LastPointRequest]:
        """What the rules with a last-point form have to compute for the steady rows of a
        prepared push: (rule row, program, value windows)."""
        if prepared.steady is None:
            return []
        todo = [
            (r, prog)
            for r, prog in enumerate(self.programs)
            if prog is not None and r not in self.skipped
        ]
        if not todo:
            return []
        win = prepared.steady[1]
        v_win = win.view(self._program_width)
        series = SeriesRows(self.blocks, win.rows, self._history.stamps(win), win.first)
        return [(r, prog, v_win, series) for r, prog in todo]

    def finish(self, prepared: Prepared, given: Mapping[int, BoolArray]) -> EngineResult:
        """The second half of :meth:`push`: label the prepared windows, the steady rows of the
        rules in ``given`` (rule row -> labels) already labelled."""
        steady = prepared.steady
        if (
            steady is not None
            and len(steady[0]) == len(prepared.windows)
            and len(given.keys() | self.skipped) == len(self.rules)
        ):
            # a scrape whose every rule has its labels: nothing left to run
            joined = np.zeros((len(self.rules), len(prepared.windows)), dtype=np.bool_)
            for r, lab in given.items():
                joined[r] = lab
            return EngineResult(PointColumns(joined), [], joined)
        return self._label(prepared.windows, pack=True, steady=steady, given=given)

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """Replace a series' history with the last points of the given arrays (no labels)."""
        self._history.set(series, timestamps, values)

    def forget(self, series: Sequence[str]) -> None:
        """Drop the history of these series."""
        for s in series:
            self._history.forget(s)

    def history(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]:
        """The history of these series (those that have one), or of every series; copies."""
        return self._history.items(series)


class InProcessEngine:
    """Runs rules in the calling process. ONLY for trusted code (tests, benchmarks, own rules).

    LLM-written rules belong in :class:`WorkerEngine`; this engine exists to measure what the
    isolation costs and for rules a human wrote and reviewed.
    """

    def __init__(
        self, rules: Sequence[RuleCode], *, isolation: str = "none (in-process, trusted rules only)"
    ) -> None:
        self.isolation = isolation
        """Where the rules run, as :meth:`argos.online.detector.Detector.describe` says it."""
        self.kernel = RuleKernel(rules, last_point=True)
        self._quarantined: dict[str, str] = {}

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded."""
        return self.kernel.rule_ids

    @property
    def load_errors(self) -> Mapping[str, str]:
        """Rules that failed to load, with the reason."""
        return self.kernel.load_errors

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult:
        """See :meth:`RuleKernel.push`."""
        return self.kernel.push(items)

    def batch(self, items: Sequence[tuple[IntArray, FloatArray]]) -> EngineResult:
        """See :meth:`RuleKernel.batch`."""
        return self.kernel.batch(items)

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """See :meth:`RuleKernel.seed`."""
        self.kernel.seed(series, timestamps, values)

    def forget(self, series: Sequence[str]) -> None:
        """See :meth:`RuleKernel.forget`."""
        self.kernel.forget(series)

    def history(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]:
        """See :meth:`RuleKernel.history`."""
        return self.kernel.history(series)

    def set_packed(self, rule_ids: Sequence[str]) -> None:
        """See :meth:`RuleKernel.set_packed`."""
        self.kernel.set_packed(rule_ids)

    @property
    def quarantined(self) -> Mapping[str, str]:
        """Rules stopped for good (until a reload), with the reason."""
        return dict(self._quarantined)

    def quarantine(self, rule_id: str, reason: str) -> None:
        """Stop a rule: its labels are ``False`` from now on."""
        if rule_id in self.kernel.rule_ids:
            self._quarantined.setdefault(rule_id, reason)
            self.kernel.skipped.add(self.kernel.rule_ids.index(rule_id))

    def close(self) -> None:
        """Nothing to release."""
