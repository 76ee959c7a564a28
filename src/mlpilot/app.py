"""The composition root: the one place that chooses adapters from settings and wires them together.

Nothing else constructs stores, blob stores or services; everything receives what it needs through its
constructor. Importing this module has no side effects.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlpilot.blobs import BlobStore, open_blob_store
from mlpilot.clock import Clock, SystemClock
from mlpilot.deployments import Deployments
from mlpilot.incidents.service import IncidentService
from mlpilot.monitors import AlertService, DriftMonitor, FeedbackService, MonitorService, WebhookNotifier
from mlpilot.registry import Registry
from mlpilot.rollouts.service import RolloutService
from mlpilot.settings import Settings
from mlpilot.store import Store
from mlpilot.telemetry.segments import SegmentStore

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mlpilot.executors import Executor


log = logging.getLogger("mlpilot.app")


@dataclass
class Platform:
    """The wired control plane of one mlpilot home."""

    settings: Settings
    clock: Clock
    store: Store
    blobs: BlobStore
    registry: Registry
    deployments: Deployments
    feedback: FeedbackService
    drift: DriftMonitor
    monitors: MonitorService
    alerts: AlertService
    notifier: WebhookNotifier
    rollouts: RolloutService
    incidents: IncidentService
    #: the request log's segments (local, and shipped to ``logs.remote``): what every reader of the log takes
    logs: SegmentStore

    @property
    def default_actor(self) -> str:
        return self.settings.actor or _os_user()

    def close(self) -> None:
        self.notifier.close()
        self.store.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers): still record something
        return "unknown"


def build_platform(settings: Settings, clock: Clock | None = None, migrate: bool = True) -> Platform:
    """Wire a platform from settings (creating the home directory and migrating the store by default)."""
    clock = clock or SystemClock()
    settings.home.mkdir(parents=True, exist_ok=True)
    store = Store.from_url(settings.store_url(), clock, settings.store.busy_timeout_s)
    if migrate:
        store.migrate()
    arts = settings.artifacts
    blobs = open_blob_store(
        settings.artifact_root(),
        settings.artifact_cache_dir(),
        arts.storage_options,
        max_bytes=arts.max_upload_bytes,
        cache_max_bytes=arts.cache_max_bytes,
    )
    registry = Registry(store, blobs, tmp_dir=settings.home / "tmp", artifacts=settings.artifacts)
    logs = settings.log_segments()
    feedback = FeedbackService(store, logs)
    drift = DriftMonitor(store, registry, logs)

    def notify_failed(url: str, payload: Mapping[str, Any], error: str) -> None:
        store.append_event(
            "mlpilot",
            "alert.notify_failed",
            f"deployment:{payload.get('deployment')}",
            None,
            {"url": url, "type": payload.get("type"), "error": error[:500]},
        )

    ms = settings.monitors
    notifier = WebhookNotifier(timeout_s=ms.webhook_timeout_s, on_failure=notify_failed)
    alerts = AlertService(store, feedback, logs, clock, notifier, ms.webhooks)
    incidents = IncidentService(store, clock, notifier=notifier, webhooks=ms.webhooks)

    def evaluate_slos(now: datetime) -> list[Any]:
        """The SLOs' alert changes, each fired or escalated alert placed into an incident."""
        changes = alerts.evaluate_all(now)
        try:
            incidents.on_alerts(changes)
            incidents.tick(now)
        except Exception:  # the alerts stand (stored and notified); a broken incident store must not stop them
            log.exception("placing alerts into incidents")
        return changes

    monitors = MonitorService(
        store, registry, feedback, logs, clock, evaluate_slos=evaluate_slos, max_rows=settings.monitors.max_rows
    )

    def defaults(deployment: str, actor: str) -> None:
        if ms.defaults_on_deploy:
            monitors.ensure_defaults(deployment)
            alerts.ensure_defaults(deployment)

    deployments = Deployments(store, on_created=defaults)
    rollouts = RolloutService(store, deployments, logs, clock)
    if settings.incidents.rca:
        from mlpilot.incidents.actuator import PlatformActuator
        from mlpilot.incidents.healer import Healer
        from mlpilot.incidents.healing import HealingPolicy

        inc = settings.incidents
        incidents.healer = Healer(
            store,
            feedback,
            PlatformActuator(store, deployments, rollouts, registry, clock),
            clock,
            defaults=HealingPolicy(
                mode=inc.healing_mode,
                min_confidence=inc.min_confidence,
                cooldown=timedelta(seconds=inc.cooldown_s),
                verify_after=timedelta(seconds=inc.verify_after_s),
            ),
            move=incidents.move,
            notify=incidents.notify,
        )
        incidents.rediagnose_after = timedelta(seconds=inc.rediagnose_s)
    return Platform(
        settings,
        clock,
        store,
        blobs,
        registry,
        deployments,
        feedback,
        drift,
        monitors,
        alerts,
        notifier,
        rollouts,
        incidents,
        logs,
    )


def build_executor(settings: Settings) -> Executor:
    """The executor the data plane runs variants on (``executor.kind``); Ray is imported only when chosen."""
    from mlpilot.executors import InProcessExecutor

    e = settings.executor
    if e.kind != "ray":
        return InProcessExecutor()
    from mlpilot.executors.ray import RayExecutor, RayOptions  # MissingExtra without mlpilot[ray]

    return RayExecutor(
        RayOptions(
            address=e.ray_address,
            namespace=e.namespace,
            num_cpus=e.num_cpus,
            replica_cpus=e.replica_cpus,
            max_ongoing_requests=e.max_ongoing_requests,
            health_check_period_s=e.health_check_period_s,
            load_timeout_s=e.load_timeout_s,
        )
    )


def build_api(platform: Platform) -> FastAPI:
    """The control-plane REST API for ``platform``."""
    from mlpilot.api import create_api

    return create_api(platform)
