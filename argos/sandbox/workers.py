"""Long-lived, locked-down rule worker processes that hold per-series state.

The online detector must not run LLM-written rule code in the service's own process, and it cannot
afford a fresh sandboxed child per point either. So it starts a few *rule workers*: fresh
interpreters (scrubbed environment, one BLAS thread, numpy preloaded) that lock themselves down
with the sandbox's primitives (:func:`argos.sandbox._zygote.lock_down`: new session, only the
protocol fd
open, empty scratch cwd, rlimits, empty network namespace, Landlock, ``nobody`` when root,
seccomp) *before* they compile any rule, then serve micro-batches over a socket pair until told to
stop. A worker keeps, per series, the last ``max(LOOKBACK) - 1`` points (a bounded history buffer),
so the parent only ships new points; the parent kills it from outside when a request exceeds its
wall-clock deadline (a rule cannot stop its own guard).

This module has three layers:

* :class:`RuleKernel`: plain numpy, runs compiled rules on windows and keeps the per-series
  history. It is what a worker runs; the in-process engine (trusted code only) uses it directly.
* the worker ``main`` and its framed protocol (``u32 header length, u32 payload length``, JSON
  header, raw little-endian arrays; never pickle);
* :class:`WorkerEngine` (parent side): a pool of workers sharded by series, with restart and
  re-seeding from a parent-side mirror of the history when a worker dies or times out.

Both engines implement :class:`RuleEngine`, which :mod:`argos.online.detector` uses.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import linecache
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from argos._types import BoolArray, FloatArray, IntArray

RuleFn = Callable[[FloatArray, IntArray, dict[str, Any]], Any]

PROTOCOL_FD = 3
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1 << 31
MAX_ERROR_CHARS = 2000
KERNEL_LAYERS = ("seccomp", "netns", "landlock", "drop_privileges")


class RuleWorkerError(RuntimeError):
    """A rule worker could not be started, refused its rules, or broke the protocol."""


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

    labels: list[BoolArray]
    errors: list[RuleError] = field(default_factory=list)
    joined: BoolArray | None = None

    def all_labels(self) -> BoolArray:
        """Every item's labels side by side, in item order."""
        if self.joined is None:
            self.joined = (
                np.concatenate(self.labels, axis=1) if self.labels else np.zeros((0, 0), np.bool_)
            )
        return self.joined


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

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Kernel: plain numpy, runs inside a worker (or in-process for trusted code)
# --------------------------------------------------------------------------------------------


def _rule_filename(rule_id: str) -> str:
    return f"<rule {rule_id}>"


def compile_rule(rule_id: str, code: str) -> RuleFn:
    """Execute a rule module's source in a fresh namespace and return its ``detect`` function.

    Raises whatever the module raises while loading, or ``TypeError`` when it defines no callable
    ``detect``.
    """
    filename = _rule_filename(rule_id)
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"argos_rule_{rule_id}"}
    exec(compile(code, filename, "exec"), namespace)
    fn = namespace.get("detect")
    if not callable(fn):
        raise TypeError("the rule module defines no callable detect(values, timestamps, params)")
    return fn  # type: ignore[no-any-return]


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

    Series whose history is full live in rows of two 2-D arrays, so giving many of them one new
    point each (the steady state of a service scraping many series) is a handful of numpy calls
    (:meth:`append_one`) instead of a few per series. Series still warming up (or seeded with
    fewer points) are kept as arrays of their own.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._rows: dict[str, int] = {}
        self._names: list[str] = []
        self._t = np.zeros((16, keep), dtype=np.int64)
        self._v = np.zeros((16, keep), dtype=np.float64)
        self._short: dict[str, tuple[IntArray, FloatArray]] = {}

    def __len__(self) -> int:
        return len(self._rows) + len(self._short)

    def row(self, series: str) -> int:
        """The row of a series with a full history, or -1."""
        return self._rows.get(series, -1)

    def get(self, series: str) -> tuple[IntArray, FloatArray]:
        """A series' history (empty arrays for an unknown series); copies, safe to keep."""
        row = self._rows.get(series)
        if row is not None:
            return self._t[row].copy(), self._v[row].copy()
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
            self._t[row] = t
            self._v[row] = v
        else:
            self._drop_row(series)
            self._short[series] = (t.copy(), v.copy())

    def append_one(
        self, rows: IntArray, timestamps: IntArray, values: FloatArray
    ) -> tuple[IntArray, FloatArray]:
        """One new point for each of these full rows: returns the windows ``(m, keep + 1)``
        (history then the new point); the rows then hold their last ``keep`` points."""
        t_win = np.concatenate((self._t[rows], timestamps[:, None]), axis=1)
        v_win = np.concatenate((self._v[rows], values[:, None]), axis=1)
        self._t[rows] = t_win[:, 1:]
        self._v[rows] = v_win[:, 1:]
        return t_win, v_win

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
        self._names.append(series)
        self._rows[series] = row
        return row

    def _drop_row(self, series: str) -> None:
        row = self._rows.pop(series, None)
        if row is None:
            return
        last = len(self._names) - 1
        if row != last:  # move the last row into the hole
            moved = self._names[last]
            self._t[row] = self._t[last]
            self._v[row] = self._v[last]
            self._names[row] = moved
            self._rows[moved] = row
        self._names.pop()


_EMPTY_T: IntArray = np.zeros(0, dtype=np.int64)
_EMPTY_V: FloatArray = np.zeros(0, dtype=np.float64)


class RuleKernel:
    """Compiled rules plus a bounded per-series history of the last ``max(LOOKBACK) - 1`` points.

    A rule with lookback ``L`` labels ``k`` new points by running on its last ``L - 1`` history
    points followed by the ``k`` new points, and keeping the last ``k`` labels. For a rule whose
    label at ``t`` depends only on points ``t - L + 1 .. t`` this equals running it on the whole
    series (:mod:`argos.online.detector` verifies that property when it loads a rule set).
    Each rule gets its own copies of the arrays, so a rule that writes into its inputs cannot
    corrupt the history or another rule's input.
    """

    def __init__(self, rules: Sequence[RuleCode]) -> None:
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
        self.packed: set[int] = set()

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded, in label-row order."""
        return tuple(r.id for r in self.rules)

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
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a rule failing (even SystemExit) must not stop others
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
        except KeyboardInterrupt:
            raise
        except BaseException:  # re-run one by one to attribute the error
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
        steady: tuple[list[int], IntArray, FloatArray] | None = None,
    ) -> EngineResult:
        """Labels ``bool[n_rules, k]`` of the last ``k`` points of each window.

        ``steady`` = (item indices, timestamp windows, value windows ``(m, history_len + 1)``):
        items with a full history and one new point, whose windows are rows of one matrix. A
        packed rule runs once over all those rows (raveled); ``windows`` has empty placeholders
        for them.
        """
        errors: list[RuleError] = []
        ks = [k for _, _, k in windows]
        offsets = np.concatenate(([0], np.cumsum(ks))).astype(np.int64)
        joined = np.zeros((len(self.rules), int(offsets[-1])), dtype=np.bool_)
        steady_items: list[int] = steady[0] if steady is not None else []
        steady_set = set(steady_items)
        for r, rule in enumerate(self.rules):
            done: set[int] = set(steady_set)
            if steady is not None:
                idx, t_win, v_win = steady
                last = None
                if pack and r in self.packed and len(idx) > 1:
                    last = self._run_rows(r, t_win, v_win)
                if last is not None:
                    joined[r, offsets[idx]] = last
                else:
                    for j, i in enumerate(idx):
                        one, err = self._run_one(r, t_win[j], v_win[j], 1)
                        if one is None:
                            errors.append(RuleError(i, rule.id, err))
                        else:
                            joined[r, offsets[i]] = one[0]
            if pack and r in self.packed:
                h = rule.lookback - 1
                members = [
                    i
                    for i, (_, v, k) in enumerate(windows)
                    if k and i not in steady_set and len(v) - k >= h
                ]
                if len(members) > 1:
                    res = self._run_packed(r, windows, members)
                    if res is not None:
                        for i, packed_labels in zip(members, res, strict=True):
                            joined[r, offsets[i] : offsets[i + 1]] = packed_labels
                        done.update(members)
            for i, (t, v, k) in enumerate(windows):
                if i in done or k == 0:
                    continue
                one, err = self._run_one(r, t, v, k)
                if one is None:
                    errors.append(RuleError(i, rule.id, err))
                else:
                    joined[r, offsets[i] : offsets[i + 1]] = one
        labels = [joined[:, offsets[i] : offsets[i + 1]] for i in range(len(windows))]
        return EngineResult(labels, errors, joined)

    def _run_rows(self, r: int, t_win: IntArray, v_win: FloatArray) -> BoolArray | None:
        """Rule ``r`` ONCE over the raveled rows of full windows; the label of each row's last
        point, or None if the rule failed (then it runs row by row to attribute the error)."""
        fn, rule = self.functions[r], self.rules[r]
        width = v_win.shape[1]
        try:
            # flatten() copies: a rule that writes into its input cannot reach the next rule's
            out = fn(v_win.flatten(), t_win.flatten(), dict(rule.params))
            labels = validate_labels(out, v_win.size)
        except KeyboardInterrupt:
            raise
        except BaseException:
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
        matrix (no per-series numpy work at all).
        """
        store = self._history
        steady_idx = [i for i, (s, _, v) in enumerate(items) if len(v) == 1 and store.row(s) >= 0]
        steady: tuple[list[int], IntArray, FloatArray] | None = None
        if len(steady_idx) > 1:
            rows = np.fromiter((store.row(items[i][0]) for i in steady_idx), np.int64)
            t_new = np.fromiter((items[i][1][0] for i in steady_idx), np.int64)
            v_new = np.fromiter((items[i][2][0] for i in steady_idx), np.float64)
            steady = (steady_idx, *store.append_one(rows, t_new, v_new))
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
        return self._label(windows, pack=True, steady=steady)

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

    isolation = "none (in-process, trusted rules only)"

    def __init__(self, rules: Sequence[RuleCode]) -> None:
        self.kernel = RuleKernel(rules)

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

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------------------------
# Framed protocol (both sides)
# --------------------------------------------------------------------------------------------

_FRAME = struct.Struct("<II")


Payload = bytes | bytearray | Sequence[npt.NDArray[Any]]


def _views(payload: Payload) -> list[memoryview]:
    if isinstance(payload, bytes | bytearray):
        return [memoryview(payload)] if payload else []
    return [np.ascontiguousarray(p).data.cast("B") for p in payload if p.nbytes]


def send_frame(fd: int, header: Mapping[str, Any], payload: Payload = b"") -> None:
    """Write one frame: lengths, JSON header, raw payload (bytes, or arrays sent one after the
    other without joining them)."""
    views = _views(payload)
    head = json.dumps(header, separators=(",", ":")).encode()
    total = sum(v.nbytes for v in views)
    views.insert(0, memoryview(_FRAME.pack(len(head), total) + head))
    while views:
        k = os.writev(fd, views)
        while views and k >= views[0].nbytes:
            k -= views[0].nbytes
            views.pop(0)
        if views and k:
            views[0] = views[0][k:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    """Read exactly ``n`` bytes into one buffer (no joining of chunks)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("rule worker did not answer in time")
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError("rule worker closed the connection")
        got += k
    return buf


def recv_frame(
    fd: int, deadline: float | None = None, max_payload: int = MAX_PAYLOAD_BYTES
) -> tuple[dict[str, Any], bytearray]:
    """Read one frame; raises ``EOFError``, ``TimeoutError`` or ``RuleWorkerError``.

    The announced sizes are checked before anything is allocated (the parent passes the exact
    size it expects, so a compromised worker cannot make it allocate more).
    """
    head_len, payload_len = _FRAME.unpack(_read_exact(fd, _FRAME.size, deadline))
    if head_len > MAX_HEADER_BYTES or payload_len > max_payload:
        raise RuleWorkerError(f"frame too large ({head_len} + {payload_len} bytes)")
    header = json.loads(_read_exact(fd, head_len, deadline))
    if not isinstance(header, dict):
        raise RuleWorkerError("frame header is not a JSON object")
    payload = _read_exact(fd, payload_len, deadline) if payload_len else bytearray()
    return header, payload


def _pack_points(arrays: Sequence[tuple[IntArray, FloatArray]]) -> list[npt.NDArray[Any]]:
    """Timestamps then values of all items, as two contiguous little-endian buffers."""
    if not arrays:
        return []
    if len(arrays) == 1:
        t, v = arrays[0]
        return [np.ascontiguousarray(t, dtype="<i8"), np.ascontiguousarray(v, dtype="<f8")]
    ts = np.concatenate([np.asarray(t, dtype="<i8") for t, _ in arrays])
    vs = np.concatenate([np.asarray(v, dtype="<f8") for _, v in arrays])
    return [ts, vs]


def _unpack_points(
    payload: bytes | bytearray, lengths: Sequence[int]
) -> list[tuple[IntArray, FloatArray]]:
    total = int(sum(lengths))
    if len(payload) != 16 * total:
        raise RuleWorkerError(f"payload has {len(payload)} bytes, expected {16 * total}")
    ts = np.frombuffer(payload, dtype="<i8", count=total).astype(np.int64, copy=False)
    vs = np.frombuffer(payload, dtype="<f8", count=total, offset=8 * total).astype(
        np.float64, copy=False
    )
    out: list[tuple[IntArray, FloatArray]] = []
    a = 0
    for n in lengths:
        out.append((ts[a : a + n], vs[a : a + n]))
        a += n
    return out


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------


def lock_down_current_process(allow_unconfined: bool) -> dict[str, bool]:
    """Lock the current (worker) process down with the sandbox's primitives; return the layers.

    The protocol must already be on fd 3 (everything else is closed). This is the one place that
    depends on the sandbox's internals (:mod:`argos.sandbox._zygote`); swap it here if they move.
    Raises ``RuleWorkerError`` when no kernel layer works and ``allow_unconfined`` is false.
    """
    from argos.sandbox import _zygote

    info = _zygote.probe()
    layers = {k: bool(v) for k, v in info["layers"].items()}
    if not any(layers.get(k, False) for k in KERNEL_LAYERS) and not allow_unconfined:
        raise RuleWorkerError(
            "no kernel isolation layer (seccomp, netns, landlock, privilege drop) works on this "
            "host; refusing to run rules unconfined (allow_unconfined=True overrides)"
        )
    scratch = os.environ["ARGOS_WORKER_SCRATCH"]
    limits = {"cpu_seconds": 10**7, "memory_bytes": int(os.environ["ARGOS_WORKER_MEMORY_BYTES"])}
    _zygote.lock_down(layers, limits, scratch)
    return layers


def _handle(
    kernel: RuleKernel, header: Mapping[str, Any], payload: bytearray
) -> tuple[Any, Payload]:
    op = header.get("op")
    if op == "push":
        names = [str(s) for s in header["series"]]
        lengths = [int(n) for n in header["lengths"]]
        arrays = _unpack_points(payload, lengths)
        res = kernel.push([(s, t, v) for s, (t, v) in zip(names, arrays, strict=True)])
    elif op == "batch":
        res = kernel.batch(_unpack_points(payload, [int(n) for n in header["lengths"]]))
    elif op == "seed":
        ((t, v),) = _unpack_points(payload, [int(header["length"])])
        kernel.seed(str(header["series"]), t, v)
        return {"ok": True}, b""
    elif op == "forget":
        kernel.forget([str(s) for s in header["series"]])
        return {"ok": True}, b""
    elif op == "set_packed":
        kernel.set_packed([str(r) for r in header["rules"]])
        return {"ok": True}, b""
    elif op == "stats":
        return {"ok": True, "series": kernel.n_series, "pid": os.getpid()}, b""
    else:
        return {"ok": False, "error": f"unknown op {op!r}"}, b""
    errors = [[e.item, e.rule_id, e.message] for e in res.errors]
    return {"ok": True, "errors": errors}, [res.all_labels().view(np.uint8)]


def main() -> None:
    """Worker entry point: lock down, load the rules, serve frames on fd 3 until EOF."""
    fd = int(os.environ.get("ARGOS_WORKER_FD", "-1"))
    if fd < 0:
        sys.exit(
            "argos.sandbox.workers is started by argos.sandbox.workers.WorkerEngine, not by hand"
        )
    if fd != PROTOCOL_FD:
        os.dup2(fd, PROTOCOL_FD)
        os.close(fd)
    fd = PROTOCOL_FD
    os.set_inheritable(fd, False)
    allow_unconfined = os.environ.get("ARGOS_WORKER_ALLOW_UNCONFINED") == "1"
    try:
        layers = lock_down_current_process(allow_unconfined)
    except BaseException as exc:
        send_frame(fd, {"ok": False, "error": f"lock-down failed: {type(exc).__name__}: {exc}"})
        os._exit(3)
    for name in list(os.environ):  # nothing of the parent's environment stays visible
        del os.environ[name]
    header, _ = recv_frame(fd)
    rules = [
        RuleCode(str(r["id"]), str(r["code"]), dict(r["params"]), int(r["lookback"]))
        for r in header["rules"]
    ]
    kernel = RuleKernel(rules)
    send_frame(
        fd,
        {
            "ok": True,
            "rule_ids": list(kernel.rule_ids),
            "load_errors": kernel.load_errors,
            "layers": layers,
        },
    )
    while True:
        try:
            header, payload = recv_frame(fd)
        except EOFError:
            os._exit(0)
        try:
            reply, blob = _handle(kernel, header, payload)
        except Exception as exc:
            reply, blob = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}, b""
        send_frame(fd, reply, blob)


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------

# Workers die with the thread that started them (PR_SET_PDEATHSIG), so every worker is spawned
# from this one long-lived thread, never from a short-lived request thread.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argos-rule-worker-spawner")


def _worker_env(memory_bytes: int, fd: int, allow_unconfined: bool, scratch: str) -> dict[str, str]:
    env = {
        "ARGOS_WORKER_SCRATCH": scratch,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "TMPDIR": "/tmp",
        "ARGOS_WORKER_FD": str(fd),
        "ARGOS_WORKER_MEMORY_BYTES": str(memory_bytes),
        "ARGOS_WORKER_ALLOW_UNCONFINED": "1" if allow_unconfined else "0",
    }
    # keep freed memory in the heap: otherwise every large temporary array of a rule is mapped,
    # page-faulted and unmapped again on each request (2-3x the compute time on big batches)
    env["MALLOC_TRIM_THRESHOLD_"] = str(256 << 20)
    env["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


@dataclass(frozen=True)
class WorkerLimits:
    """Limits of one rule worker.

    Attributes:
        request_seconds: wall-clock deadline of one request (a micro-batch); past it the worker
            is killed, restarted and re-seeded, and the batch's labels are ``False`` with a
            ``timeout`` error per rule.
        start_seconds: deadline for start-up (interpreter, numpy, probe, lock-down, compile).
        memory_mb: address space the worker may add after its imports (RLIMIT_AS).
        allow_unconfined: run even when no kernel isolation layer works on this host.
    """

    request_seconds: float = 10.0
    start_seconds: float = 60.0
    memory_mb: int = 1024
    allow_unconfined: bool = False


class _Worker:
    """One worker process and its socket (not thread-safe; :class:`WorkerEngine` locks)."""

    def __init__(self, rules: Sequence[RuleCode], limits: WorkerLimits) -> None:
        self.limits = limits
        self.dead = False
        parent_sock, child_sock = socket.socketpair()
        self._sock = parent_sock
        self.fd = parent_sock.fileno()
        child_fd = child_sock.fileno()
        self.scratch = tempfile.mkdtemp(prefix="argos-rule-worker-")
        os.chmod(self.scratch, 0o755)  # still enterable after the worker drops to nobody
        env = _worker_env(
            limits.memory_mb * 1024 * 1024, child_fd, limits.allow_unconfined, self.scratch
        )
        # -I: no user site, no PYTHONPATH, no cwd; the package's own location is put on the path
        # explicitly so an uninstalled checkout works too
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from argos.sandbox.workers import main; main()"
        )
        cmd = [sys.executable, "-I", "-c", boot]
        try:
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(child_fd,),
                env=env,
                cwd="/",
            ).result()
        finally:
            child_sock.close()
        deadline = time.monotonic() + limits.start_seconds
        try:
            send_frame(self.fd, {"op": "load", "rules": [r.to_json() for r in rules]})
            reply, _ = recv_frame(self.fd, deadline)
        except (OSError, EOFError, TimeoutError, RuleWorkerError) as exc:
            self.kill()
            raise RuleWorkerError(f"rule worker failed to start: {exc}") from exc
        if not reply.get("ok"):
            self.kill()
            raise RuleWorkerError(f"rule worker failed to start: {reply.get('error')}")
        self.rule_ids: tuple[str, ...] = tuple(reply["rule_ids"])
        self.load_errors: dict[str, str] = dict(reply["load_errors"])
        self.layers: dict[str, bool] = dict(reply["layers"])

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return int(self.proc.pid)

    def request(
        self, header: Mapping[str, Any], payload: Payload = b"", max_reply: int = 0
    ) -> tuple[dict[str, Any], bytearray]:
        """One round trip under the request deadline; the reply payload may have at most
        ``max_reply`` bytes."""
        if self.dead:  # never touch a closed fd number: the process may have reused it
            raise RuleWorkerError("the rule worker is dead")
        send_frame(self.fd, header, payload)
        reply, blob = recv_frame(
            self.fd, time.monotonic() + self.limits.request_seconds, max_payload=max_reply
        )
        if not reply.get("ok"):
            raise RuleWorkerError(f"rule worker refused the request: {reply.get('error')}")
        return reply, blob

    def kill(self) -> None:
        """Kill the process (from outside) and reap it."""
        self.dead = True
        with contextlib.suppress(ProcessLookupError, OSError):
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._sock.close()
        with contextlib.suppress(OSError):
            os.rmdir(self.scratch)

    def close(self) -> None:
        """Ask the worker to exit (EOF), then make sure it did."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


def _decode_labels(
    blob: bytes | bytearray, lengths: Sequence[int], n_rules: int
) -> tuple[BoolArray, list[BoolArray]]:
    """The worker's ``bool[n_rules, total]`` label matrix and a view of it per item."""
    total = int(sum(lengths))
    if len(blob) != n_rules * total:
        raise RuleWorkerError(f"labels have {len(blob)} bytes, expected {n_rules * total}")
    joined = np.frombuffer(blob, dtype=np.uint8).reshape(n_rules, total) != 0
    bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    return joined, [joined[:, a:b] for a, b in itertools.pairwise(bounds)]


class WorkerEngine:
    """A pool of isolated rule workers; each series lives on one worker (hash of its id).

    Thread-safe: each worker has a lock; requests touching several workers take them one by one.
    The parent keeps a mirror of every series' history (``max(LOOKBACK) - 1`` points), used to
    re-seed a worker that was restarted after a crash or a timeout, so a crash costs the labels of
    one micro-batch, not the state. Counters: ``restarts``, ``timeouts``.
    """

    def __init__(
        self,
        rules: Sequence[RuleCode],
        *,
        workers: int = 1,
        limits: WorkerLimits | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._rules = list(rules)
        self.limits = limits or WorkerLimits()
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(self._rules, self.limits))
        except BaseException:
            self.close()
            raise
        first = self._workers[0]
        self._rule_ids = first.rule_ids
        self._load_errors = first.load_errors
        self.layers = first.layers
        lookbacks = {r.id: r.lookback for r in self._rules}
        self.history_len = max((lookbacks[i] for i in self._rule_ids), default=1) - 1
        self._locks = [threading.Lock() for _ in self._workers]
        self._mirror = HistoryStore(self.history_len)
        self._mirror_lock = threading.Lock()
        self._rr = 0
        self._packed: list[str] = []
        self.restarts = 0
        self.timeouts = 0
        self._closed = False

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded, in label-row order."""
        return self._rule_ids

    @property
    def load_errors(self) -> Mapping[str, str]:
        """Rules that failed to load in the worker, with the reason."""
        return self._load_errors

    @property
    def isolation(self) -> str:
        """Which kernel layers the workers run under."""
        on = [k for k in KERNEL_LAYERS if self.layers.get(k)]
        return "isolated worker: " + (", ".join(on) if on else "NO kernel layers (unconfined)")

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (for tests and diagnostics)."""
        return [w.pid for w in self._workers]

    def _shard(self, series: str) -> int:
        return zlib.crc32(series.encode()) % len(self._workers)

    def _restart(self, idx: int) -> None:
        """Replace worker ``idx`` (already dead or killed) and re-seed its series from the
        mirror; raises :class:`RuleWorkerError` when the new worker fails too."""
        self._workers[idx].kill()
        self._workers[idx] = _Worker(self._rules, self.limits)
        self.restarts += 1
        w = self._workers[idx]
        try:
            if self._packed:
                w.request({"op": "set_packed", "rules": self._packed})
            with self._mirror_lock:
                seeds = [(s, t, v) for s, t, v in self._mirror.items() if self._shard(s) == idx]
            for s, t, v in seeds:
                w.request({"op": "seed", "series": s, "length": len(v)}, _pack_points([(t, v)]))
        except (TimeoutError, EOFError, OSError) as exc:
            w.kill()
            raise RuleWorkerError(f"restarted worker failed while re-seeding: {exc}") from exc

    def _control(self, idx: int, header: dict[str, Any], payload: Payload = b"") -> None:
        """A state-changing request whose effect is already in the parent's mirror or settings:
        if the worker fails it, a restart re-applies it from there."""
        try:
            self._workers[idx].request(header, payload)
        except (TimeoutError, EOFError, OSError, RuleWorkerError):
            with contextlib.suppress(RuleWorkerError):
                self._restart(idx)

    def _call(
        self, idx: int, header: dict[str, Any], payload: Payload, lengths: Sequence[int]
    ) -> EngineResult:
        n_rules = len(self._rule_ids)
        w = self._workers[idx]
        try:
            reply, blob = w.request(header, payload, max_reply=n_rules * int(sum(lengths)))
            joined, labels = _decode_labels(blob, lengths, n_rules)
        except (TimeoutError, EOFError, OSError, RuleWorkerError) as exc:
            if isinstance(exc, TimeoutError):
                self.timeouts += 1
                why = f"timeout: the micro-batch took over {self.limits.request_seconds:g} s"
            else:
                why = f"worker crashed: {exc}"
            try:
                self._restart(idx)
            except RuleWorkerError as restart_exc:  # the next request tries again
                why += f"; restart failed: {restart_exc}"
            errors = [RuleError(i, rid, why) for i in range(len(lengths)) for rid in self._rule_ids]
            return EngineResult([np.zeros((n_rules, n), dtype=np.bool_) for n in lengths], errors)
        errors = [RuleError(int(i), str(r), str(m)) for i, r, m in reply.get("errors", [])]
        return EngineResult(labels, errors, joined)

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult:
        """Label new points of several series (one round trip per worker touched)."""
        self._check_open()
        by_worker: dict[int, list[int]] = {}
        if len(self._workers) == 1:
            by_worker[0] = list(range(len(items)))
        else:
            for i, (s, _, _) in enumerate(items):
                by_worker.setdefault(self._shard(s), []).append(i)
        labels: list[BoolArray] = [np.zeros((0, 0), dtype=np.bool_)] * len(items)
        errors: list[RuleError] = []
        for idx, members in by_worker.items():
            sub = [items[i] for i in members]
            lengths = [len(v) for _, _, v in sub]
            header = {"op": "push", "series": [s for s, _, _ in sub], "lengths": lengths}
            payload = _pack_points([(t, v) for _, t, v in sub])
            with self._locks[idx]:
                # mirror first: a restart during this call re-seeds the worker with these points
                self._update_mirror(sub)
                res = self._call(idx, header, payload, lengths)
            if len(by_worker) == 1:  # items in order on one worker: keep its label matrix
                return res
            for j, i in enumerate(members):
                labels[i] = res.labels[j]
            errors += [RuleError(members[e.item], e.rule_id, e.message) for e in res.errors]
        return EngineResult(labels, errors)

    def _update_mirror(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> None:
        store = self._mirror
        with self._mirror_lock:
            steady = [(store.row(s), t[0], v[0]) for s, t, v in items if len(v) == 1]
            steady = [x for x in steady if x[0] >= 0]
            if steady:
                rows, ts, vs = zip(*steady, strict=True)
                store.append_one(
                    np.array(rows, np.int64), np.array(ts, np.int64), np.array(vs, np.float64)
                )
            done = {int(r) for r, _, _ in steady}
            for s, t, v in items:
                if len(v) == 1 and store.row(s) in done:
                    continue
                t_old, v_old = store.get(s)
                store.set(s, np.concatenate((t_old, t)), np.concatenate((v_old, v)))

    def batch(self, items: Sequence[tuple[IntArray, FloatArray]]) -> EngineResult:
        """Stateless run on whole arrays, on the next worker in turn."""
        self._check_open()
        lengths = [len(v) for _, v in items]
        idx = self._rr % len(self._workers)
        self._rr += 1
        with self._locks[idx]:
            return self._call(
                idx, {"op": "batch", "lengths": lengths}, _pack_points(list(items)), lengths
            )

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """Set a series' history (e.g. carried over from a previous rule set)."""
        self._check_open()
        idx = self._shard(series)
        with self._mirror_lock:
            self._mirror.set(series, np.asarray(timestamps), np.asarray(values))
            t, v = self._mirror.get(series)
        with self._locks[idx]:
            self._control(
                idx, {"op": "seed", "series": series, "length": len(v)}, _pack_points([(t, v)])
            )

    def forget(self, series: Sequence[str]) -> None:
        """Drop series state everywhere."""
        self._check_open()
        by_worker: dict[int, list[str]] = {}
        for s in series:
            by_worker.setdefault(self._shard(s), []).append(s)
        with self._mirror_lock:
            for s in series:
                self._mirror.forget(s)
        for idx, names in by_worker.items():
            with self._locks[idx]:
                self._control(idx, {"op": "forget", "series": names})

    def set_packed(self, rule_ids: Sequence[str]) -> None:
        """See :meth:`RuleKernel.set_packed` (applied to every worker, and after restarts)."""
        self._check_open()
        self._packed = list(rule_ids)
        for idx in range(len(self._workers)):
            with self._locks[idx]:
                self._control(idx, {"op": "set_packed", "rules": self._packed})

    def history(
        self, series: Sequence[str] | None = None
    ) -> Iterator[tuple[str, IntArray, FloatArray]]:
        """The parent-side mirror of the history of these series (those that have one), or of
        every series (to carry state across reloads, or to snapshot it)."""
        with self._mirror_lock:
            items = list(self._mirror.items(series))
        yield from items

    def _check_open(self) -> None:
        if self._closed:
            raise RuleWorkerError("the rule engine is closed")

    def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        for w in self._workers:
            w.close()
        self._workers = []

    def __enter__(self) -> WorkerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()
