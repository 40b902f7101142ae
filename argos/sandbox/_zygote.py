"""Zygote worker: a long-lived, single-threaded process that forks one locked-down child per run.

Started by :mod:`argos.sandbox.pool` as ``python -I argos/sandbox/_zygote.py`` with the scrubbed
environment of :func:`argos.sandbox.process.scrubbed_env`. It never imports the ``argos`` package
(nor its dependencies): it loads the two modules it shares with the rest of Argos by path,
:mod:`argos.sandbox.process` (wire format, kernel lock-down) and :mod:`argos.rules.contract`
(:func:`~argos.rules.contract.exec_rule_source`, the one place that executes rule source), both
standard library + numpy only.

Protocol on stdin/stdout: the frames of :mod:`argos.sandbox.process` (header + payload).

Ops: ``probe`` (which kernel layers work here), ``load`` (cache input arrays under a key; the
payload is :func:`~argos.sandbox.process.pack_points`), ``run`` (fork a child that runs rule code
on cached inputs and streams result frames back), ``drop`` (forget a cache key). The zygote never
parses what the child writes: it relays the child's bytes, size-capped, as the reply's payload,
plus how the child ended. The parent validates everything.

Each child locks itself down with :func:`argos.sandbox.process.lock_down` before it executes the
rule. Any layer the start-up probe reported as available that then fails makes the child report a
setup error (fail closed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

sys.dont_write_bytecode = True


def _load_by_path(name: str, path: Path) -> ModuleType:
    """Import one file as a top-level module, without importing the package it belongs to."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from argos.rules import contract
    from argos.sandbox import process
else:
    _HERE = Path(__file__).resolve().parent
    process = _load_by_path("argos_sandbox_process", _HERE / "process.py")
    contract = _load_by_path("argos_rules_contract", _HERE.parent / "rules" / "contract.py")

# Preload what rules may import, so the children need no file access for imports.
process.preload_rule_modules()

RULE_FILENAME = "<rule>"
MAX_DETAIL = 4000


# --- running rules in the child ----------------------------------------------------------------
def _trim_tb(exc: BaseException) -> str:
    """Traceback text with only the rule's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == RULE_FILENAME]
    lines = ["Traceback (rule frames only):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    return text[-MAX_DETAIL:]


def _to_labels(out: object, n: int) -> tuple[bytes | None, str]:
    """Validate one rule output; return (uint8 bytes, "") or (None, reason)."""
    try:
        arr = np.asarray(out)
    except Exception as exc:
        return None, f"output cannot be converted to an array: {type(exc).__name__}"
    if arr.shape != (n,):
        return None, f"output has shape {arr.shape}, expected ({n},)"
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8).tobytes(), ""
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            return None, f"output contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}"
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return None, f"output must be boolean or 0/1; index {i} is {arr[i]!r}"
        return arr.astype(np.uint8).tobytes(), ""
    return None, f"output dtype {arr.dtype} is not boolean or 0/1"


def _run_child(
    req: dict[str, Any], inputs: list[tuple[np.ndarray, np.ndarray]], out_fd: int
) -> None:
    try:
        detect, _ = contract.exec_rule_source(req["code"], RULE_FILENAME, "rule")
    except MemoryError as exc:
        status, detail, tb = "memory_limit", "MemoryError while loading the rule", _trim_tb(exc)
    except SyntaxError as exc:
        status, detail, tb = "syntax_error", f"line {exc.lineno}: {exc.msg}", ""
    except BaseException as exc:
        status, tb = "runtime_error", _trim_tb(exc)
        detail = f"while loading the rule: {type(exc).__name__}: {exc}"[:MAX_DETAIL]
    else:
        status = ""
    if status:
        header = {"p": -1, "status": status, "detail": detail, "traceback": tb}
        process.send_frame(out_fd, header)
        return
    for p, params in enumerate(req["param_sets"]):
        outs: list[bytes] = []
        status, detail, tb = "ok", "", ""
        t0 = time.perf_counter()
        for i, (values, ts) in enumerate(inputs):
            try:
                out = detect(values.copy(), ts.copy(), dict(params))
            except MemoryError as exc:
                status, detail, tb = "memory_limit", f"series {i}: MemoryError", _trim_tb(exc)
                break
            except RecursionError as exc:
                status, detail, tb = (
                    "runtime_error",
                    f"series {i}: RecursionError: {exc}",
                    _trim_tb(exc),
                )
                break
            except BaseException as exc:
                status, tb = "runtime_error", _trim_tb(exc)
                detail = f"series {i}: {type(exc).__name__}: {exc}"[:MAX_DETAIL]
                break
            try:
                labels, why = _to_labels(out, len(values))
            except MemoryError:
                labels, why = None, "MemoryError while validating the output"
            if labels is None:
                status, detail = "bad_output", f"series {i}: {why}"
                break
            outs.append(labels)
        ms = (time.perf_counter() - t0) * 1000.0
        if status == "ok":
            process.send_frame(out_fd, {"p": p, "status": "ok", "runtime_ms": ms}, b"".join(outs))
        else:
            process.send_frame(
                out_fd,
                {"p": p, "status": status, "detail": detail, "traceback": tb, "runtime_ms": ms},
            )


def _collect(fd: int, deadline: float, cap: int) -> tuple[bytes, bool, bool]:
    """Read the child's result pipe until EOF, the deadline, or the cap; (data, timed_out, over)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True, False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks), False, False
        chunks.append(b)
        total += len(b)
        if total > cap:
            return b"".join(chunks)[:cap], False, True


def _run(
    req: dict[str, Any],
    inputs: list[tuple[np.ndarray, np.ndarray]],
    layers: dict[str, bool],
    scratch: str,
) -> tuple[dict[str, Any], bytes, int | None]:
    """Fork a child for one request; return (reply header, child bytes, pid still to reap).

    A child that finishes normally writes a per-run random trailer and closes its pipe before
    exiting; then the reply goes out at once and the child is killed and reaped afterwards
    (:func:`_reap`), so its teardown overlaps with the parent's work. Otherwise (crash, limit,
    timeout) the zygote waits for the exit status the parent needs to classify the run.
    """
    limits = req["limits"]
    trailer = os.urandom(16)
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if w != 3:
                os.dup2(w, 3)
                os.close(w)
            try:
                process.lock_down(layers, limits, scratch)
            except BaseException as exc:
                process.send_frame(3, {"setup_error": f"{type(exc).__name__}: {exc}"})
                os._exit(70)
            _run_child(req, inputs, 3)
            os.write(3, trailer)
            os.close(3)
        finally:
            os._exit(0)
    os.close(w)
    data, timed_out, over = _collect(
        r, t0 + float(limits["wall_seconds"]), int(limits["max_output_bytes"])
    )
    os.close(r)
    header: dict[str, Any] = {"timed_out": timed_out, "overflow": over}
    if not (timed_out or over) and data.endswith(trailer):
        data = data[: -len(trailer)]
        header.update(signal=0, exit_code=0, cpu_seconds=None, complete=True)
        header.update(wall_ms=(time.monotonic() - t0) * 1000.0)
        return header, data, pid
    if timed_out or over:
        _kill(pid)
    _, status, rusage = os.wait4(pid, 0)
    header.update(
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
        exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        cpu_seconds=rusage.ru_utime + rusage.ru_stime,
        wall_ms=(time.monotonic() - t0) * 1000.0,
    )
    return header, data, None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Kill (in case the rule forged the trailer and lingers) and reap a finished child."""
    _kill(pid)
    os.waitpid(pid, 0)


def main() -> None:
    """Serve requests on stdin/stdout until EOF."""
    # No PR_SET_PDEATHSIG here: it fires when the parent *thread* that spawned us exits, which
    # would kill pools created from worker threads. EOF on stdin ends the loop instead.
    infd = sys.stdin.buffer.fileno()
    outfd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    process.read_paths()  # resolve once, before any fork
    scratch = tempfile.mkdtemp(prefix="argos-scratch-")
    os.chmod(scratch, 0o755)
    cache: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    layers: dict[str, bool] = {}
    try:
        while True:
            try:
                req, payload = process.recv_frame(infd)
            except EOFError:
                return
            op = req.get("op")
            if op == "probe":
                info = process.probe_layers()
                layers = {
                    k: v and k in req.get("enable", info["layers"])
                    for k, v in info["layers"].items()
                }
                process.send_frame(outfd, {"ok": True, **info})
            elif op == "load":
                items = process.unpack_points(payload, [int(x) for x in req["lengths"]])
                cache[req["key"]] = [(v, t) for t, v in items]
                process.send_frame(outfd, {"ok": True})
            elif op == "drop":
                cache.pop(req["key"], None)
                process.send_frame(outfd, {"ok": True})
            elif op == "run":
                inputs = cache.get(req["key"])
                if inputs is None:
                    error = f"unknown input key {req['key']}"
                    process.send_frame(outfd, {"ok": False, "error": error})
                    continue
                header, blob, pending = _run(req, inputs, layers, scratch)
                process.send_frame(outfd, {"ok": True, **header}, blob)
                if pending is not None:
                    _reap(pending)
            else:
                process.send_frame(outfd, {"ok": False, "error": f"unknown op {op!r}"})
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(scratch)


if __name__ == "__main__":
    main()
