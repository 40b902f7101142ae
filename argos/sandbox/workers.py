"""Long-lived, locked-down rule worker processes, one per rule (the parent side).

The online detector must not run LLM-written rule code in the service's own process, and it cannot
afford a fresh sandboxed child per point either. So :class:`WorkerEngine` runs long-lived *rule
workers* (:mod:`argos.sandbox.worker_main`), forked by one zygote per process (an interpreter
with the scrubbed environment of :func:`argos.sandbox.process.scrubbed_env`, one BLAS thread and
numpy loaded, that never runs rule code; forking it costs milliseconds and shares its pages).
Each worker locks itself down with the sandbox's primitives
(:func:`argos.sandbox.process.lock_down`) *before* it receives its rule, then serves
micro-batches over a socket pair (the frames of :mod:`argos.sandbox.process`) until told to
stop. A worker keeps, per series, the last ``LOOKBACK - 1`` points of its rule
(:class:`~argos.sandbox.kernel.RuleKernel`), so the parent only ships new points. Workers run
under ``SCHED_BATCH``, so a worker woken by a request does not preempt the parent while it sends
the same request to the other rules' workers.

**One process per rule.** A rule with arbitrary code (the static gate is bypassable) can rewrite
anything in its own interpreter: ``np.asarray``, the kernel's validation, another rule's function
found through ``gc``, the protocol descriptor. So no two rules share a process: whatever a rule
does to its process changes only its own labels and errors, which it controls anyway. The trust
boundary is the rule set: the series of one set are still packed into one call per rule (a rule
sees the other series of its own set, never another set's: :mod:`argos.online.fleet`). A push
sends the same request (one buffer) to every rule's worker, then collects the replies as they
complete, so the rules run in parallel and a push costs about the slowest rule.

**The protocol channel is not trusted.** Every request carries a fresh random id that the reply
must echo; a reply is read incrementally and must be exactly one frame of exactly the expected
size, with nothing after it. A forged, extra or desynchronised frame is a protocol error: the
worker is killed and restarted, and its rule (the only one in the process) is blamed.

**Budgets and quarantine.** Each request has a hard wall-clock deadline
(:attr:`WorkerLimits.request_seconds`, then the worker is killed from outside) and each push a
per-rule budget (:attr:`WorkerLimits.budget_seconds` plus a per-point allowance). A rule over its
budget (or past the deadline) on :attr:`WorkerLimits.strikes` consecutive requests is
*quarantined*: its worker is stopped, its labels are ``False`` from then on, and
:attr:`WorkerEngine.quarantined` says why, until the rule set is reloaded. The detector's
alarm-rate guard quarantines through :meth:`WorkerEngine.quarantine` too.

**Restarts happen outside every lock.** A worker that died, hung or broke the protocol is killed
at once and replaced by a background thread (a rule's module-level code may be slow); meanwhile
its rule's labels are ``False`` with a ``restarting`` error. The new worker is re-seeded from a
parent-side mirror of the history under the shard's lock, which costs one frame, not an import.
A crash therefore costs the labels of one rule for the micro-batches until it is back, never the
state, and never the other rules' labels.

:class:`WorkerEngine` shards series over ``workers`` groups of rule workers (hash of the series
id). It implements :class:`~argos.sandbox.kernel.RuleEngine`, like
:class:`~argos.sandbox.kernel.InProcessEngine`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import select
import signal
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from argos._types import BoolArray, FloatArray, IntArray
from argos.sandbox.kernel import MAX_ERROR_CHARS, EngineResult, HistoryStore, RuleCode, RuleError
from argos.sandbox.process import (
    FRAME,
    KERNEL_LAYERS,
    Payload,
    ProtocolError,
    pack_points,
    recv_frame,
    send_frame,
    unpack_frame,
)
from argos.sandbox.worker_zygote import ZygoteError, worker_zygote


class RuleWorkerError(RuntimeError):
    """A rule worker could not be started, refused its rule, or broke the protocol."""


_FAILURES = (TimeoutError, EOFError, OSError, ProtocolError, RuleWorkerError)
"""What a request to a worker can raise when the worker died, hung or misbehaved."""

MAX_REPLY_HEADER = 1 << 20
"""A reply header (status, request id, rule errors) over this many bytes is a protocol error."""

_RESTARTER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argos-rule-worker-restart")


@dataclass(frozen=True)
class WorkerLimits:
    """Limits of the rule workers (each rule's worker gets them).

    Attributes:
        request_seconds: hard wall-clock deadline of one request (a micro-batch); past it the
            worker is killed and restarted, and the rule's labels of that batch are ``False``
            with a ``timeout`` error.
        budget_seconds: a rule's time budget per stream push, plus ``budget_seconds_per_point``
            for every point of the push; a rule over it is struck.
        budget_seconds_per_point: see ``budget_seconds``.
        strikes: consecutive struck requests (over budget, or past the deadline) after which a
            rule is quarantined (stopped; labels ``False`` until the rule set is reloaded).
        start_seconds: deadline for start-up (interpreter, numpy, probe, lock-down, compile).
        memory_mb: address space a worker may add after its imports (RLIMIT_AS).
        allow_unconfined: run even when no kernel isolation layer works on this host.
    """

    request_seconds: float = 10.0
    budget_seconds: float = 2.0
    budget_seconds_per_point: float = 2e-4
    strikes: int = 3
    start_seconds: float = 60.0
    memory_mb: int = 1024
    allow_unconfined: bool = False


class _Worker:
    """One worker process (one rule) and its socket; not thread-safe (:class:`WorkerEngine`
    locks). The constructor starts the process and sends the rule; :meth:`wait_ready` reads the
    answer, so many workers start in parallel."""

    def __init__(self, rule: RuleCode, limits: WorkerLimits) -> None:
        self.limits = limits
        self.dead = False
        self.rule_id = rule.id
        self._nonce = 0
        self.scratch = tempfile.mkdtemp(prefix="argos-rule-worker-")
        os.chmod(self.scratch, 0o755)  # still enterable after the worker drops to nobody
        self._pidfd = -1
        try:
            try:
                zygote = worker_zygote(limits.allow_unconfined, limits.start_seconds)
                try:
                    self._pid, self._sock = zygote.spawn(self.scratch, limits.memory_mb << 20)
                except ZygoteError:  # the zygote died under us: once more with a new one
                    zygote = worker_zygote(limits.allow_unconfined, limits.start_seconds)
                    self._pid, self._sock = zygote.spawn(self.scratch, limits.memory_mb << 20)
            except ZygoteError as exc:
                raise RuleWorkerError(str(exc)) from exc
            # a pidfd names this process even after the zygote reaped it: a kill never hits a
            # process that reused the pid
            try:
                self._pidfd = os.pidfd_open(self._pid)
            except ProcessLookupError:  # already gone (its first frame will say why)
                self._pidfd = -1
            except OSError:  # no pidfds on this kernel: kill by pid
                self._pidfd = -2
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(self.scratch)
            raise
        self.fd = self._sock.fileno()
        self._deadline = time.monotonic() + limits.start_seconds
        try:
            send_frame(self.fd, {"op": "load", "rules": [rule.to_json()]})
        except _FAILURES as exc:
            self.kill()
            raise RuleWorkerError(f"rule worker failed to start: {exc}") from exc
        self.rule_ids: tuple[str, ...] = ()
        self.load_errors: dict[str, str] = {}
        self.layers: dict[str, bool] = {}

    def wait_ready(self) -> _Worker:
        """Read the worker's answer to its rule (lock-down done, rule compiled)."""
        try:
            reply, _ = recv_frame(self.fd, self._deadline, max_payload=0)
        except _FAILURES as exc:
            self.kill()
            raise RuleWorkerError(f"rule worker failed to start: {exc}") from exc
        if not reply.get("ok"):
            self.kill()
            raise RuleWorkerError(f"rule worker failed to start: {reply.get('error')}")
        self.rule_ids = tuple(str(r) for r in reply["rule_ids"])
        self.load_errors = {str(k): str(v) for k, v in dict(reply["load_errors"]).items()}
        self.layers = {str(k): bool(v) for k, v in dict(reply["layers"]).items()}
        return self

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._pid

    def send(self, header: Mapping[str, Any], payload: Payload = b"") -> None:
        """Send one request with a fresh random id (the reply must echo it)."""
        if self.dead:  # never touch a closed fd number: the process may have reused it
            raise RuleWorkerError("the rule worker is dead")
        self._nonce = secrets.randbits(62) + 1
        send_frame(self.fd, {**header, "id": self._nonce}, payload)

    def check_reply(self, reply: Mapping[str, Any]) -> None:
        """The reply must answer the request just sent, and say ``ok``."""
        if reply.get("id") != self._nonce:
            raise ProtocolError("a reply that does not answer the request (forged or stale)")
        self._nonce = 0
        if not reply.get("ok"):
            raise RuleWorkerError(
                f"rule worker refused the request: {str(reply.get('error'))[:MAX_ERROR_CHARS]}"
            )

    def request(
        self, header: Mapping[str, Any], payload: Payload = b"", max_reply: int = 0
    ) -> tuple[dict[str, Any], bytearray]:
        """One round trip under the request deadline (control requests; pushes go through
        :class:`_Collector`); the reply payload may have at most ``max_reply`` bytes and nothing
        may follow it."""
        self.send(header, payload)
        reply, blob = recv_frame(
            self.fd,
            time.monotonic() + self.limits.request_seconds,
            max_payload=max_reply,
            max_header=MAX_REPLY_HEADER,
        )
        self.check_reply(reply)
        if select.select([self.fd], [], [], 0)[0]:
            raise ProtocolError("unexpected data after the reply (a forged frame)")
        return reply, blob

    def kill(self) -> None:
        """Kill the process (from outside; the zygote reaps it)."""
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            os.close(self._pidfd)
        elif self._pidfd == -2 and not self.dead:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
        self._pidfd = -1
        self.dead = True
        self._sock.close()
        with contextlib.suppress(OSError):
            os.rmdir(self.scratch)

    def close(self) -> None:
        """Stop the worker (it keeps no state worth a graceful exit)."""
        if not self.dead:
            self.kill()


class _Collector:
    """Reads the replies of several workers as they complete (never blocking on one).

    Each reply is read into its own buffer and parsed with
    :func:`~argos.sandbox.process.unpack_frame`; it must be exactly one frame whose payload has
    exactly ``expect`` bytes. ``done[w]`` is the time its reply completed (``time.monotonic``),
    so a rule is timed by when its own answer was in, whatever the others did.
    """

    def __init__(self, workers: Mapping[int, _Worker], expect: int, deadline: float) -> None:
        self.pending = dict(workers)
        self.expect = expect
        self.deadline = deadline
        self.bufs = {w: bytearray() for w in workers}
        self.replies: dict[int, tuple[dict[str, Any], memoryview]] = {}
        self.failed: dict[int, BaseException] = {}
        self.done: dict[int, float] = {}

    def run(self) -> None:
        """Collect until every worker answered, failed, or the deadline passed."""
        by_fd = {w.fd: k for k, w in self.pending.items()}
        while self.pending:
            wait = self.deadline - time.monotonic()
            ready = select.select(list(by_fd), [], [], max(0.0, wait))[0] if wait > 0 else []
            if not ready:
                for k in self.pending:
                    self.failed[k] = TimeoutError("the rule worker did not answer in time")
                self.pending.clear()
                return
            for fd in ready:
                k = by_fd[fd]
                try:
                    finished = self._read(k, fd)
                except (OSError, EOFError, ProtocolError, RuleWorkerError) as exc:
                    self.failed[k] = exc
                    finished = True
                if finished:
                    del by_fd[fd]
                    del self.pending[k]

    def _read(self, k: int, fd: int) -> bool:
        buf = self.bufs[k]
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise EOFError("the rule worker closed the connection")
        buf += chunk
        if len(buf) >= FRAME.size:
            head_len, payload_len = FRAME.unpack_from(buf, 0)
            if head_len > MAX_REPLY_HEADER or payload_len not in (0, self.expect):
                raise ProtocolError(f"reply frame of {head_len} + {payload_len} bytes")
            end = FRAME.size + head_len + payload_len
            if len(buf) > end:
                raise ProtocolError("unexpected data after the reply (a forged frame)")
        frame = unpack_frame(buf, 0, MAX_REPLY_HEADER)
        if frame is None:
            return False
        header, payload, _ = frame
        self.pending[k].check_reply(header)
        if len(payload) != self.expect:
            raise ProtocolError(f"labels have {len(payload)} bytes, expected {self.expect}")
        self.replies[k] = (header, payload)
        self.done[k] = time.monotonic()
        return True


@dataclass
class _RuleSlot:
    """One rule of one shard: its worker, why it is down (restarting) and its strikes."""

    rule: RuleCode
    worker: _Worker | None
    down: str = ""
    restarting: bool = False
    strikes: int = 0


class WorkerEngine:
    """Isolated rule workers, one process per rule (and per shard); series are sharded by a
    hash of their id over ``workers`` shards.

    Thread-safe: each shard has a lock; requests touching several shards take them one by one.
    The parent keeps a mirror of every series' history (``max(LOOKBACK) - 1`` points), used to
    re-seed a worker that was restarted after a crash, a timeout or a protocol violation, so a
    crash costs one rule's labels of the micro-batches until it is back, not the state.
    Counters: ``restarts``, ``timeouts``, ``protocol_errors``.
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
        self.limits = limits or WorkerLimits()
        self._shards: list[list[_RuleSlot]] = []
        self._closed = False
        self._state_lock = threading.Lock()
        self._quarantined: dict[str, str] = {}
        self.restarts = 0
        self.timeouts = 0
        self.protocol_errors = 0
        started: list[list[_Worker]] = []
        try:
            for _ in range(workers):  # start every process first, then wait for them all
                row: list[_Worker] = []
                started.append(row)
                for r in rules:
                    row.append(_Worker(r, self.limits))
            for row in started:
                for w in row:
                    w.wait_ready()
        except BaseException:
            for row in started:
                for w in row:
                    w.kill()
            raise
        first = started[0]
        self._load_errors: dict[str, str] = {}
        for w in first:
            self._load_errors.update(w.load_errors)
        keep = [i for i, w in enumerate(first) if w.rule_ids]
        for row in started:
            for i, w in enumerate(row):
                if i not in keep:
                    w.kill()
        self._rules = [rules[i] for i in keep]
        self._rule_ids = tuple(r.id for r in self._rules)
        self._shards = [[_RuleSlot(rules[i], row[i]) for i in keep] for row in started]
        self.layers = dict(first[0].layers) if first else {}
        self.history_len = max((r.lookback for r in self._rules), default=1) - 1
        self._locks = [threading.RLock() for _ in self._shards]
        self._mirror = HistoryStore(self.history_len)
        self._mirror_lock = threading.Lock()
        self._rr = 0
        self._packed: list[str] = []
        self._idle = threading.Condition(self._state_lock)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the rules that loaded, in label-row order."""
        return self._rule_ids

    @property
    def load_errors(self) -> Mapping[str, str]:
        """Rules that failed to load in their worker, with the reason."""
        return self._load_errors

    @property
    def isolation(self) -> str:
        """Which kernel layers the workers run under."""
        on = [k for k in KERNEL_LAYERS if self.layers.get(k)]
        layers = ", ".join(on) if on else "NO kernel layers (unconfined)"
        return f"isolated worker per rule: {layers}"

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return [s.worker.pid for row in self._shards for s in row if s.worker and not s.down]

    def rule_pids(self, rule_id: str) -> list[int]:
        """Process ids of one rule's live workers (one per shard)."""
        return [
            s.worker.pid
            for row in self._shards
            for s in row
            if s.rule.id == rule_id and s.worker is not None and not s.down
        ]

    @property
    def quarantined(self) -> Mapping[str, str]:
        """Rules stopped for good (until a reload), with the reason."""
        with self._state_lock:
            return dict(self._quarantined)

    @property
    def restarting(self) -> list[str]:
        """Rules whose worker is down and being replaced."""
        with self._state_lock:
            return sorted(
                {
                    s.rule.id
                    for row in self._shards
                    for s in row
                    if s.down and s.rule.id not in self._quarantined
                }
            )

    def quarantine(self, rule_id: str, reason: str) -> None:
        """Stop a rule for good: its labels are ``False`` from now on, its workers are killed (at
        once where the shard is free, else by the shard's next request)."""
        with self._state_lock:
            if rule_id in self._quarantined or rule_id not in self._rule_ids:
                return
            self._quarantined[rule_id] = reason[:MAX_ERROR_CHARS]
        for idx, lock in enumerate(self._locks):
            if lock.acquire(blocking=False):  # re-entrant: also from this shard's own request
                try:
                    self._stop_quarantined(idx)
                finally:
                    lock.release()

    def _stop_quarantined(self, idx: int) -> None:
        """Kill the workers of quarantined rules in shard ``idx`` (its lock held)."""
        for slot in self._shards[idx]:
            if slot.worker is not None and slot.rule.id in self._quarantined:
                w, slot.worker = slot.worker, None
                slot.down = "quarantined"
                w.kill()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until no worker is being restarted (tests, diagnostics); False on timeout."""
        end = time.monotonic() + timeout
        with self._idle:
            while any(s.restarting for row in self._shards for s in row):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _shard(self, series: str) -> int:
        return zlib.crc32(series.encode()) % len(self._shards)

    # -- failures and restarts ------------------------------------------------------------------
    def _fail(self, idx: int, r: int, why: str) -> None:
        """Worker ``r`` of shard ``idx`` failed: kill it now, replace it in the background."""
        slot = self._shards[idx][r]
        w, slot.worker = slot.worker, None
        if w is not None:
            w.kill()
        with self._state_lock:
            if slot.rule.id in self._quarantined:
                return
            slot.down = why[:MAX_ERROR_CHARS]
        self._schedule_restart(idx, r)

    def _schedule_restart(self, idx: int, r: int) -> None:
        slot = self._shards[idx][r]
        with self._state_lock:
            if slot.restarting or self._closed or slot.rule.id in self._quarantined:
                return
            slot.restarting = True
        try:
            _RESTARTER.submit(self._restart, idx, r)
        except RuntimeError:  # interpreter shutting down
            with self._idle:
                slot.restarting = False
                self._idle.notify_all()

    def _restart(self, idx: int, r: int) -> None:
        """Start a new worker for a rule (no lock held: its module code may be slow), then
        re-seed it from the mirror and swap it in under the shard's lock."""
        slot = self._shards[idx][r]
        w: _Worker | None = None
        try:
            w = _Worker(slot.rule, self.limits).wait_ready()
            if not w.rule_ids:
                raise RuleWorkerError(f"the rule no longer loads: {w.load_errors}")
            with self._locks[idx]:
                if self._closed or slot.rule.id in self.quarantined:
                    raise RuleWorkerError("the engine was closed or the rule quarantined")
                if self._packed:
                    w.request({"op": "set_packed", "rules": self._packed})
                with self._mirror_lock:
                    seeds = [(s, t, v) for s, t, v in self._mirror.items() if self._shard(s) == idx]
                if seeds:
                    w.request(
                        {"op": "seed", "series": [s for s, _, _ in seeds],
                         "lengths": [len(v) for _, _, v in seeds]},
                        pack_points([(t, v) for _, t, v in seeds]),
                    )  # fmt: skip
                slot.worker, w = w, None
                with self._state_lock:
                    slot.down = ""
                    self.restarts += 1
        except _FAILURES as exc:
            with self._state_lock:
                if slot.down and slot.down != "quarantined":
                    slot.down = f"{slot.down.split('; restart failed')[0]}; restart failed: {exc}"
        finally:
            if w is not None:
                w.kill()
            with self._idle:
                slot.restarting = False
                self._idle.notify_all()

    # -- requests --------------------------------------------------------------------------------
    def _exchange(
        self,
        idx: int,
        header: dict[str, Any],
        payload: Payload,
        lengths: Sequence[int],
        budget: float | None,
    ) -> EngineResult:
        """Send one request to every rule's worker of shard ``idx`` (the caller holds its
        lock), then collect the replies as they complete."""
        n_items, total = len(lengths), int(sum(lengths))
        row = self._shards[idx]
        joined = np.zeros((len(row), total), dtype=np.bool_)
        errors: list[RuleError] = []
        quarantined = self.quarantined
        if quarantined:
            self._stop_quarantined(idx)
        live: dict[int, _Worker] = {}
        for r, slot in enumerate(row):
            if slot.rule.id in quarantined:
                continue
            if slot.worker is None or slot.down:
                if not slot.restarting:  # a failed restart: try again
                    self._schedule_restart(idx, r)
                why = f"rule worker restarting (after: {slot.down})"
                errors += [RuleError(i, slot.rule.id, why) for i in range(n_items)]
                continue
            try:
                slot.worker.send(header, payload)
            except _FAILURES as exc:
                why = f"worker crashed: {exc}"
                self._fail(idx, r, why)
                errors += [RuleError(i, slot.rule.id, why) for i in range(n_items)]
                continue
            live[r] = slot.worker
        t0 = time.monotonic()
        col = _Collector(live, total, t0 + self.limits.request_seconds)
        col.run()
        for r, failure in col.failed.items():
            slot = row[r]
            if isinstance(failure, TimeoutError):
                self.timeouts += 1
                why = f"timeout: the micro-batch took over {self.limits.request_seconds:g} s"
                self._strike(idx, r, why)
            elif isinstance(failure, ProtocolError):
                self.protocol_errors += 1
                why = f"protocol violation: {failure}"
            else:
                why = f"worker crashed: {failure}"
            self._fail(idx, r, why)
            errors += [RuleError(i, slot.rule.id, why) for i in range(n_items)]
        for r, (reply, blob) in col.replies.items():
            rid = row[r].rule.id
            joined[r] = np.frombuffer(blob, dtype=np.uint8) != 0
            for e in reply.get("errors", []):
                item = e[0] if isinstance(e, list) and e else None
                if isinstance(item, int) and 0 <= item < n_items:
                    errors.append(RuleError(item, rid, str(e[-1])[:MAX_ERROR_CHARS]))
            if budget is not None:
                took = col.done[r] - t0
                if took > budget:
                    self._strike(idx, r, f"over its time budget ({took:.2f} s > {budget:.2f} s)")
                else:
                    row[r].strikes = 0
        errors.sort(key=lambda e: e.item)
        bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
        labels = [joined[:, a:b] for a, b in itertools.pairwise(bounds)]
        return EngineResult(labels, errors, joined)

    def _strike(self, idx: int, r: int, why: str) -> None:
        slot = self._shards[idx][r]
        slot.strikes += 1
        if slot.strikes >= self.limits.strikes:
            self.quarantine(
                slot.rule.id, f"{why}, {slot.strikes} requests in a row: quarantined until reload"
            )

    def push(self, items: Sequence[tuple[str, IntArray, FloatArray]]) -> EngineResult:
        """Label new points of several series (one request per rule worker of each shard
        touched, sent to all of them before any reply is read)."""
        self._check_open()
        by_shard: dict[int, list[int]] = {}
        if len(self._shards) == 1:
            by_shard[0] = list(range(len(items)))
        else:
            for i, (s, _, _) in enumerate(items):
                by_shard.setdefault(self._shard(s), []).append(i)
        labels: list[BoolArray] = [np.zeros((0, 0), dtype=np.bool_)] * len(items)
        errors: list[RuleError] = []
        lim = self.limits
        for idx, members in by_shard.items():
            sub = [items[i] for i in members]
            lengths = [len(v) for _, _, v in sub]
            header = {"op": "push", "series": [s for s, _, _ in sub], "lengths": lengths}
            payload = pack_points([(t, v) for _, t, v in sub])
            budget = lim.budget_seconds + lim.budget_seconds_per_point * sum(lengths)
            with self._locks[idx]:
                # mirror first: a restart re-seeds the worker with these points
                self._update_mirror(sub)
                res = self._exchange(idx, header, payload, lengths, budget)
            if len(by_shard) == 1:  # items in order on one shard: keep its label matrix
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
        """Stateless run on whole arrays, on the next shard in turn (no time budget: only the
        request deadline)."""
        self._check_open()
        lengths = [len(v) for _, v in items]
        idx = self._rr % len(self._shards)
        self._rr += 1
        with self._locks[idx]:
            return self._exchange(
                idx, {"op": "batch", "lengths": lengths}, pack_points(list(items)), lengths, None
            )

    def _control(self, idx: int, header: dict[str, Any], payload: Payload = b"") -> None:
        """A state-changing request whose effect is already in the parent's mirror or settings:
        a worker that fails it is replaced (and re-seeded from there)."""
        for r, slot in enumerate(self._shards[idx]):
            if slot.worker is None or slot.down:
                continue
            try:
                slot.worker.request(header, payload)
            except _FAILURES as exc:
                self._fail(idx, r, f"worker crashed: {exc}")

    def seed(self, series: str, timestamps: IntArray, values: FloatArray) -> None:
        """Set a series' history (e.g. carried over from a previous rule set)."""
        self._check_open()
        idx = self._shard(series)
        with self._mirror_lock:
            self._mirror.set(series, np.asarray(timestamps), np.asarray(values))
            t, v = self._mirror.get(series)
        header = {"op": "seed", "series": [series], "lengths": [len(v)]}
        with self._locks[idx]:
            self._control(idx, header, pack_points([(t, v)]))

    def forget(self, series: Sequence[str]) -> None:
        """Drop series state everywhere."""
        self._check_open()
        by_shard: dict[int, list[str]] = {}
        for s in series:
            by_shard.setdefault(self._shard(s), []).append(s)
        with self._mirror_lock:
            for s in series:
                self._mirror.forget(s)
        for idx, names in by_shard.items():
            with self._locks[idx]:
                self._control(idx, {"op": "forget", "series": names})

    def set_packed(self, rule_ids: Sequence[str]) -> None:
        """See :meth:`~argos.sandbox.kernel.RuleKernel.set_packed` (applied to every worker, and
        after restarts)."""
        self._check_open()
        self._packed = list(rule_ids)
        for idx in range(len(self._shards)):
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
        """Stop every worker (restarts under way give up)."""
        with self._state_lock:
            self._closed = True
        for row in self._shards:
            for slot in row:
                w, slot.worker = slot.worker, None
                if w is not None:
                    w.close()
        self.wait_ready(timeout=5.0)

    def __enter__(self) -> WorkerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
