"""Serving processes: what every server process shares (:class:`ServingServer`), and the data-plane-only process
that follows a remote control plane over its API (:class:`DataServer`, ``mlpilot serve --control-url URL``).

A :class:`ServingServer` is one ASGI app: the data plane with its request log, the OIP v2 REST edge (the OpenAI API,
``/metrics``) and gRPC on the same event loop; a subclass owns the feed that gives it routing snapshots.
``PlatformServer`` (``server.py``, ``mlpilot up``) adds the control API, the store feed and the scheduler.

A :class:`DataServer` has no store: it long-polls the control plane's ``GET /api/v1/snapshot`` (``RemoteFeed``), loads
model bytes from ``GET /api/v1/blobs/{digest}`` into a local cache (``HttpBlobSource``), writes its request log
under its own home, keeps its last snapshot in ``<home>/snapshot.json`` and serves it while the control plane is away
(also after a restart). ``/v2/health/ready`` is true once a snapshot is loaded; control-API paths answer 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mlpilot import __version__
from mlpilot.blobs import BlobStore, HttpBlobSource
from mlpilot.errors import MissingExtra
from mlpilot.executors import Executor
from mlpilot.serving.dataplane import DataPlane
from mlpilot.serving.http import InferenceApp, Receive, Scope, Send
from mlpilot.serving.limits import Rate
from mlpilot.serving.metrics import Metrics
from mlpilot.serving.remote_feed import RemoteFeed
from mlpilot.serving.snapshot import RoutingSnapshot
from mlpilot.serving.tracing import RequestTracer
from mlpilot.settings import Settings
from mlpilot.telemetry.compaction import SegmentCatalog
from mlpilot.telemetry.redact import Redactor, install_log_redaction
from mlpilot.telemetry.reqlog import RequestLog, Segment
from mlpilot.telemetry.segments import SegmentStore
from mlpilot.telemetry.shipping import SegmentShipper, ShipReport

if TYPE_CHECKING:
    from mlpilot.auth.authorizer import Authorizer

log = logging.getLogger("mlpilot.server")

ASGIApp = Callable[[Scope, Receive, Send], Any]


class ServingServer:
    """ASGI app of a serving process; subclasses start their snapshot feeds in :meth:`_start_feeds`.

    Invariants: started at most once (lifespan startup, or lazily on the first ``/v2``, ``/v1`` or ``/metrics``
    request when no lifespan runs); the feed is the only writer of the data plane's snapshot.

    Args:
        fallback: the ASGI app for every path the data plane does not own.
        on_segment: told of every request-log segment written (the store's catalog).
        on_drop: told how many request-log records were dropped (besides the metric).
        catalog: kept in step when segments are shipped to ``logs.remote`` (the store); None: not catalogued.
        segments: the log's segments (default ``settings.log_segments()``); with a remote, sealed segments are
            shipped to it by a :class:`~mlpilot.telemetry.shipping.SegmentShipper` this server owns.
    """

    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        *,
        fallback: ASGIApp,
        grpc_port: int | None = None,
        executor: Executor | None = None,
        on_segment: Callable[[Segment], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
        dataplane: type[DataPlane] = DataPlane,
        catalog: SegmentCatalog | None = None,
        segments: SegmentStore | None = None,
    ) -> None:
        s = settings
        self.settings = settings
        self.reqlog = self._request_log(on_segment, on_drop) if s.logs.enabled else None
        self.shipper: SegmentShipper | None = None
        strict = self.reqlog is not None and s.logs.durability == "strict"
        self.dataplane = dataplane(
            blobs,
            unload_grace_s=s.server.unload_grace_s,
            load_retry_s=s.server.load_retry_s,
            sink=self.reqlog,
            durable=self._durable if strict else None,
            metrics=Metrics(per_request=s.server.metrics),
            llm_prices={name: price.model_dump() for name, price in s.llm.prices.items()},
            executor=executor,
            caller_rate=Rate.of(s.limits.key_rate_per_s, s.limits.key_burst),
            max_callers=s.limits.max_callers,
            max_in_flight=s.limits.max_in_flight,
        )
        self.tracer_provider = _tracer_provider(s) if s.tracing.enabled else None
        self.http = InferenceApp(
            self.dataplane,
            fallback=fallback,
            max_body_bytes=s.server.max_body_bytes,
            server_version=__version__,
            tracer=RequestTracer(self.tracer_provider, s.tracing.sample_ratio)
            if self.tracer_provider is not None
            else None,
        )
        if self.reqlog is not None and s.logs.remote:
            self.shipper = self._shipper(segments or s.log_segments(), catalog)
        #: what requests go through: the inference edge, or a gate in front of it (``mlpilot.auth.gate``)
        self.edge: ASGIApp = self.http
        #: the gRPC check of a gate (``None``: gRPC checks nothing)
        self.grpc_authorize: Any = None
        self.grpc_port = grpc_port
        #: True once the process is stopping (set by :func:`run_uvicorn`): long-polls answer at once.
        self.exiting: Callable[[], bool] = lambda: False
        #: the one app of a dedicated server process (:func:`dedicate`): tunes the process's garbage collector
        self.dedicated = False
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._grpc: Any = None

    def _request_log(
        self, on_segment: Callable[[Segment], None] | None, on_drop: Callable[[int], None] | None
    ) -> RequestLog:
        s = self.settings.logs

        def dropped(n: int) -> None:
            self.dataplane.metrics.log_dropped.inc(n)
            if on_drop is not None:
                on_drop(n)

        return RequestLog(
            self.settings.log_root(),
            capacity=s.capacity,
            flush_interval_s=s.flush_interval_s,
            durability=s.durability,
            on_segment=on_segment,
            on_drop=dropped,
            redactor=redactor(self.settings),
        )

    def _shipper(self, segments: SegmentStore, catalog: SegmentCatalog | None) -> SegmentShipper:
        metrics = self.dataplane.metrics

        def report(r: ShipReport) -> None:
            metrics.log_shipped.inc(r.shipped)
            metrics.log_ship_failures.inc(r.failures)

        shipper = SegmentShipper(segments, every_s=self.settings.logs.ship_every_s, catalog=catalog, on_report=report)
        metrics.log_pending.set_function(lambda: shipper.pending)
        return shipper

    async def _durable(self, record: Any) -> None:
        assert self.reqlog is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(error: BaseException | None = None) -> None:  # error: the record cannot be made durable (503)
            if error is None:
                loop.call_soon_threadsafe(fut.set_result, None)
            else:
                loop.call_soon_threadsafe(fut.set_exception, error)

        self.reqlog.append_durable(record, done)
        await fut

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def _start_feeds(self) -> None:
        """Load the first snapshot (``/v2/health/ready`` waits for it) and start the tasks that follow it."""
        raise NotImplementedError

    async def start(self) -> None:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self.reqlog is not None:
                self.reqlog.start()
            if self.shipper is not None:
                self.shipper.start()
            await self._start_feeds()
            if self.grpc_port is not None:
                from mlpilot.serving.grpc import start_grpc_server

                self._grpc = await start_grpc_server(
                    self.dataplane, self.settings.server.host, self.grpc_port, __version__, self.grpc_authorize
                )
            self._started = True
            if self.dedicated and self.settings.server.gc_freeze and not gc.get_freeze_count():
                gc.collect()
                gc.freeze()  # code, models and the snapshot live as long as the process: out of every collection

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def stop(self) -> None:
        await self._cancel_tasks()
        if self._grpc is not None:
            await self._grpc.stop(grace=2)
            self._grpc = None
        await self.dataplane.close()
        if self.reqlog is not None:
            await asyncio.to_thread(self.reqlog.stop)  # graceful: everything queued reaches a segment
        if self.shipper is not None:
            await asyncio.to_thread(self.shipper.stop)  # a last round; what is left ships at the next start
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.force_flush)
        self._started = False

    def close(self) -> None:
        """Release what the process holds beyond serving (after :meth:`stop`, at lifespan shutdown)."""

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
        await self.edge(scope, receive, send)

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
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class FedDataPlane(DataPlane):
    """A data plane that is ready only once its feed has loaded a snapshot (a remote data plane starts empty)."""

    feed_loaded: Callable[[], bool] | None = None

    def ready(self) -> bool:
        return self.feed_loaded is not None and self.feed_loaded() and super().ready()


class DataServer(ServingServer):
    """A data-plane-only process following the control plane at ``control_url`` (see the module docstring).

    Args:
        headers: sent with every request to the control plane (credentials, once the API checks them).
        wait_s: how long one long-poll may be held by the control plane.
        authorizer: checks credentials on inference (``mlpilot.auth.remote``); ``None``: nothing is checked.
    """

    def __init__(
        self,
        settings: Settings,
        control_url: str,
        *,
        grpc_port: int | None = None,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 30.0,
        authorizer: Authorizer | None = None,
    ) -> None:
        home = settings.home
        self.control_url = control_url.rstrip("/")
        self.blobs = HttpBlobSource(self.control_url, home / "cache" / "blobs", headers)
        super().__init__(
            settings, self.blobs, fallback=_not_here(self.control_url), grpc_port=grpc_port, dataplane=FedDataPlane
        )
        self.feed = RemoteFeed(
            self.control_url,
            self.dataplane.apply,
            lambda: self.dataplane.snapshot_version,
            state_file=home / "snapshot.json",
            headers=headers,
            wait_s=wait_s,
        )
        assert isinstance(self.dataplane, FedDataPlane)
        self.dataplane.feed_loaded = lambda: self.feed.loaded
        self.authorizer = authorizer  # keys asked of the control plane, tokens checked here (mlpilot.auth.remote)
        if authorizer is not None:
            from mlpilot.auth.gate import InferenceGate

            s = settings
            gate = InferenceGate(self.http, authorizer, s.auth.open_deployments, s.server.max_body_bytes)
            self.edge, self.grpc_authorize = gate, gate.authorize_grpc

    async def _start_feeds(self) -> None:
        await self.feed.restore()
        try:
            await self.feed.sync_once()
        except Exception as exc:  # the control plane away at boot: serve the kept snapshot; the feed retries
            log.error(
                "control plane %s unreachable at start (%s); serving the kept snapshot (version %d)",
                self.control_url,
                exc,
                self.dataplane.snapshot_version,
            )
            self.feed.failing = True
        self._spawn(self.feed.run(), "mlpilot-remote-feed")

    async def stop(self) -> None:
        await super().stop()
        await self.feed.aclose()

    def close(self) -> None:
        self.blobs.close()
        if self.authorizer is not None:
            self.authorizer.close()

    async def apply(self, snapshot: RoutingSnapshot) -> bool:
        """Apply ``snapshot`` as if the control plane had sent it (tests, tools)."""
        return await self.dataplane.apply(snapshot)


def _not_here(control_url: str) -> ASGIApp:
    """Every path outside the data plane: 404 naming the control plane (this process serves no control API)."""
    body = orjson.dumps(
        {
            "error": f"this is a data-plane process (mlpilot serve): the control API and the dashboard are at "
            f"{control_url}",
            "kind": "not_found",
        }
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


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


def tune_server_process(settings: Settings) -> None:
    """Process-wide settings for a dedicated server process (never applied to an SDK user's process).

    Background threads (the request-log writer, shadow runs) hold the GIL for up to the switch interval each time
    the event loop wants it; 5 ms by default shows up directly in the tail latency. Queued log records are many
    small objects: full (gen-2) collections over them pause the event loop for tens of ms, so the old
    generation is collected 10x less often; young collections are unchanged. Every log record is scrubbed of
    secrets and redacted fields (:func:`mlpilot.telemetry.redact.install_log_redaction`).
    """
    sys.setswitchinterval(settings.server.gil_switch_interval_s)
    install_log_redaction(redactor(settings))  # secrets never reach this process's log output
    g0, g1, _ = gc.get_threshold()
    gc.set_threshold(g0, g1, 100)


def redactor(settings: Settings) -> Redactor:
    """The redaction of the request log and the log output (``logs.redact_*``; docs/security.md "Redaction")."""
    s = settings.logs
    return Redactor(s.redact_fields, s.redact_mode, s.redact_salt.get_secret_value())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    s = settings.server
    return {
        "host": s.host,
        "port": s.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }


def dedicate(app: ServingServer) -> ServingServer:
    """Mark ``app`` as the one app of this server process: the garbage collector's pauses are measured
    (``mlpilot_gc_pause_seconds``) and, once it is ready, what is alive is frozen (``server.gc_freeze``)."""
    app.dedicated = True
    app.dataplane.metrics.watch_gc()
    return app


def run_uvicorn(app: ServingServer, settings: Settings) -> None:
    """Serve ``app`` in this process until interrupted (one process; ``app.exiting()`` turns true on the signal)."""
    import uvicorn

    tune_server_process(settings)
    dedicate(app)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    app.exiting = lambda: server.should_exit
    server.run()
    if not server.started:
        sys.exit(3)  # what uvicorn.run does when the server could not start (the port is taken …)


def serve_data(settings: Settings, control_url: str, api_key_env: str = "MLPILOT_API_KEY") -> None:
    """Run a data-plane-only process in the foreground until interrupted (``mlpilot serve --control-url``); it sends
    the key in ``$api_key_env`` to the control plane, and checks credentials when ``auth_decision`` says so."""
    from mlpilot.auth.remote import remote_authorizer
    from mlpilot.settings import auth_decision

    s = settings.server
    host, port = s.host, s.port
    home = Path(settings.home).resolve()
    print(f"mlpilot {__version__} data plane serving on http://{host}:{port}  (home {home})")
    print(
        f"  inference  http://{host}:{port}/v2   gRPC {host}:{s.grpc_port if s.grpc else '-'}   "
        f"metrics http://{host}:{port}/metrics"
    )
    print(f"  follows    {control_url}   (snapshot kept in {home / 'snapshot.json'})")
    on, auth_line = auth_decision(settings)
    print(f"  {auth_line}" + ("; keys verified by the control plane" if on else ""), flush=True)
    settings.home.mkdir(parents=True, exist_ok=True)
    key = os.environ.get(api_key_env)  # the control plane's routes need a read key when its auth is on
    headers = {"authorization": f"Bearer {key}"} if key else None
    authorizer = remote_authorizer(settings, control_url) if on else None
    grpc_port = s.grpc_port if s.grpc else None
    server = DataServer(settings, control_url, grpc_port=grpc_port, headers=headers, authorizer=authorizer)
    run_uvicorn(server, settings)
