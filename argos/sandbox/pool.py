"""Isolated execution of untrusted rules: a pool of zygote workers forking locked-down children.

The parent (trainer, server) never runs rule code. It starts a few long-lived *zygote* processes
(``argos/sandbox/_zygote.py``, a fresh interpreter with the scrubbed environment of
:func:`argos.sandbox.process.scrubbed_env`, one BLAS thread and numpy preloaded) and, per run, asks
one of them to fork a child that locks itself down (:func:`argos.sandbox.process.lock_down`: new
session, no fds but its result pipe, empty scratch cwd, rlimits, empty network namespace, Landlock
read-only view of the Python installation, ``nobody`` when root, seccomp) before executing the
rule. The zygote kills the child's process group at the wall-clock limit. Inputs go over a pipe as
raw bytes; results come back as size-capped frames (:mod:`argos.sandbox.process`) that this module
validates. Labels never leave the parent.

See ``docs/sandbox.md`` for the layers, which hosts support which, limits, statuses and costs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from argos._types import BoolArray, FloatArray, IntArray
from argos.rules.contract import DEFAULT_MAX_CODE_BYTES, RuleContractError, RuleInfo, check_rule
from argos.sandbox.process import (
    KERNEL_LAYERS,
    ProtocolError,
    pack_points,
    recv_frame,
    scrubbed_env,
    send_frame,
    unpack_frame,
)

log = logging.getLogger("argos.sandbox")

RuleInput = tuple[FloatArray, IntArray]
"""``(values float64[n], timestamps int64[n])`` — never labels."""

_ZYGOTE = Path(__file__).with_name("_zygote.py")
_MAX_HEADER = 1 << 20


class Status(StrEnum):
    """Outcome of a sandboxed run; values are the lower-case names."""

    OK = "ok"
    SYNTAX_ERROR = "syntax_error"
    STATIC_REJECT = "static_reject"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    CPU_LIMIT = "cpu_limit"
    MEMORY_LIMIT = "memory_limit"
    BAD_OUTPUT = "bad_output"
    CRASHED = "crashed"


@dataclass
class RunResult:
    """One rule run with one parameter set over all inputs.

    ``outputs`` (one bool array per input) is set only when ``status`` is ``ok``.
    ``runtime_ms`` is the rule's own execution time measured in the child (the parent's wall time
    when the child never reported); ``wall_ms`` is the whole round trip seen by the parent.
    """

    status: Status
    detail: str = ""
    traceback: str = ""
    outputs: list[BoolArray] | None = field(default=None, repr=False)
    runtime_ms: float = 0.0
    wall_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the rule ran and produced valid outputs."""
        return self.status is Status.OK

    def to_json(self) -> dict[str, Any]:
        """The report shape used by ``argos rules check`` (no outputs)."""
        return {
            "status": str(self.status),
            "detail": self.detail,
            "traceback": self.traceback,
            "runtime_ms": round(self.runtime_ms, 3),
        }


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run.

    Attributes:
        cpu_seconds: CPU time per parameter set (RLIMIT_CPU, rounded up to whole seconds).
        wall_seconds: wall-clock time per parameter set; then the zygote kills the child.
        memory_mb: address space the child may add on top of the preloaded interpreter (RLIMIT_AS).
        max_code_bytes: largest accepted rule source (static gate).
        max_detail_bytes: per-result allowance for error text in the output cap.
    """

    cpu_seconds: float = 10.0
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    max_code_bytes: int = DEFAULT_MAX_CODE_BYTES
    max_detail_bytes: int = 16_384


@dataclass(frozen=True)
class HostLayers:
    """Which isolation layers work on this host (probed by a zygote at start-up)."""

    root: bool
    seccomp: bool
    netns: bool
    landlock: bool
    drop_privileges: bool
    landlock_abi: int = 0

    @property
    def kernel_layers(self) -> list[str]:
        """Names of the available kernel-enforced layers."""
        return [name for name in KERNEL_LAYERS if getattr(self, name)]

    def describe(self) -> str:
        """One line for logs: each layer on/off."""
        parts = [f"{n}={'on' if getattr(self, n) else 'off'}" for n in KERNEL_LAYERS]
        return f"root={self.root} " + " ".join(parts)


class SandboxUnavailable(RuntimeError):
    """No kernel isolation layer works here and unconfined execution was not allowed."""


class _WorkerDied(RuntimeError):
    pass


@dataclass(frozen=True)
class InputHandle:
    """Inputs preloaded into the workers with :meth:`Sandbox.preload` (reuse across runs)."""

    key: str
    lengths: tuple[int, ...]
    nbytes: int = field(repr=False)
    payload: list[npt.NDArray[Any]] = field(repr=False)
    """The ``load`` frame's payload (:func:`argos.sandbox.process.pack_points`)."""


def _prepare_inputs(inputs: Sequence[RuleInput]) -> tuple[tuple[int, ...], list[npt.NDArray[Any]]]:
    if len(inputs) == 0:
        raise ValueError("no inputs: pass at least one (values, timestamps) pair")
    pairs: list[tuple[IntArray, FloatArray]] = []
    for i, item in enumerate(inputs):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"input {i}: expected a (values, timestamps) pair")
        v = np.ascontiguousarray(item[0], dtype="<f8")
        t = np.ascontiguousarray(item[1], dtype="<i8")
        if v.ndim != 1 or t.shape != v.shape:
            raise ValueError(
                f"input {i}: values {v.shape} and timestamps {t.shape} must be 1-D, same length"
            )
        pairs.append((t, v))
    lengths = tuple(len(v) for _, v in pairs)
    return lengths, [np.array(a, copy=True) for a in pack_points(pairs)]


class _Worker:
    """One zygote process and the input keys it holds."""

    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-I", "-u", str(_ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=scrubbed_env(),
            cwd="/",
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.loaded: OrderedDict[str, int] = OrderedDict()
        self.loaded_bytes = 0

    def request(
        self,
        header: Mapping[str, Any],
        payload: Sequence[npt.NDArray[Any]] = (),
        max_blob: int = 0,
    ) -> tuple[dict[str, Any], bytearray]:
        """One round trip (the zygote enforces the run's deadlines); the reply's payload may have
        at most ``max_blob`` bytes."""
        try:
            send_frame(self.stdin.fileno(), header, payload)
            return recv_frame(
                self.stdout.fileno(), max_payload=max(max_blob, 0), max_header=_MAX_HEADER
            )
        except EOFError as exc:
            raise _WorkerDied("sandbox worker exited") from exc
        except (OSError, ProtocolError) as exc:
            raise _WorkerDied(f"sandbox worker failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()


class Sandbox:
    """A pool of zygote workers that run untrusted rule code in locked-down children.

    Use as a context manager. Thread-safe: concurrent calls use different workers (and wait for
    one when all are busy).

    Args:
        workers: number of zygote processes.
        limits: per-run resource limits.
        allow_unconfined: run even when no kernel layer is available (NOT safe for untrusted code).
        static_gate: run :func:`argos.rules.contract.check_rule` before anything executes. Only
            tests turn it off, to prove that the kernel layers hold on their own.
        layers: restrict the kernel layers used (default: every layer the host supports).
        python: interpreter for the zygotes (default: the current one).
        cache_mb: input bytes each worker keeps preloaded before evicting the oldest.
        require: kernel layers that must be available (e.g. ``("seccomp", "landlock")`` for a
            service); a missing one raises :class:`SandboxUnavailable`.
    """

    def __init__(
        self,
        workers: int = 1,
        limits: SandboxLimits | None = None,
        *,
        allow_unconfined: bool = False,
        static_gate: bool = True,
        layers: Collection[str] | None = None,
        python: str | None = None,
        cache_mb: int = 512,
        require: Collection[str] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        unknown = (set(layers or ()) | set(require)) - set(KERNEL_LAYERS)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; known: {list(KERNEL_LAYERS)}")
        self.limits = limits or SandboxLimits()
        self.static_gate = static_gate
        self._enable = list(KERNEL_LAYERS if layers is None else layers)
        self._python = python or sys.executable
        self._cache_bytes = cache_mb * 1024 * 1024
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            pool = [self._spawn() for _ in range(workers)]  # interpreters start in parallel
            hosts = [self._probe(w) for w in pool]
        except (_WorkerDied, OSError) as exc:
            self.close()
            raise SandboxUnavailable(f"could not start a sandbox worker: {exc}") from exc
        self.host = hosts[0]
        log.info("sandbox layers: %s", self.host.describe())
        if not self.host.kernel_layers and not allow_unconfined:
            self.close()
            raise SandboxUnavailable(
                "no kernel isolation layer (seccomp, network namespace, Landlock, privilege drop) "
                "is available on this host; refusing to run untrusted code. Pass "
                "allow_unconfined=True to run anyway (unsafe)."
            )
        missing = [name for name in require if not getattr(self.host, name)]
        if missing:
            self.close()
            raise SandboxUnavailable(
                f"required sandbox layers unavailable on this host: {missing} "
                f"({self.host.describe()})"
            )
        if not self.host.kernel_layers:
            log.warning("sandbox running UNCONFINED: only rlimits and the static gate apply")
        for w in pool:
            self._idle.put(w)

    # -- lifecycle -----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        w = _Worker(self._python)
        with self._lock:
            self._all.append(w)
        return w

    def _probe(self, w: _Worker) -> HostLayers:
        reply, _ = w.request({"op": "probe", "enable": self._enable})
        got = reply.get("layers", {})
        return HostLayers(
            root=bool(reply.get("root")),
            landlock_abi=int(reply.get("landlock_abi", 0)),
            **{n: bool(got.get(n)) and n in self._enable for n in KERNEL_LAYERS},
        )

    def close(self) -> None:
        """Stop every zygote (their children die with them)."""
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for w in workers:
            w.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire(self) -> _Worker:
        if self._closed:
            raise RuntimeError("sandbox is closed")
        return self._idle.get()

    def _release(self, w: _Worker, dead: bool) -> None:
        if dead:
            with self._lock:
                if w in self._all:
                    self._all.remove(w)
            try:
                w.proc.kill()
                w.close()
            except OSError:
                pass
            if self._closed:
                return
            w = self._spawn()
            self._probe(w)
        self._idle.put(w)

    # -- inputs --------------------------------------------------------------------------------
    def preload(self, inputs: Sequence[RuleInput]) -> InputHandle:
        """Prepare inputs once for many runs (fitting, benchmarks); workers load them lazily."""
        lengths, payload = _prepare_inputs(inputs)
        return InputHandle(uuid.uuid4().hex, lengths, sum(a.nbytes for a in payload), payload)

    def _ensure_loaded(self, w: _Worker, h: InputHandle) -> None:
        if h.key in w.loaded:
            w.loaded.move_to_end(h.key)
            return
        while w.loaded and w.loaded_bytes + h.nbytes > self._cache_bytes:
            old, size = w.loaded.popitem(last=False)
            w.loaded_bytes -= size
            w.request({"op": "drop", "key": old})
        reply, _ = w.request({"op": "load", "key": h.key, "lengths": list(h.lengths)}, h.payload)
        if not reply.get("ok"):
            raise _WorkerDied(f"zygote refused inputs: {reply.get('error')}")
        w.loaded[h.key] = h.nbytes
        w.loaded_bytes += h.nbytes

    # -- running -------------------------------------------------------------------------------
    def run(
        self,
        code: str,
        inputs: Sequence[RuleInput] | InputHandle,
        params: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run ``detect`` once per input with ``params`` merged over the rule's ``PARAMS``."""
        return self.run_grid(code, inputs, [dict(params or {})])[0]

    def run_grid(
        self,
        code: str,
        inputs: Sequence[RuleInput] | InputHandle,
        param_sets: Sequence[Mapping[str, Any]],
    ) -> list[RunResult]:
        """Run the rule for every parameter set over all inputs, in one child; one result per set.

        Each set is merged over the rule's ``PARAMS`` defaults. CPU and wall limits scale with the
        number of sets; a set that never reported gets the status of how the child ended.
        """
        if not param_sets:
            return []
        t0 = time.perf_counter()
        defaults: dict[str, Any] = {}
        if self.static_gate:
            try:
                info = _cached_gate(code, self.limits.max_code_bytes)
            except RuleContractError as exc:
                res = RunResult(Status(exc.status), detail=str(exc))
                return [replace(res) for _ in param_sets]
            defaults = dict(info.params)
        else:
            defaults = _best_effort_params(code)
        merged = [{**defaults, **dict(p)} for p in param_sets]
        try:
            json.dumps(merged)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameters must be JSON-serialisable: {exc}") from exc
        handle = inputs if isinstance(inputs, InputHandle) else self.preload(inputs)
        ephemeral = not isinstance(inputs, InputHandle)
        n_sets = len(merged)
        total = sum(handle.lengths)
        lim = self.limits
        cap = n_sets * (total + lim.max_detail_bytes + 256) + 65_536
        req = {
            "op": "run",
            "key": handle.key,
            "code": code,
            "param_sets": merged,
            "limits": {
                "cpu_seconds": lim.cpu_seconds * n_sets,
                "wall_seconds": lim.wall_seconds * n_sets,
                "memory_bytes": lim.memory_mb * 1024 * 1024,
                "max_output_bytes": cap,
            },
        }
        w = self._acquire()
        dead = False
        try:
            self._ensure_loaded(w, handle)
            reply, blob = w.request(req, max_blob=cap)
            if ephemeral:
                w.loaded.pop(handle.key, None)
                w.loaded_bytes -= handle.nbytes
                w.request({"op": "drop", "key": handle.key})
        except _WorkerDied as exc:
            dead = True
            wall = (time.perf_counter() - t0) * 1000
            return [
                RunResult(Status.CRASHED, detail=str(exc), runtime_ms=wall, wall_ms=wall)
                for _ in merged
            ]
        finally:
            self._release(w, dead)
        wall_ms = (time.perf_counter() - t0) * 1000
        if not reply.get("ok"):
            return [RunResult(Status.CRASHED, detail=str(reply.get("error"))) for _ in merged]
        results = _parse_results(reply, blob, handle.lengths, n_sets, lim)
        for r in results:
            r.wall_ms = wall_ms
            if r.status is not Status.OK and r.runtime_ms == 0.0:
                r.runtime_ms = wall_ms
        return results


_GATE_CACHE: OrderedDict[tuple[str, int], RuleInfo | RuleContractError] = OrderedDict()
_GATE_LOCK = threading.Lock()


def _cached_gate(code: str, max_bytes: int) -> RuleInfo:
    """:func:`check_rule` memoised by code hash (fitting runs the same code many times)."""
    key = (hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(), max_bytes)
    with _GATE_LOCK:
        hit = _GATE_CACHE.get(key)
        if hit is not None:
            _GATE_CACHE.move_to_end(key)
    if hit is None:
        try:
            hit = check_rule(code, max_bytes=max_bytes)
        except RuleContractError as exc:
            hit = exc
        with _GATE_LOCK:
            _GATE_CACHE[key] = hit
            while len(_GATE_CACHE) > 256:
                _GATE_CACHE.popitem(last=False)
    if isinstance(hit, RuleContractError):
        raise RuleContractError(hit.status, list(hit.issues))
    return hit


def _best_effort_params(code: str) -> dict[str, Any]:
    """PARAMS defaults without the gate (used only when the static gate is off)."""
    try:
        return dict(check_rule(code, max_bytes=10**9).params)
    except RuleContractError:
        return {}


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _parse_results(
    reply: Mapping[str, Any],
    blob: bytes | bytearray,
    lengths: Sequence[int],
    n_sets: int,
    lim: SandboxLimits,
) -> list[RunResult]:
    """Turn the child's untrusted result stream into validated RunResults."""
    total = sum(lengths)
    found: dict[int, RunResult] = {}
    setup_error: str | None = None
    load_failure: RunResult | None = None
    malformed: str | None = None
    pos = 0
    while pos < len(blob):
        try:
            frame = unpack_frame(blob, pos, _MAX_HEADER)
        except ProtocolError as exc:
            malformed = f"result {exc}"
            break
        if frame is None:
            break  # truncated (killed mid-write)
        head, payload, pos = frame
        if "setup_error" in head:
            setup_error = str(head["setup_error"])[:2000]
            break
        p = head.get("p")
        status_s = head.get("status")
        if not isinstance(p, int) or status_s not in Status.__members__.values():
            malformed = "result frame without a valid index/status"
            break
        status = Status(str(status_s))
        rt = head.get("runtime_ms", 0.0)
        runtime_ms = float(rt) if isinstance(rt, int | float) and math.isfinite(rt) else 0.0
        detail = str(head.get("detail", ""))[: lim.max_detail_bytes]
        tb = str(head.get("traceback", ""))[: lim.max_detail_bytes]
        if p == -1:
            load_failure = RunResult(status, detail=detail, traceback=tb)
            break
        if not 0 <= p < n_sets or p in found:
            malformed = f"result frame for unexpected parameter set {p}"
            break
        if status is Status.OK:
            if len(payload) != total:
                malformed = f"labels have {len(payload)} bytes, expected {total}"
                break
            raw = np.frombuffer(payload, dtype=np.uint8)
            if raw.size and raw.max() > 1:
                malformed = "labels are not 0/1"
                break
            outs: list[BoolArray] = []
            off = 0
            for n_i in lengths:
                outs.append(raw[off : off + n_i].astype(bool))
                off += n_i
            found[p] = RunResult(Status.OK, outputs=outs, runtime_ms=runtime_ms)
        else:
            found[p] = RunResult(status, detail=detail, traceback=tb, runtime_ms=runtime_ms)

    if load_failure is not None:
        return [replace(load_failure) for _ in range(n_sets)]
    if setup_error is not None:
        missing = RunResult(
            Status.CRASHED, detail=f"sandbox setup failed (refusing to run): {setup_error}"
        )
    elif malformed is not None:
        missing = RunResult(Status.BAD_OUTPUT, detail=f"malformed result stream: {malformed}")
    else:
        missing = _ending(reply, lim, n_sets)
    return [found.get(p) or replace(missing) for p in range(n_sets)]


def _ending(reply: Mapping[str, Any], lim: SandboxLimits, n_sets: int) -> RunResult:
    """Status for parameter sets that never reported, from how the child ended."""
    sig = int(reply.get("signal") or 0)
    cpu = float(reply.get("cpu_seconds") or 0.0)
    cpu_limit = max(1, math.ceil(lim.cpu_seconds * n_sets))
    if reply.get("timed_out"):
        return RunResult(
            Status.TIMEOUT,
            detail=f"wall-clock limit of {lim.wall_seconds * n_sets:g} s exceeded; killed",
        )
    if reply.get("overflow"):
        return RunResult(Status.BAD_OUTPUT, detail="output exceeded the size cap; killed")
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= cpu_limit - 0.05):
        return RunResult(
            Status.CPU_LIMIT, detail=f"CPU limit of {cpu_limit} s exceeded ({cpu:.2f} s used)"
        )
    if sig == signal.SIGSYS:
        return RunResult(Status.CRASHED, detail="killed by the seccomp filter (SIGSYS)")
    if sig:
        return RunResult(Status.CRASHED, detail=f"rule process killed by {_signal_name(sig)}")
    code = reply.get("exit_code")
    return RunResult(
        Status.CRASHED, detail=f"rule process exited (code {code}) before reporting a result"
    )


class CodeRunner(Protocol):
    """What :func:`check_causality` needs of a sandbox: one run of a rule's code on some inputs
    (a :class:`Sandbox`, or any runner that wraps one)."""

    def run(
        self,
        code: str,
        inputs: Sequence[RuleInput],
        params: Mapping[str, Any] | None = None,
    ) -> RunResult: ...


def check_causality(
    sandbox: CodeRunner,
    code: str,
    params: Mapping[str, Any] | None,
    values: FloatArray,
    timestamps: IntArray,
    *,
    n_prefixes: int = 8,
    min_prefix: int = 1,
    seed: int = 0,
) -> RunResult:
    """Check that the label at t does not change when the points after t are removed.

    Runs the rule on ``n_prefixes`` prefixes (random cut points, seeded, at least ``min_prefix``
    long; callers pass 1, whatever the rule's ``LOOKBACK``) and then on the full series, each in
    a fresh child of its own and shortest first, so no run can carry state (a cache of earlier
    labels) into a later one or find a longer input already loaded in its zygote. Compares each
    prefix's labels with the full run. Returns the full run's result (``ok``) or ``bad_output``
    saying ``non-causal: label at index i changed from X to Y when later points were removed``.
    """
    v = np.ascontiguousarray(values, dtype=np.float64)
    t = np.ascontiguousarray(timestamps, dtype=np.int64)
    n = len(v)
    lo = max(1, min_prefix)
    if n <= lo:
        cuts: list[int] = []
    else:
        rng = np.random.default_rng(seed)
        k = min(n_prefixes, n - lo)
        cuts = sorted(int(c) for c in rng.choice(np.arange(lo, n), size=k, replace=False))
    outputs: list[BoolArray] = []
    runtime_ms = wall_ms = 0.0
    for c in [*cuts, n]:
        res = sandbox.run(code, [(v[:c], t[:c])], params)
        runtime_ms += res.runtime_ms
        wall_ms += res.wall_ms
        if not res.ok or res.outputs is None:
            if c < n:
                res.detail = f"on a prefix of {c} points out of {n}: {res.detail}"
            return res
        outputs.append(res.outputs[0])
    res = RunResult(Status.OK, outputs=outputs[-1:], runtime_ms=runtime_ms, wall_ms=wall_ms)
    full = outputs[-1]
    for c, out in zip(cuts, outputs[:-1], strict=True):
        diff = np.flatnonzero(out != full[:c])
        if diff.size:
            i = int(diff[0])
            return RunResult(
                Status.BAD_OUTPUT,
                detail=(
                    f"non-causal: label at index {i} changed from {bool(full[i])} to "
                    f"{bool(out[i])} when later points were removed (prefix of {c} points "
                    f"out of {n}); a label may only depend on points at or before its index"
                ),
                runtime_ms=res.runtime_ms,
                wall_ms=res.wall_ms,
            )
    return RunResult(
        Status.OK,
        outputs=[full],
        runtime_ms=res.runtime_ms,
        wall_ms=res.wall_ms,
    )
