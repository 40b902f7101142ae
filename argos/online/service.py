"""The detection service: a FastAPI app over a fleet of hot-reloadable rule sets.

The configured folder is one rule set (every series) or a folder of rule sets, each series served
by its own (:class:`~argos.online.fleet.Fleet`: routing, lazy opening, per-set reload).

Endpoints (all under a bearer token when one is configured, except ``/healthz``):

* ``POST /v1/detect``: a whole series (timestamps + values), labels back; stateless.
* ``POST /v1/streams/{series}/points``: new points of one series; stateful (history, ordering,
  post-processing kept per series).
* ``POST /v1/points``: new points of many series at once (a scrape); stateful, one micro-batch.
* ``GET /v1/rulesets``: every rule set with its series (rules, conditions, stream-exactness,
  isolation, counters once open).
* ``POST /v1/rulesets/reload``: reload what changed, set by set, swapping each atomically.
  Requests already running finish on the old version; streams keep their state across the swap.
* ``GET /metrics``: Prometheus text (points by rule set and outcome, anomalies, alerts, rule
  errors, latency, load errors and stream-exactness by rule set).
* ``GET /healthz``: liveness for load balancers, no token.
* ``/docs``, ``/openapi.json``: the OpenAPI description.

Hostile clients: the bearer token is checked before any body is read (401 without parsing);
bodies are read whole before the app sees them, within ``max_body_bytes`` (413, by Content-Length
or while a chunked body streams in) and ``body_seconds`` (408); they are then validated (422 with
the reason). Series names with control characters are refused (the detector's own check series
is reserved), and rule-controlled text (rule errors, stream-exactness details, reload failures)
is cut to :data:`MAX_ERROR_CHARS` and only ever sent on authenticated paths. The HTTP server's
own guards (header deadline, connection cap, rate-limited log) are in :mod:`argos.online.server`.
Rule code runs in isolated workers (:mod:`argos.sandbox.workers`), never in the service process,
unless the operator explicitly runs trusted rules in-process.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections import Counter as Counter_
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from argos.online.detector import Point, PointResult
from argos.online.fleet import Fleet, UnroutedSeriesError
from argos.online.postprocess import PostProcessing
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError, WorkerLimits

log = logging.getLogger(__name__)

TOKEN_ENV = "ARGOS_TOKEN"
"""Environment variable holding the bearer token (``ARGOS_API_TOKEN`` is read too)."""
TOKEN_ENVS = (TOKEN_ENV, "ARGOS_API_TOKEN")
MAX_ERROR_CHARS = 500
"""Longest rule-controlled text (rule errors, details, reload failures) put in a response."""
SERIES_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Series names: no control characters (``\x00...`` ids are the detector's own)."""
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""Paths served without the token."""
OPEN_PREFIX = "/docs-assets/"
"""The offline Swagger UI's static files (public, like ``/docs``), also served without the token."""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceConfig(BaseModel):
    """How the service runs.

    Attributes:
        rules: a rule-set folder, or a folder of rule sets (a training run folder): each series
            is served by its own set (:class:`~argos.online.fleet.Fleet`); reloads read it again.
        default_rules: the rule set for series no set of ``rules`` lists (else they are
            refused).
        token: bearer token; ``None`` means no authentication (loopback only, see
            :func:`check_bind`).
        max_body_bytes: largest request body; bigger ones get 413.
        body_seconds: time a client gets to send its whole body (408 beyond).
        max_points: most points in one request (422 beyond).
        max_series: most series with stream state; points of new series beyond it get 429.
        workers: isolated rule workers (series are sharded across them).
        isolation: ``worker`` (default) or ``inprocess`` (trusted rules only).
        request_seconds: wall-clock limit of one micro-batch in a worker.
        post: post-processing of stream and batch labels.
        strict: refuse rule sets with rules that are not stream-exact (default; ``False`` is
            ``argos serve --allow-non-causal``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    rules: Path
    default_rules: Path | None = None
    token: str | None = None
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    body_seconds: float = Field(default=30.0, gt=0)
    max_points: int = Field(default=100_000, ge=1)
    max_series: int = Field(default=100_000, ge=1)
    workers: int = Field(default=1, ge=1)
    isolation: Literal["worker", "inprocess"] = "worker"
    request_seconds: float = Field(default=10.0, gt=0)
    post: PostProcessing = PostProcessing()
    strict: bool = True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (``ValueError``) to serve a non-loopback address without a token."""
    if not token and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without a token: set --token-file or {TOKEN_ENV}, "
            "or bind 127.0.0.1"
        )


def read_token(token_file: Path | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The bearer token from ``token_file`` (first line, stripped) or else the environment
    (:data:`TOKEN_ENVS`); ``""`` when neither holds one. Raises ``ValueError`` for an empty or
    unreadable file."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ValueError(f"the token file {token_file} is empty")
        return token
    env = os.environ if environ is None else environ
    return next((env[k] for k in TOKEN_ENVS if env.get(k)), "")


def bounded_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters (rule-controlled text in responses)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# API models
# ----------------------------------------------------------------------------------------------


class PointIn(BaseModel):
    """One point of a stream."""

    model_config = ConfigDict(extra="forbid")
    timestamp: int = Field(
        ge=-(2**62), le=2**62, description="Unix seconds (or an index); increasing per series."
    )
    value: float | None = Field(description="The metric value; null or NaN is dropped as invalid.")
    base: bool | None = Field(
        default=None, description="External base detector's label (fusion with an external base)."
    )

    def to_point(self, series: str) -> Point:
        """The detector's point (a null value becomes NaN, dropped as invalid)."""
        return Point(
            series, self.timestamp, float("nan") if self.value is None else self.value, self.base
        )


class StreamPointsIn(BaseModel):
    """New points of one series, in time order."""

    model_config = ConfigDict(extra="forbid")
    points: list[PointIn] = Field(min_length=1)


class DetectIn(BaseModel):
    """A whole series: strictly increasing timestamps and finite values of the same length."""

    model_config = ConfigDict(extra="forbid")
    series: str = Field(default="batch", max_length=200, pattern=SERIES_PATTERN)
    timestamps: list[Annotated[int, Field(ge=-(2**62), le=2**62)]] = Field(min_length=1)
    values: list[float] = Field(min_length=1)
    base: list[bool] | None = Field(
        default=None, description="External base detector's labels (fusion with external base)."
    )


class SeriesPointIn(PointIn):
    """One point of a named series."""

    series: str = Field(min_length=1, max_length=200, pattern=SERIES_PATTERN)


class MultiPointsIn(BaseModel):
    """Points of several series (interleaved; in time order within each series)."""

    model_config = ConfigDict(extra="forbid")
    points: list[SeriesPointIn] = Field(min_length=1)


class RuleHit(BaseModel):
    """A rule that fired, with its rule set and its stated abnormal condition."""

    ruleset: str
    rule: str
    condition: str


class DetectEvent(BaseModel):
    """One anomalous point of a batch."""

    index: int
    timestamp: int
    alert: bool
    incident: int
    explanation: list[RuleHit]


class DetectOut(BaseModel):
    """Labels of every point (post-processed), and the anomalous points explained."""

    ruleset: str
    series: str
    labels: list[bool]
    anomalies: list[DetectEvent]
    rule_errors: list[str]


class StreamOut(BaseModel):
    """Per-point results in input order and how many points were accepted or dropped."""

    ruleset: str
    series: str
    accepted: int
    dropped: dict[str, int]
    results: list[dict[str, Any]]


class MultiStreamOut(BaseModel):
    """Per-point results of a multi-series push, in input order."""

    ruleset: str
    accepted: int
    dropped: dict[str, int]
    results: list[dict[str, Any]]


class PushOutcome(TypedDict):
    """What a push returns to both push endpoints: the fields they share."""

    ruleset: str
    accepted: int
    dropped: dict[str, int]
    results: list[dict[str, Any]]


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


class ServiceMetrics:
    """Prometheus metrics of one app (own registry, so several apps can coexist in tests).

    Detection metrics carry the rule set's key (``ruleset``; ``none`` for refused points of
    series no set serves); the per-set gauges are refreshed from the fleet at each scrape
    (:meth:`observe_fleet`).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.points = Counter(
            "argos_points",
            "Points received, by rule set and outcome.",
            ["ruleset", "outcome"],
            registry=r,
        )
        self.anomalies = Counter("argos_anomalies", "Anomalous points.", ["ruleset"], registry=r)
        self.alerts = Counter(
            "argos_alerts", "Alerts raised (after cool-down).", ["ruleset"], registry=r
        )
        self.rule_errors = Counter(
            "argos_rule_errors",
            "Rule failures on a micro-batch.",
            ["ruleset", "rule"],
            registry=r,
        )
        self.requests = Counter(
            "argos_http_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "argos_request_latency_seconds",
            "Request handling time by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.point_latency = Histogram(
            "argos_point_latency_seconds",
            "Detection time per point (request time / points), stream and batch.",
            ["kind"],
            buckets=(1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1),
            registry=r,
        )
        self.set_push_latency = Histogram(
            "argos_ruleset_push_seconds",
            "Time of one rule set's part of a stream push (its engine round trip included).",
            ["ruleset"],
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1, 10),
            registry=r,
        )
        self.push_group_size = Histogram(
            "argos_stream_push_group_size",
            "Stream requests served by one detector push (concurrent requests are grouped).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.reloads = Counter(
            "argos_reloads", "Reloads of the rule-set folder by result.", ["result"], registry=r
        )
        self.set_reloads = Counter(
            "argos_ruleset_reloads",
            "Reloads of one rule set by result (ok, failed, added, removed).",
            ["ruleset", "result"],
            registry=r,
        )
        self.ruleset = Gauge(
            "argos_ruleset_info",
            "The open rule sets (value 1) with their manifest id and digest.",
            ["ruleset", "id", "digest"],
            registry=r,
        )
        self.load_error = Gauge(
            "argos_ruleset_load_error",
            "1 when the rule set's last load failed (its previous version, if any, serves).",
            ["ruleset"],
            registry=r,
        )
        self.stream_exact = Gauge(
            "argos_rule_stream_exact",
            "1 when the rule passed the finite-lookback check, 0 when not.",
            ["ruleset", "rule"],
            registry=r,
        )
        self.series = Gauge("argos_series", "Series with stream state.", ["ruleset"], registry=r)
        self.worker_restarts = Gauge(
            "argos_worker_restarts", "Rule worker restarts, by rule set.", ["ruleset"], registry=r
        )
        self.unrouted_series = Gauge(
            "argos_unrouted_series", "Series refused because no rule set serves them.", registry=r
        )

    def observe_fleet(self, fleet: Fleet) -> None:
        """Refresh the per-set gauges from the fleet."""
        for g in (self.ruleset, self.load_error, self.stream_exact, self.series):
            g.clear()
        self.worker_restarts.clear()
        for key in fleet.open_keys:
            try:
                det = fleet.detector(key)
            except (RuleSetError, RuleWorkerError, UnroutedSeriesError):
                continue
            self.ruleset.labels(key, det.ruleset.id or det.ruleset.name, det.ruleset.digest).set(1)
            self.series.labels(key).set(det.n_series)
            self.worker_restarts.labels(key).set(float(getattr(det.engine, "restarts", 0)))
            for rid, exact in det.stream_exact.items():
                self.stream_exact.labels(key, rid).set(1.0 if exact else 0.0)
        for key in fleet.load_errors:
            self.load_error.labels(key).set(1)
        self.unrouted_series.set(len(fleet.unrouted))


# ----------------------------------------------------------------------------------------------
# Group commit of stream requests
# ----------------------------------------------------------------------------------------------


@dataclass
class _PushSlot:
    """One request's points waiting for a group push, and what came back for them."""

    points: list[Point]
    done: bool = False
    results: list[PointResult] | None = None
    error: BaseException | None = None


def open_fleet(config: ServiceConfig) -> Fleet:
    """The service's fleet; a single rule-set folder is opened at once (its errors raise here),
    the sets of a folder of rule sets open when their first series arrives."""
    fleet = Fleet(
        config.rules,
        default_rules=config.default_rules,
        isolation=config.isolation,
        workers=config.workers,
        limits=WorkerLimits(request_seconds=config.request_seconds),
        post=config.post,
        strict=config.strict,
    )
    if fleet.single:
        try:
            fleet.detector(fleet.keys[0])
        except BaseException:
            fleet.close()
            raise
    return fleet


# ----------------------------------------------------------------------------------------------
# Middleware: body size limit and request accounting
# ----------------------------------------------------------------------------------------------


async def _respond(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """A JSON error response that closes the connection (nothing more is read from it)."""
    body = json.dumps({"detail": detail}).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def token_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """Does the ``Authorization: Bearer`` header carry ``token`` (constant-time compare)?"""
    auth = next((v for k, v in headers if k == b"authorization"), b"")
    scheme, _, given = auth.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


class AuthMiddleware:
    """Check the bearer token before anything else: a request without it gets 401 and its body
    is never read or parsed (only :data:`OPEN_PATHS` are served without a token)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.token
            or scope.get("path") in OPEN_PATHS
            or str(scope.get("path", "")).startswith(OPEN_PREFIX)
            or token_matches(scope.get("headers", []), self.token)
        ):
            await self.app(scope, receive, send)
            return
        await _respond(
            send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
        )


class BodyLimitMiddleware:
    """Read the whole body before the app sees it: over ``max_bytes`` (by Content-Length, or
    while a chunked body streams in) is 413, slower than ``seconds`` is 408; the app then gets
    the buffered body, so no limit error can surface as a parse error."""

    def __init__(self, app: ASGIApp, max_bytes: int, seconds: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.seconds = seconds

    async def _read(self, receive: Receive) -> bytes | int | None:
        """The body, or 413, or None when the client went away."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body = msg.get("body", b"")
            seen += len(body)
            if seen > self.max_bytes:
                return 413
            chunks.append(body)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"request body over the limit of {self.max_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    over = int(value) > self.max_bytes
                except ValueError:
                    over = False
                if over:
                    await _respond(send, 413, too_big, [])
                    return
        try:
            body = await asyncio.wait_for(self._read(receive), self.seconds)
        except TimeoutError:
            await _respond(send, 408, f"request body not received within {self.seconds:g} s", [])
            return
        if body is None:
            return
        if isinstance(body, int):
            await _respond(send, 413, too_big, [])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------


def _bounded(description: dict[str, Any]) -> dict[str, Any]:
    """A fleet's or a detector's description with rule-controlled text (stream-exactness details,
    load errors) cut to :data:`MAX_ERROR_CHARS`, wherever it is nested."""

    def cut(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: bounded_text(v) if k in _RULE_TEXT and isinstance(v, str) else cut(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [cut(v) for v in node]
        return node

    return dict(cut(description))


_RULE_TEXT = frozenset({"stream_exact_detail", "load_error", "error", "detail"})


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the app over a :class:`~argos.online.fleet.Fleet` of the configured folder.

    A single rule-set folder is loaded at once (its isolated workers started); the sets of a
    folder of rule sets open when their first series arrives. Raises
    :class:`~argos.rules.artifacts.RuleSetError` or :class:`RuleWorkerError` when the folder
    cannot be served.
    """
    fleet = open_fleet(config)
    metrics = ServiceMetrics()
    stream_lock = threading.Lock()

    def observe_push(key: str, n: int, seconds: float) -> None:
        metrics.set_push_latency.labels(key).observe(seconds)

    fleet.on_push = observe_push

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        fleet.close()

    app = FastAPI(
        title="Argos detection service",
        version="1",
        description="Run exported Argos rule sets on metric streams. Bearer token when configured.",
        lifespan=lifespan,
        docs_url=None,  # served by mount_offline_docs, from the installed package
        redoc_url=None,
    )
    mount_offline_docs(app)
    pending: list[_PushSlot] = []
    pending_lock = threading.Lock()
    app.state.fleet = fleet
    app.state.stream_lock = stream_lock  # held by the running group push (tests use it)
    app.state.stream_queue = pending  # requests waiting for a group push (diagnostics, tests)
    app.state.metrics = metrics
    app.state.config = config

    def require_token(request: Request) -> None:
        """Second check (the middleware already refused requests without the token)."""
        if config.token and not token_matches(request.scope.get("headers", []), config.token):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(require_token)]

    @app.middleware("http")
    async def account(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - t0)
        return response

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=config.max_body_bytes, seconds=config.body_seconds
    )
    app.add_middleware(AuthMiddleware, token=config.token)  # outermost: before any body is read

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:20]:
            where = ".".join(str(x) for x in e.get("loc", ()))
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness: the service answers (no token needed); names its rule set, or counts them."""
        if fleet.single:
            return {"status": "ok", "ruleset": fleet.entry(fleet.keys[0]).manifest_id}
        return {"status": "ok", "rulesets": len(fleet.keys), "open": len(fleet.open_keys)}

    @app.get("/metrics", tags=["ops"], dependencies=auth, response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text exposition."""
        metrics.observe_fleet(fleet)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/rulesets", tags=["rule sets"], dependencies=auth)
    def rulesets() -> dict[str, Any]:
        """Every rule set: its series, partition, load error and, once open, its rules, stated
        conditions, stream-exactness, isolation and counters; plus the routing."""
        return _bounded(fleet.describe())

    @app.post("/v1/rulesets/reload", tags=["rule sets"], dependencies=auth)
    def reload(force: bool = False) -> dict[str, Any]:
        """Reload what changed in the folder (``?force=true``: every set), set by set (other sets
        and their streams are not touched). 409 when a set failed: it keeps its previous version;
        the others reloaded."""
        report = fleet.reload(force=force)
        for key in report.reloaded:
            metrics.set_reloads.labels(key, "ok").inc()
        for key in report.added:
            metrics.set_reloads.labels(key, "added").inc()
        for key in report.removed:
            metrics.set_reloads.labels(key, "removed").inc()
        for key in report.failed:
            metrics.set_reloads.labels(key, "failed").inc()
        if report.failed:
            metrics.reloads.labels("failed").inc()
            detail = "; ".join(f"{k}: {v}" for k, v in report.failed.items())
            raise HTTPException(
                status_code=409,
                detail=bounded_text(
                    f"reload failed, old set kept for {', '.join(report.failed)}: {detail}"
                ),
            )
        metrics.reloads.labels("ok").inc()
        return _bounded({**report.to_json(), **fleet.describe(stats=False)})

    @app.post("/v1/detect", tags=["detect"], dependencies=auth, response_model=DetectOut)
    def detect(body: DetectIn) -> DetectOut:
        """Label a whole series (stateless) with the rule set of ``series``. Timestamps strictly
        increasing, values finite."""
        n = len(body.values)
        if len(body.timestamps) != n:
            raise HTTPException(
                422, f"timestamps ({len(body.timestamps)}) and values ({n}) differ in length"
            )
        if n > config.max_points:
            raise HTTPException(422, f"{n} points is over the limit of {config.max_points}")
        t0 = time.perf_counter()
        try:
            det, res = fleet.detect_arrays(
                body.series,
                np.asarray(body.timestamps, dtype=np.int64),
                np.asarray(body.values, dtype=np.float64),
                None if body.base is None else np.asarray(body.base, dtype=np.bool_),
            )
        except UnroutedSeriesError as exc:
            metrics.points.labels("none", "unrouted").inc(n)
            raise HTTPException(404, str(exc)) from exc
        except (ValueError, OverflowError) as exc:  # RuleSetError is a ValueError: check first
            if isinstance(exc, RuleSetError):
                raise HTTPException(503, f"rule set unavailable: {bounded_text(str(exc))}") from exc
            raise HTTPException(422, str(exc)) from exc
        except RuleWorkerError as exc:
            raise HTTPException(503, f"rule engine unavailable: {bounded_text(str(exc))}") from exc
        key = det.key
        events = []
        for i in res.anomaly.nonzero()[0].tolist():
            fired = res.rule_labels[:, i].nonzero()[0].tolist()
            events.append(
                DetectEvent(
                    index=i,
                    timestamp=body.timestamps[i],
                    alert=bool(res.alert[i]),
                    incident=int(res.incident[i]),
                    explanation=[
                        RuleHit(
                            ruleset=key,
                            rule=det.rule_ids[r],
                            condition=det.conditions[det.rule_ids[r]],
                        )
                        for r in fired
                    ],
                )
            )
        for e in res.errors:
            metrics.rule_errors.labels(key, e.rule_id).inc()
        metrics.points.labels(key, "ok").inc(n)
        metrics.anomalies.labels(key).inc(int(res.anomaly.sum()))
        metrics.alerts.labels(key).inc(int(res.alert.sum()))
        metrics.point_latency.labels("batch").observe((time.perf_counter() - t0) / n)
        return DetectOut(
            ruleset=key,
            series=body.series,
            labels=res.anomaly.tolist(),
            anomalies=events,
            rule_errors=[bounded_text(f"{e.rule_id}: {e.message}") for e in res.errors],
        )

    def push_group(group: list[_PushSlot]) -> None:
        """Push the points of several requests at once (under the stream lock); each slot gets
        its own results, or its own error."""
        try:
            taken: list[_PushSlot] = []
            new_series: set[str] = set()
            for slot in group:
                new = {p.series for p in slot.points if not fleet.has_series(p.series)}
                new -= new_series
                if new and fleet.n_series + len(new_series) + len(new) > config.max_series:
                    slot.error = HTTPException(
                        429,
                        f"too many series (limit {config.max_series}); not tracking "
                        f"{len(new)} new series",
                    )
                    continue
                new_series |= new
                taken.append(slot)
            points = [p for slot in taken for p in slot.points]
            metrics.push_group_size.observe(len(taken))
            t0 = time.perf_counter()
            results = fleet.push(points)
            if points:
                metrics.point_latency.labels("stream").observe(
                    (time.perf_counter() - t0) / len(points)
                )
            a_ = 0
            for slot in taken:
                slot.results = results[a_ : a_ + len(slot.points)]
                a_ += len(slot.points)
        except BaseException as exc:
            for slot in group:
                if slot.results is None and slot.error is None:
                    slot.error = exc
            raise
        finally:
            for slot in group:
                slot.done = True

    def push_points(points: list[Point]) -> PushOutcome:
        """Stream points, each series through its own rule set; the rule set's key (when one
        set served them all), accepted and dropped counts, and the JSON results.

        Group commit: requests that arrive while a push runs wait in a queue, and the next
        request to get the stream lock pushes all of them at once (one engine round trip per
        rule set, one packed rule call per set for all their series), then hands each request
        its own results. A reload swaps a set under the fleet's push lock, so a set's part of a
        group lands on one version.
        """
        n = len(points)
        if n > config.max_points:
            raise HTTPException(422, f"{n} points is over the limit of {config.max_points}")
        slot = _PushSlot(points)
        with pending_lock:
            pending.append(slot)
        with stream_lock:
            if not slot.done:
                with pending_lock:
                    group = pending[:]
                    pending.clear()
                push_group(group)
        if slot.error is not None:
            raise slot.error
        if slot.results is None:  # never expected: fail loudly
            raise HTTPException(500, "the push of this request was lost")
        results = slot.results
        dropped: dict[str, int] = {}
        per_set: dict[str, Counter_[str]] = {}
        errors: set[tuple[str, str]] = set()
        for r in results:
            c = per_set.setdefault(r.ruleset or "none", Counter_())
            c[r.status] += 1
            if r.status != "ok":
                dropped[r.status] = dropped.get(r.status, 0) + 1
                continue
            c["anomalies"] += r.anomaly
            c["alerts"] += r.alert
            errors.update((r.ruleset, e) for e in r.errors)
        for key, rid in errors:
            metrics.rule_errors.labels(key, rid).inc()
        for key, c in per_set.items():
            for outcome in ("ok", "late", "duplicate", "invalid", "unrouted", "unavailable"):
                if c[outcome]:
                    metrics.points.labels(key, outcome).inc(c[outcome])
            if c["anomalies"]:
                metrics.anomalies.labels(key).inc(c["anomalies"])
            if c["alerts"]:
                metrics.alerts.labels(key).inc(c["alerts"])
        accepted = n - sum(dropped.values())
        keys = [k for k in per_set if k != "none"]
        return PushOutcome(
            ruleset=keys[0] if len(keys) == 1 else "",
            accepted=accepted,
            dropped=dropped,
            results=[fleet.result_json(r) for r in results],
        )

    @app.post(
        "/v1/streams/{series}/points", tags=["detect"], dependencies=auth, response_model=StreamOut
    )
    def stream_points(
        series: Annotated[str, PathParam(min_length=1, max_length=200, pattern=SERIES_PATTERN)],
        body: StreamPointsIn,
    ) -> StreamOut:
        """Push new points of one series (stateful); per-point labels and explanations back."""
        return StreamOut(series=series, **push_points([p.to_point(series) for p in body.points]))

    @app.post("/v1/points", tags=["detect"], dependencies=auth, response_model=MultiStreamOut)
    def multi_points(body: MultiPointsIn) -> MultiStreamOut:
        """Push points of many series at once (e.g. one scrape); stateful, results in input
        order. Points of one series must be in time order; series may interleave."""
        return MultiStreamOut(**push_points([p.to_point(p.series) for p in body.points]))

    return app


def config_from_env() -> ServiceConfig:
    """Service config from ``ARGOS_RULES`` and ``ARGOS_TOKEN`` / ``ARGOS_API_TOKEN`` (for
    ``uvicorn --factory``)."""
    rules = os.environ.get("ARGOS_RULES")
    if not rules:
        raise RuntimeError("set ARGOS_RULES to the rule-set folder")
    return ServiceConfig(rules=Path(rules), token=read_token() or None)


def app_from_env() -> FastAPI:
    """``uvicorn argos.online.service:app_from_env --factory``."""
    return create_app(config_from_env())


DOCS_ASSETS = "/docs-assets"
"""Where the Swagger UI files of the ``swagger-ui-bundle`` package are served."""


def mount_offline_docs(app: FastAPI) -> None:
    """``/docs``: the interactive Swagger UI with its script and style served by this service from
    the installed ``swagger-ui-bundle`` package, so the page works without internet (FastAPI's
    default page loads them from a CDN, and is blank offline). Without the package, FastAPI's
    default page is used."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # pragma: no cover - a dependency; keep /docs even without it
        swagger_ui_path = None
    if swagger_ui_path is not None:
        from fastapi.staticfiles import StaticFiles

        app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        if swagger_ui_path is None:  # pragma: no cover
            return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=app.title)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
        )
