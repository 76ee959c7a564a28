"""Prometheus metrics of the data plane, on a private registry (no global state).

Label children are created when a variant loads, so the request path only calls ``inc``/``observe`` on
pre-bound children. Names follow Prometheus conventions: ``mlpilot_`` prefix, base units, ``_total`` counters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("decode", "route", "predict", "encode", "total")
STATUSES = ("ok", "client_error", "server_error")


class _Off:
    """Stands in for a metric child when per-request metrics are off: every update is a no-op."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_OFF = _Off()


class VariantMetrics:
    """Pre-bound label children of one (deployment, variant)."""

    __slots__ = ("batch", "requests", "stages")

    def __init__(self, m: Metrics, deployment: str, variant: str) -> None:
        if not m.per_request:
            self.requests: dict[str, Any] = dict.fromkeys(STATUSES, _OFF)
            self.stages: dict[str, Any] = dict.fromkeys(STAGES, _OFF)
            self.batch: Any = _OFF
            return
        self.requests = {s: m.requests.labels(deployment, variant, s) for s in STATUSES}
        self.stages = {s: m.latency.labels(deployment, variant, s) for s in STAGES}
        self.batch = m.batch_size.labels(deployment, variant)


class Metrics:
    """Args:
    per_request: update the per-request series (requests, latency per stage, batch sizes, in-flight); off,
        only rare events are counted (drops, errors before routing, the snapshot version). For benchmarks.
    """

    def __init__(self, per_request: bool = True) -> None:
        self.per_request = per_request
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlpilot_requests", "Inference requests by outcome", ["deployment", "variant", "status"], registry=r
        )
        self.latency = Histogram(
            "mlpilot_request_duration_seconds",
            "Latency per stage",
            ["deployment", "variant", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mlpilot_batch_size",
            "Requests per model call",
            ["deployment", "variant"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "mlpilot_queue_depth", "Requests waiting for a batch", ["deployment", "variant"], registry=r
        )
        self.inflight: Any = Gauge("mlpilot_inflight_requests", "Requests being served", registry=r)
        if not per_request:
            self.inflight = _OFF
        self.errors = Counter(
            "mlpilot_request_errors", "Requests rejected before routing, by reason", ["reason"], registry=r
        )
        self.shadow_dropped = Counter(
            "mlpilot_shadow_dropped",
            "Shadow requests dropped (shadow queue full)",
            ["deployment", "variant"],
            registry=r,
        )
        self.log_dropped = Counter("mlpilot_log_dropped", "Request-log records dropped (writer queue full)", registry=r)
        self.snapshot_version = Gauge("mlpilot_snapshot_version", "Routing snapshot being served", registry=r)
        self.unmatched = {
            reason: self.errors.labels(reason) for reason in ("bad_request", "not_found", "too_large", "internal")
        }

    def variant(self, deployment: str, variant: str) -> VariantMetrics:
        return VariantMetrics(self, deployment, variant)

    def watch_queue(self, deployment: str, variant: str, depth: Callable[[], float]) -> None:
        self.queue_depth.labels(deployment, variant).set_function(depth)

    def forget(self, deployment: str, variant: str) -> None:
        """Drop the series of an unloaded variant (keeps /metrics from growing forever)."""
        for metric, labelsets in (
            (self.requests, [(deployment, variant, s) for s in STATUSES]),
            (self.latency, [(deployment, variant, s) for s in STAGES]),
            (self.batch_size, [(deployment, variant)]),
            (self.queue_depth, [(deployment, variant)]),
            (self.shadow_dropped, [(deployment, variant)]),
        ):
            for labels in labelsets:
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
