"""The rule workers' zygote and the rule worker it forks: lock down, load a rule, serve frames.

:class:`argos.sandbox.workers.WorkerEngine` never starts an interpreter per rule. One *zygote*
per service process is started as ``python -I -c "from argos.sandbox.worker_main import
zygote_main; zygote_main()"`` (the package root put on ``sys.path``) with the scrubbed
environment of :func:`argos.sandbox.process.scrubbed_env` and a ``SOCK_SEQPACKET`` control
socket as an inherited fd. It imports numpy and the modules rules may use, probes which kernel
layers work (once), and then only forks: each ``spawn`` message carries a fresh protocol socket
(``SCM_RIGHTS``), a scratch directory and a memory limit; the zygote forks a child, answers its
pid and forgets it (children are reaped automatically). The zygote never runs rule code and
never sees a rule, a series or a label, so every child is a fresh process, and a fork costs a
few milliseconds where an interpreter with numpy costs 150 ms or more of CPU and its own copy
of the interpreter's memory.

The child moves its socket to fd 3, locks itself down with
:func:`argos.sandbox.process.lock_down` (the same layers as a sandbox child, minus the CPU
limit: it lives long) *before* it receives any rule, clears its environment, and then answers
frames of :mod:`argos.sandbox.process` with a :class:`~argos.sandbox.kernel.RuleKernel`.

Like a sandbox child, a locked-down worker can import nothing new: rules get the modules of
:data:`argos.sandbox.process.RULE_MODULES`, preloaded by the zygote. ``socket`` is loaded too,
so a rule that reaches for it meets the empty network namespace and seccomp, which the escape
tests check, not an import error.

Ops: ``load`` (first frame: the rules; the engine sends one), ``push``, ``batch``, ``seed`` (many
series), ``forget``, ``set_packed``, ``stats``. Points travel as
:func:`~argos.sandbox.process.pack_points` payloads; labels come back as one ``uint8[n_rules,
total_points]`` payload. Every reply echoes the request's ``id`` (the parent checks it: a frame
the rule forged on the descriptor does not answer the request). A rule raising anything, even
``KeyboardInterrupt`` or ``SystemExit``, is an error of that rule on that item
(``contain_interrupts``); an exception escaping the kernel costs the request, not the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from argos.sandbox.kernel import RuleCode, RuleKernel
from argos.sandbox.process import (
    KERNEL_LAYERS,
    Payload,
    lock_down,
    preload_rule_modules,
    probe_layers,
    recv_frame,
    send_frame,
    unpack_points,
)

PROTOCOL_FD = 3
CONTROL_FD = 10
"""Where the zygote keeps its control socket (away from fd 3, which each child's socket takes)."""
ENV_FD = "ARGOS_WORKER_FD"
ENV_ALLOW_UNCONFINED = "ARGOS_WORKER_ALLOW_UNCONFINED"
_PR_SET_PDEATHSIG = 1


def checked_layers(allow_unconfined: bool) -> dict[str, bool]:
    """Preload the rule modules and probe the kernel layers of this host (the zygote does it
    once). Raises ``RuntimeError`` when no kernel layer works and ``allow_unconfined`` is
    false."""
    preload_rule_modules()
    info = probe_layers()
    layers = {k: bool(v) for k, v in info["layers"].items()}
    if not any(layers.get(k, False) for k in KERNEL_LAYERS) and not allow_unconfined:
        raise RuntimeError(
            "no kernel isolation layer (seccomp, netns, landlock, privilege drop) works on this "
            "host; refusing to run rules unconfined (allow_unconfined=True overrides)"
        )
    return layers


def _handle(
    kernel: RuleKernel, header: Mapping[str, Any], payload: bytearray
) -> tuple[Any, Payload]:
    op = header.get("op")
    if op == "push":
        names = [str(s) for s in header["series"]]
        lengths = [int(n) for n in header["lengths"]]
        arrays = unpack_points(payload, lengths)
        res = kernel.push([(s, t, v) for s, (t, v) in zip(names, arrays, strict=True)])
    elif op == "batch":
        res = kernel.batch(unpack_points(payload, [int(n) for n in header["lengths"]]))
    elif op == "seed":
        names = [str(s) for s in header["series"]]
        arrays = unpack_points(payload, [int(n) for n in header["lengths"]])
        for s, (t, v) in zip(names, arrays, strict=True):
            kernel.seed(s, t, v)
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


def zygote_main() -> None:
    """Zygote entry point: probe once, then fork a locked-down rule worker per ``spawn``."""
    fd = int(os.environ.get(ENV_FD, "-1"))
    if fd < 0:
        sys.exit("the rule-worker zygote is started by argos.sandbox.workers, not by hand")
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if fd != CONTROL_FD:
        os.dup2(fd, CONTROL_FD)
        os.close(fd)
    os.set_inheritable(CONTROL_FD, False)
    ctl = socket.socket(fileno=CONTROL_FD)
    try:
        layers = checked_layers(os.environ.get(ENV_ALLOW_UNCONFINED) == "1")
    except BaseException as exc:
        ctl.send(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}).encode())
        os._exit(3)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    # SCHED_BATCH (inherited by every worker): a worker woken by a request does not preempt the
    # parent, which can then send the same request to the other rules' workers first
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    ctl.send(json.dumps({"ok": True, "layers": layers}).encode())
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 1)
        if not msg:
            os._exit(0)
        if len(fds) != 1:
            for f in fds:
                os.close(f)
            ctl.send(json.dumps({"ok": False, "error": "spawn needs one socket"}).encode())
            continue
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            try:
                _worker(fds[0], layers, str(req["scratch"]), int(req["memory_bytes"]))
            finally:
                os._exit(1)
        os.close(fds[0])
        ctl.send(json.dumps({"ok": True, "pid": pid}).encode())


def _worker(fd: int, layers: Mapping[str, bool], scratch: str, memory_bytes: int) -> None:
    """A forked child: the socket to fd 3, lock down, then load the rule and serve."""
    os.close(CONTROL_FD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if fd != PROTOCOL_FD:
        os.dup2(fd, PROTOCOL_FD)
        os.close(fd)
    os.set_inheritable(PROTOCOL_FD, False)
    try:
        lock_down(layers, {"cpu_seconds": 10**7, "memory_bytes": memory_bytes}, scratch)
    except BaseException as exc:
        detail = f"lock-down failed: {type(exc).__name__}: {exc}"
        send_frame(PROTOCOL_FD, {"ok": False, "error": detail})
        os._exit(3)
    for name in list(os.environ):  # nothing of the parent's environment stays visible
        del os.environ[name]
    serve(PROTOCOL_FD, layers)


def serve(fd: int, layers: Mapping[str, bool]) -> None:
    """Load the rules of the first frame, then answer frames on ``fd`` until EOF."""
    header, _ = recv_frame(fd)
    rules = [
        RuleCode(str(r["id"]), str(r["code"]), dict(r["params"]), int(r["lookback"]))
        for r in header["rules"]
    ]
    kernel = RuleKernel(rules, contain_interrupts=True)
    send_frame(
        fd,
        {
            "ok": True,
            "rule_ids": list(kernel.rule_ids),
            "load_errors": kernel.load_errors,
            "layers": dict(layers),
        },
    )
    while True:
        try:
            header, payload = recv_frame(fd)
        except EOFError:
            os._exit(0)
        try:
            reply, blob = _handle(kernel, header, payload)
        except BaseException as exc:  # a rule raising anything costs this request, not the worker
            reply, blob = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}, b""
        reply["id"] = header.get("id")
        send_frame(fd, reply, blob)
