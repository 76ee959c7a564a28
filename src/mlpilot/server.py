"""The server process: one ASGI app serving the data plane (OIP v2 REST, ``/metrics``), the control API, and a
gRPC server on the same event loop; ``serve`` runs it under uvicorn (``mlpilot up``).

Startup order: load the current snapshot (so ``/v2/health/ready`` is true only once models are loaded), start
the snapshot feed, start gRPC. Shutdown reverses it. In embedded mode (the SDK without a server) the data plane
starts lazily on the first inference request instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlpilot import __version__
from mlpilot.app import Platform, build_api, build_executor, build_platform
from mlpilot.auth.authorizer import Authorizer, store_authorizer
from mlpilot.auth.gate import InferenceGate
from mlpilot.dataserver import ServingServer, dedicate, run_uvicorn, tune_server_process, uvicorn_options
from mlpilot.deployments.feed import SnapshotFeed
from mlpilot.errors import FailedPrecondition
from mlpilot.settings import Settings, auth_decision
from mlpilot.store.leader import Leadership

log = logging.getLogger("mlpilot.server")


class PlatformServer(ServingServer):
    """ASGI app of a whole mlpilot server process: the serving process (``dataserver.ServingServer``: data plane,
    request log, OIP v2 REST/gRPC, lifespan) plus the control API, the store's snapshot feed and the scheduler.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        grpc_port: int | None = None,
        scheduler: bool = False,
        authorizer: Authorizer | None = None,
    ) -> None:
        """Args:
        authorizer: check API keys on every route (``auth_decision``; docs/security.md); ``None``: nothing is
            checked (loopback, and the SDK's embedded mode).
        scheduler: run due monitors and evaluate SLOs every ``monitors.tick_s``, and request-log retention and
            compaction every ``logs.maintain_every_s`` (server processes only, never in an SDK user's process).
            With ``server.leader_election`` only the process holding the ``scheduler`` lease runs them
            (``mlpilot.store.leader``); without it several processes may all run them: each monitor run and
            transition is claimed once, compaction takes a lock.
        """
        s = platform.settings
        self.scheduler = scheduler
        self.platform = platform
        self.control = build_api(platform)

        def dropped(n: int) -> None:
            platform.store.append_event("data-plane", "reqlog.dropped", "reqlog", None, {"records": n})

        super().__init__(
            s,
            platform.blobs,
            fallback=self.control,
            grpc_port=grpc_port,
            executor=build_executor(s),
            on_segment=platform.store.catalog,
            on_drop=dropped,
            catalog=platform.store,
            segments=platform.logs,
        )
        self.authorizer = authorizer
        if authorizer is not None:
            self.control.state.authorizer = authorizer
            gate = InferenceGate(self.http, authorizer, s.auth.open_deployments, s.server.max_body_bytes)
            self.edge = gate
            self.grpc_authorize = gate.authorize_grpc
        self.control.state.exiting = lambda: self.exiting()  # long-polls (api/snapshot.py) end when stopping
        self._load_errors: dict[str, str] = {}  # deployments whose last load failed, as reported
        self.feed = SnapshotFeed(
            platform.deployments,
            self._apply,
            lambda: self.dataplane.snapshot_version,
            interval_s=s.server.snapshot_poll_s,
        )
        self.control.state.feed = self.feed
        self.leadership = (
            Leadership(platform.store, ttl_s=s.server.leader_lease_s)
            if scheduler and s.server.leader_election
            else None
        )
        self.control.state.leadership = self.leadership
        self._jobs = ThreadPoolExecutor(1, "mlpilot-jobs", initializer=_lower_priority, initargs=(s.server.jobs_nice,))
        self._job_lock = threading.Lock()  # held by the scheduler's job in flight; released before the lease
        self.job_runs: dict[str, int] = {}  # scheduler jobs this process ran, by name

    async def _apply(self, snapshot: Any) -> bool:
        """Apply a snapshot; a deployment that fails to load (a corrupt blob, an untrusted pickle, a broken file)
        keeps its previous routing, and each new failure is a ``deployment.load_failed`` event naming why."""
        applied = await self.dataplane.apply(snapshot)
        if applied:
            errors = dict(self.dataplane.status()["errors"])
            new = {name: msg for name, msg in errors.items() if self._load_errors.get(name) != msg}
            self._load_errors = errors
            for name, msg in new.items():
                after = {"error": msg, "snapshot_version": snapshot.version, "pid": os.getpid()}
                try:
                    await asyncio.to_thread(
                        self.platform.store.append_event,
                        "data-plane",
                        "deployment.load_failed",
                        f"deployment:{name}",
                        None,
                        after,
                    )
                except Exception as exc:  # the store is down: the data plane's log line still says it
                    log.warning("could not record the load failure of %s: %s", name, exc)
        return applied

    async def _start_feeds(self) -> None:
        try:
            await self.feed.sync_once()
        except Exception as exc:  # a store outage at boot must not stop the process; the feed retries
            log.error("initial snapshot failed: %s", exc)
        self._spawn(self.feed.run(), "mlpilot-feed")
        if self.scheduler:
            if self.leadership is not None:
                self.leadership.open()
                self._spawn(self._lead(), "mlpilot-leader")
            self._spawn(self._schedule(), "mlpilot-scheduler")

    async def _schedule(self) -> None:
        """Periodic work on a worker thread (never blocking serving): a rollout tick every ``rollouts.tick_s``, a
        monitor tick every ``monitors.tick_s``, request-log retention and compaction every
        ``logs.maintain_every_s`` — each only while this process leads (checked before each job; a job started just
        before the lease is lost may finish, the store's compare-and-set claims keep it from repeating an action)."""
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
                if self.leadership is not None and not self.leadership.leading():
                    continue  # a follower: due as soon as it leads
                last[name] = time.monotonic()
                self.job_runs[name] = self.job_runs.get(name, 0) + 1
                try:
                    await asyncio.get_running_loop().run_in_executor(self._jobs, self._run_job, job)
                except Exception:  # a failing job (store outage …) is logged; the next round retries
                    log.exception("%s failed", name)

    def _run_job(self, job: Any) -> None:
        with self._job_lock:
            job()

    async def _lead(self) -> None:
        """Take or renew the scheduler lease every third of its time to live (from the first moment)."""
        assert self.leadership is not None
        while True:
            try:
                await asyncio.to_thread(self.leadership.step)
            except Exception:  # step logs store errors itself; anything else is a bug, logged, and the loop goes on
                log.exception("leader election failed")
            await asyncio.sleep(self.leadership.interval_s)

    def _release_leadership(self) -> None:
        """Give the lease up once the job in flight (if any) finished, so the next leader starts at once."""
        assert self.leadership is not None
        # beyond the time to live the lease expires anyway (nobody renews it once the election loop stopped)
        if not self._job_lock.acquire(timeout=self.leadership.ttl_s):
            log.warning("a scheduler job still runs; releasing the lease anyway")
        else:
            self._job_lock.release()
        self.leadership.release()

    def _monitor_tick(self) -> None:
        report = self.platform.monitors.tick()
        for change in report.alerts:
            log.warning("alert %s: %s", change.action, change.alert.summary)

    def maintain_logs(self) -> None:
        """Retention and compaction of every deployment's request log, on object storage too with ``logs.remote``
        (one deployment failing does not stop it)."""
        from mlpilot.telemetry.compaction import maintain

        s = self.platform.settings
        for dep in self.platform.store.list_deployments():
            try:
                maintain(
                    self.platform.logs,
                    dep.name,
                    catalog=self.platform.store,
                    retention_days=s.logs.retention_days,
                    compact_below_rows=s.logs.compact_below_rows,
                )
            except Exception:
                log.exception("request-log maintenance of %s failed", dep.name)

    async def stop(self) -> None:
        await self._cancel_tasks()
        if self.leadership is not None:
            await asyncio.to_thread(self._release_leadership)
        await super().stop()

    def close(self) -> None:
        self._jobs.shutdown(wait=False)
        self.platform.close()


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` (Linux: ``nice`` is per thread, and threads it starts
    inherit it); elsewhere, or without permission, nothing changes."""
    if nice <= 0 or sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as exc:  # pragma: no cover - raising one's own nice value is always allowed on Linux
        log.warning("could not lower the scheduler jobs' priority: %s", exc)


def build_server(settings: Settings) -> PlatformServer:
    """The server app for ``settings`` (what uvicorn runs); checks API keys when ``auth_decision`` says so."""
    s = settings.server
    platform = build_platform(settings)
    on, _ = auth_decision(settings)
    authorizer = store_authorizer(settings, platform.store) if on else None
    return PlatformServer(platform, grpc_port=s.grpc_port if s.grpc else None, scheduler=True, authorizer=authorizer)


def check_auth(settings: Settings) -> str:
    """The line ``mlpilot up`` prints about authentication; with auth on, refuses to start without an active key.

    Raises:
        FailedPrecondition: auth is on and the store holds no active API key (nobody could use the server).
    """
    on, reason = auth_decision(settings)
    if on:
        platform = build_platform(settings)
        try:
            keys = platform.store.count_api_keys()
        finally:
            platform.close()
        if keys == 0 and not settings.auth.oidc.enabled:  # with OIDC, the provider's tokens get in
            raise FailedPrecondition(
                f"{reason}, but no API key exists, so nobody could use this server: create one first with "
                "`mlpilot auth create-key admin --scopes admin` (same --home/store), or listen on 127.0.0.1 only"
            )
        if settings.auth.oidc.enabled:
            reason += f"; OIDC bearer tokens from {settings.auth.oidc.issuer}"
    return reason


def worker_app() -> PlatformServer:
    """Factory for multi-worker mode: each worker process wires itself from the environment."""
    settings = Settings()
    tune_server_process(settings)
    app = build_server(settings)
    dedicate(app)
    return app


def serve(settings: Settings) -> None:
    """Run the server in the foreground until interrupted (``mlpilot up``)."""
    import uvicorn

    s = settings.server
    host, port = s.host, s.port
    auth_line = check_auth(settings)  # refuses before anything binds
    print(f"mlpilot {__version__} serving on http://{host}:{port}  (home {settings.home.resolve()})")
    print(
        f"  inference  http://{host}:{port}/v2   gRPC {host}:{s.grpc_port if s.grpc else '-'}   "
        f"metrics http://{host}:{port}/metrics"
    )
    print(f"  control    http://{host}:{port}/api/v1   OpenAPI http://{host}:{port}/docs")
    print(f"  dashboard  http://{host}:{port}/ui/")
    print(f"  {auth_line}", flush=True)
    log.info("%s", auth_line)
    common = uvicorn_options(settings)
    if s.workers > 1 and settings.executor.kind == "ray":
        from mlpilot.errors import InvalidArgument

        raise InvalidArgument(
            "the Ray executor runs with one server process (--workers 1): its variants scale as Ray replicas"
        )
    if s.workers > 1:
        # Workers rebuild their settings from the environment: export the ones given on the command line.
        os.environ["MLPILOT_HOME"] = str(settings.home.resolve())
        if settings.store.url:
            os.environ["MLPILOT_STORE__URL"] = settings.store.url
        if settings.artifacts.root:
            os.environ["MLPILOT_ARTIFACTS__ROOT"] = settings.artifacts.root
        if settings.artifacts.storage_options:
            os.environ["MLPILOT_ARTIFACTS__STORAGE_OPTIONS"] = json.dumps(settings.artifacts.storage_options)
        os.environ["MLPILOT_SERVER__GRPC_PORT"] = str(s.grpc_port)
        os.environ["MLPILOT_SERVER__GRPC"] = "1" if s.grpc else "0"
        os.environ["MLPILOT_SERVER__HOST"] = s.host  # auth.mode auto decides on the address
        os.environ["MLPILOT_AUTH__MODE"] = settings.auth.mode
        build_platform(settings).close()  # migrate once before the workers race to do it
        uvicorn.run("mlpilot.server:worker_app", factory=True, workers=s.workers, **common)
    else:
        run_uvicorn(build_server(settings), settings)
