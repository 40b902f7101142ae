"""The rule worker process: lock down, load the rules, serve micro-batches until EOF.

:class:`argos.sandbox.workers.WorkerEngine` starts it as ``python -I -c "from
argos.sandbox.worker_main import main; main()"`` (the package root put on ``sys.path``) with the
scrubbed environment of :func:`argos.sandbox.process.scrubbed_env` plus the variables below, and
the protocol socket passed as an inherited fd. The worker moves the socket to fd 3, locks itself
down with :func:`argos.sandbox.process.lock_down` (the same layers as a sandbox child, minus the
CPU limit: it lives long) *before* it compiles any rule, clears its environment, and then answers
frames of :mod:`argos.sandbox.process` with a :class:`~argos.sandbox.kernel.RuleKernel`.

Like a sandbox child, a locked-down worker can import nothing new: rules get the modules of
:data:`argos.sandbox.process.RULE_MODULES`, preloaded before lock-down. ``socket`` is loaded too
(it always was, by the module that held the worker before), so a rule that reaches for it meets
the empty network namespace and seccomp, which the escape tests check, not an import error.

Ops: ``load`` (first frame: the rules; the engine sends one), ``push``, ``batch``, ``seed`` (many
series), ``forget``, ``set_packed``, ``stats``. Points travel as
:func:`~argos.sandbox.process.pack_points` payloads; labels come back as one ``uint8[n_rules,
total_points]`` payload. Every reply echoes the request's ``id`` (the parent checks it: a frame
the rule forged on the descriptor does not answer the request). A rule raising anything, even
``KeyboardInterrupt`` or ``SystemExit``, is an error of that rule on that item
(``contain_interrupts``); an exception escaping the kernel costs the request, not the worker.
"""

from __future__ import annotations

import os
import socket  # noqa: F401  (see below)
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
ENV_FD = "ARGOS_WORKER_FD"
ENV_SCRATCH = "ARGOS_WORKER_SCRATCH"
ENV_MEMORY_BYTES = "ARGOS_WORKER_MEMORY_BYTES"
ENV_ALLOW_UNCONFINED = "ARGOS_WORKER_ALLOW_UNCONFINED"


def lock_down_current_process(allow_unconfined: bool) -> dict[str, bool]:
    """Lock the current (worker) process down with the sandbox's primitives; return the layers.

    The protocol must already be on fd 3 (everything else is closed). Raises ``RuntimeError``
    when no kernel layer works and ``allow_unconfined`` is false.
    """
    preload_rule_modules()
    info = probe_layers()
    layers = {k: bool(v) for k, v in info["layers"].items()}
    if not any(layers.get(k, False) for k in KERNEL_LAYERS) and not allow_unconfined:
        raise RuntimeError(
            "no kernel isolation layer (seccomp, netns, landlock, privilege drop) works on this "
            "host; refusing to run rules unconfined (allow_unconfined=True overrides)"
        )
    limits = {"cpu_seconds": 10**7, "memory_bytes": int(os.environ[ENV_MEMORY_BYTES])}
    lock_down(layers, limits, os.environ[ENV_SCRATCH])
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


def main() -> None:
    """Worker entry point: lock down, load the rules, serve frames on fd 3 until EOF."""
    fd = int(os.environ.get(ENV_FD, "-1"))
    if fd < 0:
        sys.exit("the rule worker is started by argos.sandbox.workers.WorkerEngine, not by hand")
    if fd != PROTOCOL_FD:
        os.dup2(fd, PROTOCOL_FD)
        os.close(fd)
    fd = PROTOCOL_FD
    os.set_inheritable(fd, False)
    allow_unconfined = os.environ.get(ENV_ALLOW_UNCONFINED) == "1"
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
    kernel = RuleKernel(rules, contain_interrupts=True)
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
        except BaseException as exc:  # a rule raising anything costs this request, not the worker
            reply, blob = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}, b""
        reply["id"] = header.get("id")
        send_frame(fd, reply, blob)
