"""The parent side of the rule workers' zygote (:func:`argos.sandbox.worker_main.zygote_main`).

One zygote per process (and per ``allow_unconfined``) is started from a single long-lived
spawner thread, so its parent-death signal fires only when this process ends. It is an
interpreter with the scrubbed environment of :func:`argos.sandbox.process.scrubbed_env`, numpy
and the rule modules loaded and the kernel layers probed once; it never runs rule code. Each
:meth:`WorkerZygote.spawn` passes it a fresh protocol socket over a ``SOCK_SEQPACKET`` control
socket (``SCM_RIGHTS``) and gets back the pid of a forked child, which locks itself down and
then serves one rule (:mod:`argos.sandbox.workers`). :func:`worker_zygote` starts it on first
use and again when it died (its children die with it: their parent-death signal).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from argos.sandbox.process import scrubbed_env
from argos.sandbox.worker_main import ENV_ALLOW_UNCONFINED, ENV_FD


class ZygoteError(RuntimeError):
    """The zygote could not be started, died, or could not fork a worker."""


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argos-rule-worker-spawner")


def _zygote_env(fd: int, allow_unconfined: bool) -> dict[str, str]:
    extra = {
        ENV_FD: str(fd),
        ENV_ALLOW_UNCONFINED: "1" if allow_unconfined else "0",
        # keep freed memory in the heap: otherwise every large temporary array of a rule is
        # mapped, page-faulted and unmapped again on each request (2-3x the compute time on big
        # batches)
        "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    }
    return scrubbed_env(extra)


class WorkerZygote:
    """The rule-worker zygote (:func:`argos.sandbox.worker_main.zygote_main`): one interpreter
    with numpy, started once per process (and per ``allow_unconfined``), that forks every rule
    worker. Thread-safe; :func:`worker_zygote` replaces it when it died."""

    def __init__(self, allow_unconfined: bool, start_seconds: float) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctl = parent
        self._lock = threading.Lock()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from argos.sandbox.worker_main import zygote_main; zygote_main()"
        )
        try:
            # -I: no user site, no PYTHONPATH, no cwd; spawned from one long-lived thread, so
            # the zygote's parent-death signal fires only when this process ends
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                [sys.executable, "-I", "-c", boot],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                env=_zygote_env(child.fileno(), allow_unconfined),
                cwd="/",
            ).result()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reply = self._reply(time.monotonic() + start_seconds)
        if not reply.get("ok"):
            self.close()
            raise ZygoteError(f"rule worker failed to start: {reply.get('error')}")
        self.layers = {str(k): bool(v) for k, v in dict(reply["layers"]).items()}

    def _reply(self, deadline: float) -> dict[str, Any]:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([self._ctl], [], [], wait)[0]:
            self.close()
            raise ZygoteError("the rule-worker zygote did not answer in time")
        msg = self._ctl.recv(1 << 16)
        if not msg:
            self.close()
            raise ZygoteError("the rule-worker zygote exited")
        reply: dict[str, Any] = json.loads(msg)
        return reply

    @property
    def alive(self) -> bool:
        """Whether the zygote process still runs."""
        return self.proc.poll() is None

    def spawn(self, scratch: str, memory_bytes: int) -> tuple[int, socket.socket]:
        """Fork a worker: its pid and the parent's end of its protocol socket."""
        parent, child = socket.socketpair()
        try:
            with self._lock:
                request = json.dumps({"scratch": scratch, "memory_bytes": memory_bytes})
                socket.send_fds(self._ctl, [request.encode()], [child.fileno()])
                reply = self._reply(time.monotonic() + 10.0)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        if not reply.get("ok"):
            parent.close()
            raise ZygoteError(f"the zygote could not fork a worker: {reply.get('error')}")
        return int(reply["pid"]), parent

    def close(self) -> None:
        """Stop the zygote (its children get their parent-death signal)."""
        self._ctl.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


_ZYGOTES: dict[bool, WorkerZygote] = {}
_ZYGOTE_LOCK = threading.Lock()


def zygote_pids() -> list[int]:
    """Process ids of this process's rule-worker zygotes (diagnostics, memory accounting)."""
    with _ZYGOTE_LOCK:
        return [z.proc.pid for z in _ZYGOTES.values() if z.alive]


def worker_zygote(allow_unconfined: bool, start_seconds: float) -> WorkerZygote:
    """The process's zygote for this ``allow_unconfined``, started (again) when needed."""
    with _ZYGOTE_LOCK:
        z = _ZYGOTES.get(allow_unconfined)
        if z is None or not z.alive:
            if z is not None:
                z.close()
            z = _ZYGOTES[allow_unconfined] = WorkerZygote(allow_unconfined, start_seconds)
        return z
