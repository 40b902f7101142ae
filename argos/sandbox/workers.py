"""Long-lived, locked-down rule worker processes that hold per-series state (the parent side).

The online detector must not run LLM-written rule code in the service's own process, and it cannot
afford a fresh sandboxed child per point either. So :class:`WorkerEngine` starts a few *rule
workers* (:mod:`argos.sandbox.worker_main`): fresh interpreters with the scrubbed environment of
:func:`argos.sandbox.process.scrubbed_env` (one BLAS thread) that lock themselves down with the
sandbox's primitives (:func:`argos.sandbox.process.lock_down`) *before* they compile any rule,
then serve micro-batches over a socket pair (the frames of :mod:`argos.sandbox.process`) until
told to stop. A worker keeps, per series, the last ``max(LOOKBACK) - 1`` points
(:class:`~argos.sandbox.kernel.RuleKernel`), so the parent only ships new points; the parent kills
it from outside when a request exceeds its wall-clock deadline (a rule cannot stop its own guard).

:class:`WorkerEngine` is a pool of workers sharded by series, with restart and re-seeding from a
parent-side mirror of the history when a worker dies or times out. It implements
:class:`~argos.sandbox.kernel.RuleEngine`, like :class:`~argos.sandbox.kernel.InProcessEngine`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
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
from argos.sandbox.kernel import EngineResult, HistoryStore, RuleCode, RuleError
from argos.sandbox.process import (
    KERNEL_LAYERS,
    Payload,
    ProtocolError,
    pack_points,
    recv_frame,
    scrubbed_env,
    send_frame,
)
from argos.sandbox.worker_main import (
    ENV_ALLOW_UNCONFINED,
    ENV_FD,
    ENV_MEMORY_BYTES,
    ENV_SCRATCH,
)


class RuleWorkerError(RuntimeError):
    """A rule worker could not be started, refused its rules, or broke the protocol."""


_FAILURES = (TimeoutError, EOFError, OSError, ProtocolError, RuleWorkerError)
"""What a request to a worker can raise when the worker died, hung or misbehaved."""


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argos-rule-worker-spawner")


def _worker_env(memory_bytes: int, fd: int, allow_unconfined: bool, scratch: str) -> dict[str, str]:
    extra = {
        ENV_SCRATCH: scratch,
        ENV_FD: str(fd),
        ENV_MEMORY_BYTES: str(memory_bytes),
        ENV_ALLOW_UNCONFINED: "1" if allow_unconfined else "0",
        # keep freed memory in the heap: otherwise every large temporary array of a rule is
        # mapped, page-faulted and unmapped again on each request (2-3x the compute time on big
        # batches)
        "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    }
    return scrubbed_env(extra)


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
            "from argos.sandbox.worker_main import main; main()"
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
        except _FAILURES as exc:
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
                w.request({"op": "seed", "series": s, "length": len(v)}, pack_points([(t, v)]))
        except (TimeoutError, EOFError, OSError, ProtocolError) as exc:
            w.kill()
            raise RuleWorkerError(f"restarted worker failed while re-seeding: {exc}") from exc

    def _control(self, idx: int, header: dict[str, Any], payload: Payload = b"") -> None:
        """A state-changing request whose effect is already in the parent's mirror or settings:
        if the worker fails it, a restart re-applies it from there."""
        try:
            self._workers[idx].request(header, payload)
        except _FAILURES:
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
        except _FAILURES as exc:
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
            payload = pack_points([(t, v) for _, t, v in sub])
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
                idx, {"op": "batch", "lengths": lengths}, pack_points(list(items)), lengths
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
                idx, {"op": "seed", "series": series, "length": len(v)}, pack_points([(t, v)])
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
        """See :meth:`~argos.sandbox.kernel.RuleKernel.set_packed` (applied to every worker, and
        after restarts)."""
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
