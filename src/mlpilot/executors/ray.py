"""The Ray executor (``pip install "mlpilot[ray]"``): each variant is a Ray Serve application behind mlpilot's router.

What runs where:

* The server process (the data plane) keeps everything in front of the model: the OIP/OpenAI edges, routing and the
  weighted split (Ray Serve has none), shadows, quarantine, validation and the request log. It is the Ray driver.
* Each model variant is a Serve application named after the variant's identity (deployment, variant, model digest,
  flavor, batching, generation) with one deployment of :class:`~mlpilot.executors.replica.VariantReplica`:
  ``num_replicas = variant.replicas``, or an ``autoscaling_config`` from ``variant.autoscaling``. Replicas load the
  model themselves from the blob store by digest (verified) and batch with ``@serve.batch``; Serve health-checks them
  (``check_health``) and replaces replicas that die or fail it.
* LLM apps stay in the server process (their runtime streams tokens to the OpenAI edge).

A change of replicas or autoscaling keeps the application and its code version, so Serve scales the running replicas
in place; any other change (a new model, batching, a restart's generation) is a new application, started and healthy
before the router switches to it, the old one deleted after the unload grace.

``predict`` awaits the deployment handle; a replica that dies under a request (killed, its node lost) is retried on
another replica (at most ``retries`` times; predictions are pure), so killing a replica under load fails no request.
mlpilot's errors raised in a replica come back as the same classes (``error_from_dict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlpilot.blobs import BlobStore
from mlpilot.errors import (
    InferenceError,
    InvalidArgument,
    LoadError,
    MissingExtra,
    MlpilotError,
    NotFound,
    Unavailable,
    error_from_dict,
)
from mlpilot.executors.inprocess import InProcessExecutor
from mlpilot.runtimes import Runtime, RuntimeTags
from mlpilot.runtimes.app import APP_FLAVOR
from mlpilot.serving.snapshot import VariantRoute

try:
    with warnings.catch_warnings():  # Ray's own deprecation warnings at import are not ours to fix
        warnings.simplefilter("ignore")
        import ray
        import ray.exceptions
        from ray import serve
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("the Ray executor", "ray") from exc

log = logging.getLogger("mlpilot.executors.ray")

_DEPLOYMENT = "variant"  # the one deployment of each application


@dataclass(frozen=True)
class RayOptions:
    """How the Ray executor joins Ray and sizes replicas (``ExecutorSettings`` in the settings tree).

    Args:
        address: the Ray cluster to join (``host:port``, ``auto``); empty = start a local Ray in this process.
        namespace: the driver's Ray namespace, and the prefix of every Serve application this server creates.
        num_cpus: CPUs of a local Ray (empty ``address``); 0 = every core.
        replica_cpus: CPUs Ray reserves for each replica (0.5: two replicas per core of the cluster).
        max_ongoing_requests: requests a replica takes at once (at least the batch size).
        health_check_period_s: how often Serve checks each replica (``check_health``).
        load_timeout_s: longest wait for a variant's replicas to be running.
        retries: re-sends of a request whose replica died under it.
    """

    address: str = ""
    namespace: str = "mlpilot"
    num_cpus: int = 0
    replica_cpus: float = 0.5
    max_ongoing_requests: int = 16
    health_check_period_s: float = 2.0
    health_check_timeout_s: float = 10.0
    load_timeout_s: float = 120.0
    retries: int = 2
    status_poll_s: float = 1.0


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def app_name(namespace: str, deployment: str, variant: VariantRoute) -> tuple[str, str]:
    """The Serve application of a variant and its code version: everything but the scaling, hashed."""
    m = variant.model
    identity = json.dumps(
        [m.digest, m.flavor, dict(m.flavor_metadata), variant.max_batch_size, variant.max_wait_ms, variant.generation],
        sort_keys=True,
        default=str,
    )
    version = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{_safe(namespace)}.{_safe(deployment)}.{_safe(variant.name)}.{version}", version


class RayExecutor:
    """Variants as Ray Serve applications (see the module docstring).

    Args:
        options: the Ray connection and replica sizing.
        local: runs what stays in the server process (LLM apps); default an :class:`InProcessExecutor`.
    """

    kind = "ray"

    def __init__(self, options: RayOptions | None = None, *, local: InProcessExecutor | None = None) -> None:
        self.options = options or RayOptions()
        self.local = local or InProcessExecutor()
        self._lock = threading.Lock()
        self._started = False
        self._owns_ray = False
        self._apps: dict[str, int] = {}  # Serve application -> loaded runtimes using it
        # application -> (when read, (status, running replicas, message)); the newest reading wins
        self._status: dict[str, tuple[float, tuple[str, int, str]]] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------------------ executor

    def runtime_for(
        self,
        deployment: str,
        variant: VariantRoute,
        blobs: BlobStore,
        *,
        observe_batch: Callable[[int], None] | None = None,
    ) -> Runtime:
        if variant.model.flavor == APP_FLAVOR:
            return self.local.runtime_for(deployment, variant, blobs, observe_batch=observe_batch)
        return RayRuntime(self, deployment, variant, blobs, observe_batch)

    def reload_key(self, variant: VariantRoute) -> tuple[Any, ...]:
        # a new runtime on the same application: Serve scales its replicas in place
        return (variant.replicas, variant.autoscaling, variant.timeout_s)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)
        await self.local.close()

    def _close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(10)
        with self._lock:
            apps, self._apps = list(self._apps), {}
            started, self._started = self._started, False
        if not started:
            return
        for name in apps:  # runtimes still loaded at close: their applications go with the executor
            with contextlib.suppress(Exception):
                serve.delete(name)
        if self._owns_ray:
            with contextlib.suppress(Exception):
                serve.shutdown()
            ray.shutdown()
            self._owns_ray = False

    # ------------------------------------------------------------------------------------------ Ray

    def start(self) -> None:
        """Join (or start) Ray and Serve; blocking, idempotent. Raises ``Unavailable`` when Ray cannot be reached."""
        with self._lock:
            if self._started:
                return
            o = self.options
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports to the outside
            if not ray.is_initialized():
                common: dict[str, Any] = {"namespace": o.namespace, "include_dashboard": False, "log_to_driver": False}
                if o.address:
                    _check_reachable(o.address)  # Ray itself retries an unreachable address for minutes
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if o.address:
                            ray.init(address=o.address, **common)
                        else:
                            ray.init(num_cpus=o.num_cpus or None, **common)
                except Exception as exc:
                    where = f"the Ray cluster at {o.address}" if o.address else "a local Ray"
                    raise Unavailable(f"cannot start the Ray executor: {where}: {type(exc).__name__}: {exc}") from exc
                self._owns_ray = not o.address
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                serve.start(http_options={"location": "NoServer"})  # mlpilot's router is the only entry point
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, name="mlpilot-ray-status", daemon=True)
            self._poller.start()
            self._started = True

    def _poll(self) -> None:
        """Keep the applications' replica states for ``health()`` (which must not call Ray on the event loop)."""
        while not self._stop.wait(self.options.status_poll_s):
            try:
                t = time.monotonic()
                for app, state in self.read_status().items():
                    self.remember(app, t, state)
            except Exception as exc:  # the controller restarting: keep the last known states
                log.debug("serve.status failed: %s", exc)

    def remember(self, app: str, read_at: float, state: tuple[str, int, str]) -> None:
        """Keep ``state`` of ``app`` if it was read (started reading) after the one kept."""
        with self._lock:
            if app in self._apps and (app not in self._status or self._status[app][0] <= read_at):
                self._status[app] = (read_at, state)

    def read_status(self) -> dict[str, tuple[str, int, str]]:
        """(status, running replicas, message) of each of this executor's applications, from the Serve controller
        (``NOT_FOUND`` for one Serve does not know)."""
        with self._lock:
            mine = set(self._apps)
        out = dict.fromkeys(mine, ("NOT_FOUND", 0, "the application is not in Serve (deleted outside mlpilot?)"))
        for name, app in serve.status().applications.items():
            if name not in mine:
                continue
            dep = app.deployments.get(_DEPLOYMENT)
            states = dep.replica_states.items() if dep is not None else ()
            running = sum(int(n) for state, n in states if str(getattr(state, "value", state)) == "RUNNING")
            message = (dep.message if dep is not None else "") or app.message  # the replica's reason first
            out[name] = (str(getattr(app.status, "value", app.status)), running, message)
        return out

    def status_of(self, app: str, since: float | None = None) -> tuple[str, int, str] | None:
        """The last known (status, running replicas, message) of ``app`` (None: none read at or after ``since``, a
        ``time.monotonic()`` value)."""
        kept = self._status.get(app)
        if kept is None or (since is not None and kept[0] < since):
            return None
        return kept[1]

    def _acquire(self, app: str) -> None:
        with self._lock:
            self._apps[app] = self._apps.get(app, 0) + 1

    def _release(self, app: str) -> None:
        with self._lock:
            left = self._apps.get(app, 0) - 1
            if left > 0:
                self._apps[app] = left
                return
            self._apps.pop(app, None)
            self._status.pop(app, None)
            if not self._started:
                return
        try:
            serve.delete(app)
        except Exception as exc:  # the cluster is gone: nothing left to delete
            log.warning("deleting Serve application %s failed: %s", app, exc)

    def replica_actors(self, app: str) -> list[Any]:
        """Handles of the replica actors of an application (for operators and tests: ``ray.kill`` one)."""
        prefix = f"SERVE_REPLICA::{app}#"
        return [
            ray.get_actor(a["name"], namespace=a["namespace"])
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)
        ]


class RayRuntime(Runtime):
    """A variant served by a Ray Serve application (the :class:`Runtime` contract over a deployment handle)."""

    def __init__(
        self,
        executor: RayExecutor,
        deployment: str,
        variant: VariantRoute,
        blobs: BlobStore,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        from mlpilot.protocol.signature import Signature

        self.executor = executor
        self.deployment = deployment
        self.variant = variant
        self.blobs = blobs
        self.app, self.version = app_name(executor.options.namespace, deployment, variant)
        sig = Signature.from_dict(variant.model.signature) if variant.model.signature else None
        self.tags = RuntimeTags(batchable=True, columnar=bool(sig and sig.columnar))
        self._observe = observe_batch
        self._handle: Any = None
        self.retried = 0  # requests re-sent because their replica died
        self._in_flight = 0  # requests sent to the application and not answered yet (unload waits for them)
        # per replica id: answers, and seconds inside the replica (batch wait and model call; the hop excluded)
        self.replica_stats: dict[str, list[float]] = {}

    @property
    def expected_replicas(self) -> int:
        a = self.variant.autoscaling
        return a.min_replicas if a is not None else self.variant.replicas

    def _deployment(self) -> Any:
        from mlpilot.executors.replica import ReplicaSpec, VariantReplica

        o, v = self.executor.options, self.variant
        options: dict[str, Any] = {
            "name": _DEPLOYMENT,
            "ray_actor_options": {"num_cpus": o.replica_cpus},
            "max_ongoing_requests": max(o.max_ongoing_requests, v.max_batch_size),
            "health_check_period_s": o.health_check_period_s,
            "health_check_timeout_s": o.health_check_timeout_s,
            "graceful_shutdown_timeout_s": 5.0,
            "graceful_shutdown_wait_loop_s": 0.5,
        }
        if v.autoscaling is not None:
            a = v.autoscaling
            options["autoscaling_config"] = {
                "min_replicas": a.min_replicas,
                "initial_replicas": a.min_replicas,
                "max_replicas": a.max_replicas,
                "target_ongoing_requests": a.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = v.replicas
        deployment: Any = serve.deployment  # typed for decorator use only
        dep = deployment(VariantReplica).options(**options)
        # Serve gives every imperative deploy a random code version, which restarts all replicas even when only
        # their number changed; our version is the variant's identity, so a scaling change scales in place.
        if hasattr(dep, "_version"):
            dep._version = self.version
        m = v.model
        spec = ReplicaSpec(
            deployment=self.deployment,
            variant=v.name,
            digest=m.digest,
            flavor=m.flavor,
            flavor_metadata=dict(m.flavor_metadata),
            max_batch_size=v.max_batch_size,
            max_wait_ms=v.max_wait_ms,
            blobs=self.blobs,
        )
        return dep.bind(spec)

    def _deploy(self) -> Any:
        """Deploy (or update) the application and wait until its replicas run; blocking."""
        ex = self.executor
        ex.start()
        digest = self.variant.model.digest
        if not self.blobs.exists(digest):  # fail here, clearly (replicas verify the bytes when they load them)
            where = getattr(self.blobs, "location", self.blobs.root)
            raise NotFound(f"blob {digest} is missing from the artifact store at {where}")
        app = self._deployment()
        ex._acquire(self.app)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                [handle] = serve.run_many(
                    [serve.RunTarget(app, name=self.app, route_prefix=None)], wait_for_applications_running=False
                )
            self._wait_running()
        except BaseException:
            ex._release(self.app)
            raise
        return handle

    def _wait_running(self) -> None:
        deadline = time.monotonic() + self.executor.options.load_timeout_s
        want = self.expected_replicas
        state = ("UNKNOWN", 0, "")
        while time.monotonic() < deadline:
            t = time.monotonic()
            state = self.executor.read_status().get(self.app, state)
            status, running, message = state
            if status == "DEPLOY_FAILED":
                raise LoadError(f"variant {self.variant.name!r} failed to start on Ray: {_failure(message)}")
            if status == "RUNNING" and running >= want:
                self.executor.remember(self.app, t, state)
                return
            time.sleep(0.2)
        raise LoadError(
            f"variant {self.variant.name!r}: {want} replica(s) not running on Ray within "
            f"{self.executor.options.load_timeout_s:g} s (status {state[0]}, {state[1]} running): "
            f"{_first_lines(state[2]) or 'not enough resources in the cluster?'}"
        )

    async def load(self) -> None:
        try:
            self._handle = await asyncio.to_thread(self._deploy)
        except MlpilotError:
            raise
        except Exception as exc:
            raise LoadError(
                f"variant {self.variant.name!r} failed to deploy on Ray: {type(exc).__name__}: {exc}"
            ) from exc

    async def predict(self, inputs: Any) -> dict[str, Any]:
        self._in_flight += 1
        try:
            return await self._predict(inputs)
        finally:
            self._in_flight -= 1

    async def _predict(self, inputs: Any) -> dict[str, Any]:
        retries = self.executor.options.retries
        for attempt in range(retries + 1):
            handle = self._handle
            if handle is None:
                raise Unavailable("the model is not loaded")
            response = handle.remote(inputs)
            try:
                answer = await self._answer(response)
            except asyncio.TimeoutError:
                response.cancel()
                raise Unavailable(
                    f"variant {self.variant.name!r} did not answer within {self.variant.timeout_s:g} s"
                ) from None
            except ray.exceptions.RayActorError as exc:  # the replica died under the request: try another one
                if attempt == retries:
                    raise Unavailable(f"variant {self.variant.name!r}: its replicas died under the request") from exc
                self.retried += 1
                continue
            except MlpilotError:
                raise
            except Exception as exc:  # Serve could not route it (application deleted, controller away …)
                raise Unavailable(f"variant {self.variant.name!r} on Ray: {type(exc).__name__}: {exc}") from exc
            return self._unpack(answer)
        raise AssertionError("unreachable")

    async def _answer(self, response: Any) -> Any:
        """The replica's answer within the variant's timeout; ``Unavailable`` as soon as the status poller finds the
        application gone (Serve would otherwise keep the request waiting for a replica until the timeout)."""
        task = asyncio.ensure_future(_result(response))
        sent = time.monotonic()
        deadline = sent + self.variant.timeout_s
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            if done:
                return task.result()
            state = self.executor.status_of(self.app, since=sent)  # a reading older than the request proves nothing
            gone = state[0] if state is not None and state[0] in _GONE else None
            if gone is None and time.monotonic() < deadline:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if gone is None:
                raise asyncio.TimeoutError
            response.cancel()
            raise Unavailable(f"variant {self.variant.name!r} on Ray: its application is gone ({gone})")

    def _unpack(self, answer: Any) -> dict[str, Any]:
        if answer[0] == "error":
            raise error_from_dict(answer[1], 500)
        _, outputs, info = answer
        stats = self.replica_stats.setdefault(str(info.get("replica")), [0, 0.0])
        stats[0] += 1
        stats[1] += float(info.get("model_s", 0.0))
        if self._observe is not None and info.get("batch"):
            self._observe(int(info["batch"]))
        if not isinstance(outputs, dict):
            raise InferenceError(f"the replica answered {type(outputs).__name__}, not named outputs")
        return outputs

    async def unload(self) -> None:
        if self._handle is None:
            return
        self._handle = None
        # requests routed here before the routing moved are still in Serve's hands: deleting the application under
        # them would leave them waiting for a replica until their timeout, so they finish first (bounded)
        deadline = time.monotonic() + self.variant.timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self.executor._release, self.app)

    def health(self) -> None:
        if self._handle is None:
            raise Unavailable("the model is not loaded")
        state = self.executor.status_of(self.app)
        if state is not None and state[1] == 0:
            raise Unavailable(f"no replica of variant {self.variant.name!r} is running on Ray ({state[0]})")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ``Unavailable`` when a ``host:port`` (or ``ray://host:port``) address does not accept connections."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"ray_address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except OSError as exc:
        raise Unavailable(f"cannot start the Ray executor: nothing answers at {address} ({exc})") from exc


#: Serve application states in which no replica will answer a request
_GONE = frozenset({"NOT_FOUND", "DELETING"})


async def _result(response: Any) -> Any:
    return await response


def _failure(message: str) -> str:
    """The reason in a Serve failure message (which holds the replica's traceback): its last error line."""
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return (errors[-1] if errors else " ".join(lines[:3]))[:500]


def _first_lines(message: str, n: int = 3) -> str:
    lines = [ln for ln in (message or "").strip().splitlines() if ln.strip()]
    return " ".join(lines[:n])[:500]
