"""The server process: one ASGI app serving the data plane (OIP v2 REST, ``/metrics``), the control API, and a
gRPC server on the same event loop; ``serve`` runs it under uvicorn (``mlpilot up``).

Startup order: load the current snapshot (so ``/v2/health/ready`` is true only once models are loaded), start
the snapshot feed, start gRPC. Shutdown reverses it. In embedded mode (the SDK without a server) the data plane
starts lazily on the first inference request instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from typing import Any

from mlpilot import __version__
from mlpilot.app import Platform, build_api, build_platform
from mlpilot.deployments.feed import SnapshotFeed
from mlpilot.errors import MissingExtra
from mlpilot.serving.dataplane import DataPlane
from mlpilot.serving.http import InferenceApp, Receive, Scope, Send
from mlpilot.serving.metrics import Metrics
from mlpilot.serving.tracing import RequestTracer
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog

log = logging.getLogger("mlpilot.server")


class PlatformServer:
    """ASGI app of a whole mlpilot server process.

    Invariants: the data plane is started at most once (lifespan startup, or lazily on the first ``/v2`` or
    ``/metrics`` request when no lifespan runs); the feed is the only writer of the data plane's snapshot.
    """

    def __init__(self, platform: Platform, *, grpc_port: int | None = None, scheduler: bool = False) -> None:
        """Args:
        scheduler: run due monitors and evaluate SLOs every ``monitors.tick_s``, and request-log retention and
            compaction every ``logs.maintain_every_s`` (server processes only, never in an SDK user's process;
            several processes may all run it: each monitor run is claimed once, compaction takes a lock).
        """
        s = platform.settings
        self.scheduler = scheduler
        self.platform = platform
        self.reqlog = self._request_log(platform) if s.logs.enabled else None
        strict = self.reqlog is not None and s.logs.durability == "strict"
        self.dataplane = DataPlane(
            platform.blobs,
            unload_grace_s=s.server.unload_grace_s,
            sink=self.reqlog,
            durable=self._durable if strict else None,
            metrics=Metrics(per_request=s.server.metrics),
            llm_prices={name: price.model_dump() for name, price in s.llm.prices.items()},
        )
        self.control = build_api(platform)
        self.tracer_provider = _tracer_provider(s) if s.tracing.enabled else None
        self.http = InferenceApp(
            self.dataplane,
            fallback=self.control,
            max_body_bytes=s.server.max_body_bytes,
            server_version=__version__,
            tracer=RequestTracer(self.tracer_provider, s.tracing.sample_ratio)
            if self.tracer_provider is not None
            else None,
        )
        self.feed = SnapshotFeed(
            platform.deployments,
            self.dataplane.apply,
            lambda: self.dataplane.snapshot_version,
            interval_s=s.server.snapshot_poll_s,
        )
        self.control.state.feed = self.feed
        self.grpc_port = grpc_port
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._grpc: Any = None

    def _request_log(self, platform: Platform) -> RequestLog:
        s = platform.settings.logs

        catalog = platform.store.catalog

        def dropped(n: int) -> None:
            self.dataplane.metrics.log_dropped.inc(n)
            platform.store.append_event("data-plane", "reqlog.dropped", "reqlog", None, {"records": n})

        return RequestLog(
            platform.settings.log_root(),
            capacity=s.capacity,
            flush_interval_s=s.flush_interval_s,
            durability=s.durability,
            on_segment=catalog,
            on_drop=dropped,
        )

    async def _durable(self, record: Any) -> None:
        assert self.reqlog is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            loop.call_soon_threadsafe(fut.set_result, None)

        self.reqlog.append_durable(record, done)
        await fut

    async def start(self) -> None:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self.reqlog is not None:
                self.reqlog.start()
            try:
                await self.feed.sync_once()
            except Exception as exc:  # a store outage at boot must not stop the process; the feed retries
                log.error("initial snapshot failed: %s", exc)
            self._tasks.append(asyncio.get_running_loop().create_task(self.feed.run(), name="mlpilot-feed"))
            if self.scheduler:
                self._tasks.append(asyncio.get_running_loop().create_task(self._schedule(), name="mlpilot-scheduler"))
            if self.grpc_port is not None:
                from mlpilot.serving.grpc import start_grpc_server

                self._grpc = await start_grpc_server(
                    self.dataplane, self.platform.settings.server.host, self.grpc_port, __version__
                )
            self._started = True

    async def _schedule(self) -> None:
        """Periodic work on a worker thread (never blocking serving): a rollout tick every ``rollouts.tick_s``, a
        monitor tick every ``monitors.tick_s``, request-log retention and compaction every
        ``logs.maintain_every_s``."""
        s = self.platform.settings
        jobs: list[tuple[str, float, Any]] = []
        if s.rollouts.enabled:
            jobs.append(("rollout tick", s.rollouts.tick_s, self.platform.rollouts.tick))
        if s.monitors.enabled:
            jobs.append(("monitor tick", s.monitors.tick_s, self._monitor_tick))
        if s.logs.enabled and s.logs.maintain_every_s > 0:
            jobs.append(("request-log maintenance", s.logs.maintain_every_s, self.maintain_logs))
        if not jobs:
            return
        period = max(0.05, min(every for _, every, _ in jobs))
        last = {name: time.monotonic() for name, _, _ in jobs}
        while True:
            await asyncio.sleep(period)
            for name, every, job in jobs:
                if time.monotonic() - last[name] < every - 1e-3:
                    continue
                last[name] = time.monotonic()
                try:
                    await asyncio.to_thread(job)
                except Exception:  # a failing job (store outage …) is logged; the next round retries
                    log.exception("%s failed", name)

    def _monitor_tick(self) -> None:
        report = self.platform.monitors.tick()
        for change in report.alerts:
            log.warning("alert %s: %s", change.action, change.alert.summary)

    def maintain_logs(self) -> None:
        """Retention and compaction of every deployment's request log (one deployment failing does not stop it)."""
        from mlpilot.telemetry.compaction import maintain

        s = self.platform.settings
        for dep in self.platform.store.list_deployments():
            try:
                maintain(
                    s.log_root(),
                    dep.name,
                    catalog=self.platform.store,
                    retention_days=s.logs.retention_days,
                    compact_below_rows=s.logs.compact_below_rows,
                )
            except Exception:
                log.exception("request-log maintenance of %s failed", dep.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._grpc is not None:
            await self._grpc.stop(grace=2)
            self._grpc = None
        await self.dataplane.close()
        if self.reqlog is not None:
            await asyncio.to_thread(self.reqlog.stop)  # graceful: everything queued reaches a segment
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.force_flush)
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if (
            not self._started
            and scope["type"] == "http"
            and (scope["path"].startswith(("/v2", "/v1")) or scope["path"] == "/metrics")
        ):
            await self.start()
        await self.http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                self.platform.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _tracer_provider(settings: Settings) -> Any:
    """An OpenTelemetry tracer provider of our own (never the global one), exporting in batches over OTLP."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise MissingExtra("tracing", "otel") from exc
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    # sampling is decided per request by RequestTracer (before any span exists), so the provider records all
    provider = TracerProvider(
        sampler=ALWAYS_ON, resource=Resource.create({"service.name": settings.tracing.service_name})
    )
    if settings.tracing.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise MissingExtra("OTLP export", "otel") from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing.otlp_endpoint)))
    return provider


def build_server(settings: Settings) -> PlatformServer:
    """The server app for ``settings`` (what uvicorn runs)."""
    s = settings.server
    return PlatformServer(build_platform(settings), grpc_port=s.grpc_port if s.grpc else None, scheduler=True)


def tune_server_process(settings: Settings) -> None:
    """Process-wide settings for a dedicated server process (never applied to an SDK user's process).

    Background threads (the request-log writer, shadow runs) hold the GIL for up to the switch interval each time
    the event loop wants it; 5 ms by default shows up directly in the tail latency. Queued log records are many
    small objects: full (gen-2) collections over them pause the event loop for tens of ms, so the old
    generation is collected 10x less often; young collections are unchanged.
    """
    sys.setswitchinterval(settings.server.gil_switch_interval_s)
    g0, g1, _ = gc.get_threshold()
    gc.set_threshold(g0, g1, 100)


def worker_app() -> PlatformServer:
    """Factory for multi-worker mode: each worker process wires itself from the environment."""
    settings = Settings()
    tune_server_process(settings)
    return build_server(settings)


def serve(settings: Settings) -> None:
    """Run the server in the foreground until interrupted (``mlpilot up``)."""
    import uvicorn

    s = settings.server
    host, port = s.host, s.port
    print(f"mlpilot {__version__} serving on http://{host}:{port}  (home {settings.home.resolve()})")
    print(
        f"  inference  http://{host}:{port}/v2   gRPC {host}:{s.grpc_port if s.grpc else '-'}   "
        f"metrics http://{host}:{port}/metrics"
    )
    print(f"  control    http://{host}:{port}/api/v1   OpenAPI http://{host}:{port}/docs")
    print(f"  dashboard  http://{host}:{port}/ui/")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("  WARNING: no authentication yet: anyone who can reach this address can change deployments")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if s.workers > 1:
        # Workers rebuild their settings from the environment: export the ones given on the command line.
        os.environ["MLPILOT_HOME"] = str(settings.home.resolve())
        if settings.store.url:
            os.environ["MLPILOT_STORE__URL"] = settings.store.url
        os.environ["MLPILOT_SERVER__GRPC_PORT"] = str(s.grpc_port)
        os.environ["MLPILOT_SERVER__GRPC"] = "1" if s.grpc else "0"
        build_platform(settings).close()  # migrate once before the workers race to do it
        uvicorn.run("mlpilot.server:worker_app", factory=True, workers=s.workers, **common)
    else:
        tune_server_process(settings)
        uvicorn.run(build_server(settings), **common)
