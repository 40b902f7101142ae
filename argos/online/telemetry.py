"""The detection service's Prometheus metrics (:class:`ServiceMetrics`).

Detection metrics carry the rule set's key; per-set gauges (open sets, load errors,
stream-exactness, series, worker restarts, quarantined rules) are refreshed from the fleet at each
scrape.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from argos.online.fleet import Fleet, UnroutedSeriesError
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError

RULESET = "ruleset"
"""The label every per-set metric carries first: the rule set's key in the fleet."""

_Metric = TypeVar("_Metric", Counter, Gauge)


class ServiceMetrics:
    """Prometheus metrics of one app (own registry, so several apps can coexist in tests).

    Detection metrics carry the rule set's key (``ruleset``; ``none`` for refused points of
    series no set serves); the per-set gauges are refreshed from the fleet at each scrape
    (:meth:`observe_fleet`).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        per_set = self._per_set
        self.points = per_set(
            Counter, "argos_points", "Points received, by rule set and outcome.", "outcome"
        )
        self.anomalies = per_set(Counter, "argos_anomalies", "Anomalous points.")
        self.alerts = per_set(Counter, "argos_alerts", "Alerts raised (after cool-down).")
        self.rule_errors = per_set(
            Counter, "argos_rule_errors", "Rule failures on a micro-batch.", "rule"
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
            [RULESET],
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
        self.set_reloads = per_set(
            Counter,
            "argos_ruleset_reloads",
            "Reloads of one rule set by result (ok, failed, added, removed).",
            "result",
        )
        self.ruleset = per_set(
            Gauge,
            "argos_ruleset_info",
            "The open rule sets (value 1) with their manifest id and digest.",
            "id",
            "digest",
        )
        self.load_error = per_set(
            Gauge,
            "argos_ruleset_load_error",
            "1 when the rule set's last load failed (its previous version, if any, serves).",
        )
        self.stream_exact = per_set(
            Gauge,
            "argos_rule_stream_exact",
            "1 when the rule passed the finite-lookback check, 0 when not.",
            "rule",
        )
        self.series = per_set(Gauge, "argos_series", "Series with stream state.")
        self.worker_restarts = per_set(
            Gauge, "argos_worker_restarts", "Rule worker restarts, by rule set."
        )
        self.quarantined = per_set(
            Gauge,
            "argos_rule_quarantined",
            "1 for a rule stopped until its set is reloaded (alert storm or time budget).",
            "rule",
        )
        self.unrouted_series = Gauge(
            "argos_unrouted_series", "Series refused because no rule set serves them.", registry=r
        )

    def _per_set(self, kind: type[_Metric], name: str, doc: str, *labels: str) -> _Metric:
        """A metric of this registry labelled by rule set first (``ruleset``), then ``labels``."""
        return kind(name, doc, [RULESET, *labels], registry=self.registry)

    def observe_fleet(self, fleet: Fleet) -> None:
        """Refresh the per-set gauges from the fleet."""
        for g in (self.ruleset, self.load_error, self.stream_exact, self.series, self.quarantined):
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
            for rid in det.engine.quarantined:
                self.quarantined.labels(key, rid).set(1)
        for key in fleet.load_errors:
            self.load_error.labels(key).set(1)
        self.unrouted_series.set(len(fleet.unrouted))
