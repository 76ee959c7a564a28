"""Prometheus metrics of the data plane, on a private registry (no global state).

The per-request series (requests, latency per stage, batch sizes, in-flight) are plain counters updated by the
event-loop thread — one ``+=`` and one ``bisect`` per observation, no lock — and turned into Prometheus metric
families only when ``/metrics`` is scraped. (``prometheus_client``'s own Histogram takes a lock and walks its
buckets in Python on every observation: ~4 µs each, five per request, measurable at thousands of requests/s.)
Rare events (drops, pre-routing errors, the snapshot version) use ``prometheus_client`` directly; they may come
from any thread. Names follow Prometheus conventions: ``mlpilot_`` prefix, base units, ``_total`` counters.
"""

from __future__ import annotations

import contextlib
import gc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("decode", "route", "predict", "encode", "total")
STATUSES = ("ok", "client_error", "server_error")


class Count:
    """A counter or gauge for one thread (the event loop)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class Histo:
    """A histogram for one thread (the event loop): per-bucket counts (the last is ``+Inf``) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # le=b holds amount <= b
        self.sum += amount

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class _Off:
    """Stands in for a series when per-request metrics are off: every update is a no-op."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_OFF = _Off()


class VariantMetrics:
    """The per-request series of one (deployment, variant)."""

    __slots__ = ("batch", "requests", "stages")

    def __init__(self, per_request: bool = True) -> None:
        if not per_request:
            self.requests: dict[str, Any] = dict.fromkeys(STATUSES, _OFF)
            self.stages: dict[str, Any] = dict.fromkeys(STAGES, _OFF)
            self.batch: Any = _OFF
            return
        self.requests = {s: Count() for s in STATUSES}
        self.stages = {s: Histo(LATENCY_BUCKETS) for s in STAGES}
        self.batch = Histo(BATCH_BUCKETS)


GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses:
    """How long Python's cyclic garbage collector stops the process, by generation (a ``gc.callbacks`` entry): a
    full collection over a large heap stops the event loop for as long as it runs. Collections never overlap (they
    run with the GIL held), so one start time suffices."""

    def __init__(self) -> None:
        self.histos = {g: Histo(GC_BUCKETS) for g in range(3)}
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.histos[min(info["generation"], 2)].observe(time.perf_counter() - self._t0)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


class _PerRequestCollector:
    """Renders the per-request series at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # families are built at collect time; nothing to check against at registration

    def collect(self) -> Iterator[Metric]:
        m = self.m
        variants = list(m.variants.items())  # a copy: variants may load while a scrape runs
        requests = CounterMetricFamily(
            "mlpilot_requests", "Inference requests by outcome", labels=["deployment", "variant", "status"]
        )
        latency = HistogramMetricFamily(
            "mlpilot_request_duration_seconds", "Latency per stage", labels=["deployment", "variant", "stage"]
        )
        batch = HistogramMetricFamily("mlpilot_batch_size", "Requests per model call", labels=["deployment", "variant"])
        for (d, v), vm in variants:
            if not isinstance(vm.batch, Histo):
                continue
            for status, c in vm.requests.items():
                requests.add_metric([d, v, status], c.value)
            for stage, h in vm.stages.items():
                latency.add_metric([d, v, stage], h.cumulative(), h.sum)
            batch.add_metric([d, v], vm.batch.cumulative(), vm.batch.sum)
        yield requests
        yield latency
        yield batch
        yield GaugeMetricFamily(
            "mlpilot_inflight_requests", "Requests being served", value=getattr(m.inflight, "value", 0.0)
        )
        if m.gc_pauses is not None:
            gc_family = HistogramMetricFamily(
                "mlpilot_gc_pause_seconds", "Pauses of the cyclic garbage collector", labels=["generation"]
            )
            for generation, h in m.gc_pauses.histos.items():
                gc_family.add_metric([str(generation)], h.cumulative(), h.sum)
            yield gc_family
            yield GaugeMetricFamily(
                "mlpilot_gc_frozen_objects",
                "Objects moved out of the collector's reach once the server was ready (server.gc_freeze)",
                value=gc.get_freeze_count(),
            )


class Metrics:
    """Args:
    per_request: update the per-request series (requests, latency per stage, batch sizes, in-flight); off,
        only rare events are counted (drops, errors before routing, the snapshot version). For benchmarks.
    """

    def __init__(self, per_request: bool = True) -> None:
        self.per_request = per_request
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.variants: dict[tuple[str, str], VariantMetrics] = {}
        #: the garbage collector's pauses, measured in server processes (:meth:`watch_gc`)
        self.gc_pauses: GcPauses | None = None
        self.inflight: Any = Count() if per_request else _OFF
        r.register(_PerRequestCollector(self))
        self.queue_depth = Gauge(
            "mlpilot_queue_depth", "Requests waiting for a batch", ["deployment", "variant"], registry=r
        )
        self.errors = Counter(
            "mlpilot_request_errors", "Requests rejected before routing, by reason", ["reason"], registry=r
        )
        self.shadow_dropped = Counter(
            "mlpilot_shadow_dropped",
            "Shadow requests dropped (shadow queue full)",
            ["deployment", "variant"],
            registry=r,
        )
        self.log_dropped = Counter(
            "mlpilot_log_dropped",
            "Request-log records dropped (writer queue full, writes failing for good, refused in strict mode)",
            registry=r,
        )
        self.log_shipped = Counter(
            "mlpilot_log_segments_shipped", "Request-log segments shipped to object storage (logs.remote)", registry=r
        )
        self.log_ship_failures = Counter(
            "mlpilot_log_ship_failures",
            "Failed attempts to ship request-log segments to object storage (they stay local and are retried)",
            registry=r,
        )
        self.log_pending = Gauge(
            "mlpilot_log_segments_pending", "Sealed request-log segments waiting to be shipped", registry=r
        )
        self.llm_tokens = Counter(
            "mlpilot_llm_tokens",
            "LLM tokens by direction (input, output)",
            ["deployment", "variant", "direction"],
            registry=r,
        )
        self.llm_cost = Counter(
            "mlpilot_llm_cost", "LLM cost in price-table units", ["deployment", "variant"], registry=r
        )
        self.llm_ttft = Histogram(
            "mlpilot_llm_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["deployment", "variant"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.snapshot_version = Gauge("mlpilot_snapshot_version", "Routing snapshot being served", registry=r)
        self.refused = Counter(
            "mlpilot_requests_refused",
            "Requests refused by a limit (reason: rate_deployment, rate_caller, shed)",
            ["deployment", "reason"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "mlpilot_circuit_breaker_open",
            "1 while a variant's circuit breaker is open",
            ["deployment", "variant"],
            registry=r,
        )
        self.breaker_rerouted = Counter(
            "mlpilot_circuit_breaker_rerouted",
            "Requests sent to the fallback because the variant's circuit breaker was open",
            ["deployment", "variant"],
            registry=r,
        )
        self.quarantined = Counter(
            "mlpilot_quarantined_requests",
            "Requests an input quarantine rule rejected or routed, by feature and action (reject, route)",
            ["deployment", "feature", "action"],
            registry=r,
        )
        self.unmatched = {
            reason: self.errors.labels(reason) for reason in ("bad_request", "not_found", "too_large", "internal")
        }

    def variant(self, deployment: str, variant: str) -> VariantMetrics:
        vm = VariantMetrics(self.per_request)
        self.variants[(deployment, variant)] = vm
        return vm

    def watch_gc(self) -> GcPauses:
        """Measure this process's garbage-collector pauses (``mlpilot_gc_pause_seconds``) until :meth:`unwatch_gc`."""
        if self.gc_pauses is None:
            self.gc_pauses = GcPauses()
        self.gc_pauses.install()
        return self.gc_pauses

    def unwatch_gc(self) -> None:
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()

    def watch_queue(self, deployment: str, variant: str, depth: Callable[[], float]) -> None:
        self.queue_depth.labels(deployment, variant).set_function(depth)

    def forget(self, deployment: str, variant: str) -> None:
        """Drop the series of an unloaded variant (keeps /metrics from growing forever)."""
        self.variants.pop((deployment, variant), None)
        for metric in (self.queue_depth, self.shadow_dropped, self.breaker_open, self.breaker_rerouted):
            with contextlib.suppress(KeyError):
                metric.remove(deployment, variant)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
