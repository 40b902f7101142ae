"""The detection service: a FastAPI app over a fleet of hot-reloadable rule sets.

The configured folder is one rule set (every series) or a folder of rule sets, each series served
by its own (:class:`~argos.online.fleet.Fleet`: routing, lazy opening, per-set reload).

Endpoints (all under a bearer token when one is configured, except ``/healthz``):

* ``POST /v1/detect``: a whole series (timestamps + values), labels back; stateless.
* ``POST /v1/streams/{series}/points``: new points of one series; stateful (history, ordering,
  post-processing kept per series).
* ``POST /v1/points``: new points of many series at once (a scrape); stateful, one micro-batch.
* ``GET /v1/rulesets``: every rule set with its series (rules, conditions, stream-exactness,
  quarantined rules, isolation, counters once open).
* ``POST /v1/rulesets/reload``: reload what changed, set by set, swapping each atomically.
  Requests already running finish on the old version; streams keep their state across the swap.
* ``GET /metrics``: Prometheus text (points by rule set and outcome, anomalies, alerts, rule
  errors, latency, load errors, stream-exactness and quarantined rules by rule set).
* ``GET /healthz``: liveness for load balancers, no token.
* ``/docs``, ``/openapi.json``: the OpenAPI description.

Hostile clients: the bearer token is checked before any body is read (401 without parsing);
bodies are read whole before the app sees them, within ``max_body_bytes`` (413, by Content-Length
or while a chunked body streams in) and ``body_seconds`` (408) (:mod:`argos.online.guards`); they
are then validated (422 with the reason; :mod:`argos.online.api`). Series names with control
characters are refused (the detector's own check series is reserved), rule-controlled text (rule
errors, stream-exactness details, reload failures, quarantine reasons) is cut to
:data:`argos.online.api.MAX_ERROR_CHARS` and only ever sent on authenticated paths, and a
response carries each fired rule's condition once, not once per point. The HTTP server's own
guards (header deadline, connection cap, rate-limited log) are in :mod:`argos.online.server`;
the metrics in :mod:`argos.online.telemetry`. Rule code runs in isolated workers, one process
per rule (:mod:`argos.sandbox.workers`), never in the service process, unless the operator
explicitly runs trusted rules in-process.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections import Counter as Counter_
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from argos.online.api import (
    SERIES_PATTERN,
    DetectEvent,
    DetectIn,
    DetectOut,
    MultiPointsIn,
    MultiStreamOut,
    PushOutcome,
    StreamOut,
    StreamPointsIn,
    bounded_description,
    bounded_text,
)
from argos.online.detector import DetectorSettings, Isolation
from argos.online.fleet import Fleet, UnroutedSeriesError
from argos.online.guards import AuthMiddleware, BodyLimitMiddleware, token_matches
from argos.online.points import Point, PointResult
from argos.online.postprocess import PostProcessing
from argos.online.telemetry import ServiceMetrics
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError, WorkerLimits

log = logging.getLogger(__name__)

TOKEN_ENV = "ARGOS_TOKEN"
"""Environment variable holding the bearer token (``ARGOS_API_TOKEN`` is read too)."""
TOKEN_ENVS = (TOKEN_ENV, "ARGOS_API_TOKEN")


class ServiceConfig(BaseModel):
    """How the service runs.

    Attributes:
        rules: a rule-set folder, or a folder of rule sets (a training run folder): each series
            is served by its own set (:class:`~argos.online.fleet.Fleet`); reloads read it again.
        default_rules: the rule set for series no set of ``rules`` lists (else refused).
        token: bearer token; ``None`` means no authentication (loopback only, see
            :func:`check_bind`).
        max_body_bytes: largest request body; bigger ones get 413.
        body_seconds: time a client gets to send its whole body (408 beyond).
        max_points: most points in one request (422 beyond).
        max_series: most series with stream state; points of new series beyond it get 429.
        workers: isolated rule workers (series are sharded across them).
        isolation: ``worker`` (default), ``auto`` (builtin-template renderings in-process, the
            other rules in workers) or ``inprocess`` (trusted rules only).
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
    isolation: Isolation = "worker"
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
    settings = DetectorSettings(
        isolation=config.isolation,
        workers=config.workers,
        limits=WorkerLimits(request_seconds=config.request_seconds),
        post=config.post,
        strict=config.strict,
    )
    fleet = Fleet(
        config.rules, default_rules=config.default_rules, settings=settings, freeze_heap=True
    )
    return fleet.open_single()


# ----------------------------------------------------------------------------------------------


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
        return bounded_description(fleet.describe())

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
        return bounded_description({**report.to_json(), **fleet.describe(stats=False)})

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
        fired_ever: set[str] = set()
        for i in res.anomaly.nonzero()[0].tolist():
            fired = [det.rule_ids[r] for r in res.rule_labels[:, i].nonzero()[0].tolist()]
            fired_ever.update(fired)
            events.append(
                DetectEvent(
                    index=i,
                    timestamp=body.timestamps[i],
                    alert=bool(res.alert[i]),
                    incident=int(res.incident[i]),
                    rules=fired,
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
            conditions={key: {r: det.conditions.get(r, "") for r in sorted(fired_ever)}}
            if fired_ever
            else {},
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
            results=[fleet.result_json(r, explain=False) for r in results],
            conditions=fleet.conditions_of(results),
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
