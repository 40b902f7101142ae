"""The HTTP server around the detection service: uvicorn with guards against hostile clients.

uvicorn on its own waits forever for a request's headers (a client sending one byte per second
holds a connection and a file descriptor indefinitely), accepts connections until the process
runs out of descriptors, and logs every malformed request. :func:`run_server` runs it with:

* a **header deadline** (:class:`ServerLimits` ``header_seconds``): a connection that has not
  sent a complete request head within that time after connecting, or after its previous
  response, is closed (the body deadline is the service's, ``ServiceConfig.body_seconds``);
* a **connection cap** (``max_connections``, kept under ``RLIMIT_NOFILE``): a connection beyond
  it evicts the idle connection that has waited longest for a request head (one that never sent
  a request first), or is closed at once when every other connection is busy, so ``/healthz``
  and clients that talk keep working through a flood of half-open connections;
* a **rate-limited log** (``log_per_second``): uvicorn's and the service's records beyond the
  rate are dropped and counted, and the next record that passes says how many were dropped.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "argos")
"""Loggers whose records go through the rate limit."""


class ServerLimits(BaseModel):
    """Guards of the HTTP server (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    header_seconds: float = Field(default=10.0, gt=0)
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    log_per_second: float = Field(default=20.0, gt=0)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to half the soft ``RLIMIT_NOFILE`` (the rest is for workers, files
    and the listening socket)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the header deadline and the connection cap.

    Subclasses made by :func:`guarded_protocol` set the two class attributes.
    """

    header_seconds = 10.0
    max_connections = 1000
    refused = 0  # connections closed or evicted by the cap (all instances)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._served = 0
        self._since = time.monotonic()
        open_now = sum(1 for c in self.connections if not c.transport.is_closing())
        if open_now > self.max_connections and not self._evict_idle():
            type(self).refused += 1
            self.logger.warning("connection refused: %d connections open", len(self.connections))
            transport.abort()
            return
        self._arm_header_deadline()

    def _idle(self) -> bool:
        """Waiting for a request head (never sent one, or between keep-alive requests)."""
        return self._header_timer is not None and (
            self.cycle is None or self.cycle.response_complete
        )

    def _evict_idle(self) -> bool:
        """Make room by closing the idle connection that has waited longest, preferring ones
        that never sent a request (a flood of half-open connections then costs the flood, not
        the clients that are talking). False when every other connection is busy."""
        idle = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, GuardedH11Protocol)
            and not c.transport.is_closing()
            and c._idle()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c._served > 0, c._since))
        type(self).refused += 1
        victim._cancel_header_deadline()
        victim.transport.abort()
        return True

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        armed_cycle = self.cycle

        def expire() -> None:
            self._header_timer = None
            if self.cycle is armed_cycle and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time

        self._header_timer = self.loop.call_later(self.header_seconds, expire)

    def _cancel_header_deadline(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        self._served += 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self._since = time.monotonic()
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with ``limits`` applied."""
    attrs = {
        "header_seconds": limits.header_seconds,
        "max_connections": connection_cap(limits.max_connections),
        "refused": 0,
    }
    return type("ArgosH11Protocol", (GuardedH11Protocol,), attrs)


class RateLimitFilter(logging.Filter):
    """Token bucket over all records it sees: ``per_second`` on average, bursts of twice that;
    the first record after a drop carries how many were dropped."""

    def __init__(self, per_second: float) -> None:
        super().__init__()
        self.rate = per_second
        self.tokens = 2 * per_second
        self.last = time.monotonic()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            self.dropped += 1
            return False
        self.tokens -= 1
        if self.dropped:
            record.msg = f"{record.msg} ({self.dropped} log records dropped by the rate limit)"
            self.dropped = 0
        return True


def install_log_rate_limit(per_second: float) -> RateLimitFilter:
    """Attach one shared :class:`RateLimitFilter` to :data:`LOGGERS` and their handlers."""
    flt = RateLimitFilter(per_second)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for handler in logger.handlers:
            handler.addFilter(flt)
    return flt


def run_server(
    app: Any, host: str, port: int, *, log_level: str = "info", limits: ServerLimits | None = None
) -> None:
    """Serve ``app`` with uvicorn and the guards of :class:`ServerLimits` until interrupted."""
    import uvicorn

    limits = limits or ServerLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, round(limits.keep_alive_seconds)),
        h11_max_incomplete_event_size=64 * 1024,
    )
    server = uvicorn.Server(config)
    config.load()  # configures uvicorn's loggers, so the filter lands on their handlers
    install_log_rate_limit(limits.log_per_second)
    server.run()
