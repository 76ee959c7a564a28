"""The transport-free data plane: serves the deployments of the last ``RoutingSnapshot`` it was given.

Invariants:

* ``apply(snapshot)`` loads what is new *before* switching: the switch is one reference assignment, so a request
  sees either the old or the new routing, never a mix, and no request fails because of a change. Runtimes that
  are unchanged (same digest, flavor and runtime options) are reused, not reloaded.
* A deployment whose new variants fail to load keeps serving its previous routing; the failure is reported in
  ``status()``. Older snapshots (lower version) are ignored.
* Shadow variants run after the primary answer is computed, on their own executor, bounded; when saturated they
  are dropped and counted, never queued behind the primary.
* REST and gRPC call the same methods; transports own only their codecs.
* A deployment's input quarantine (``serving/quarantine.py``) is compiled with its routing; ``screen`` checks a
  request against it after routing and before validation: it rejects (``Quarantined``) or re-routes the request.
* Limits (``serving/limits.py``): ``choose`` takes a token from the deployment's and the caller's rate limits (429)
  and sends a variant whose circuit breaker is open to the deployment's fallback; ``infer`` sheds a request when
  its variant already serves ``max_in_flight`` (503) and gives the model ``timeout_s`` to answer (504). Refused
  requests are counted (``mlpilot_requests_refused``), not written to the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor as ThreadExecutor
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.blobs import BlobStore
from mlpilot.errors import DeadlineExceeded, InvalidArgument, MlpilotError, NotFound, Overloaded, Unavailable
from mlpilot.executors import Executor, InProcessExecutor
from mlpilot.protocol.signature import Signature
from mlpilot.runtimes import BatchingRuntime, FlavorRuntime, Runtime
from mlpilot.runtimes.app import AppRuntime
from mlpilot.serving.codec import DecodedRequest
from mlpilot.serving.limits import CALLER, BreakerState, CircuitBreaker, Clock, Limiter, Rate
from mlpilot.serving.metrics import Metrics, VariantMetrics
from mlpilot.serving.quarantine import Quarantine, Quarantined
from mlpilot.serving.router import SplitTable
from mlpilot.serving.snapshot import DeploymentRoute, RoutingSnapshot, VariantRoute
from mlpilot.serving.validate import InputValidator

log = logging.getLogger("mlpilot.serving")


@dataclass
class InferenceRecord:
    """One served request (primary or shadow), as the request log will store it."""

    ts: float
    request_id: str
    deployment: str
    variant: str
    model: str
    status: str
    latency_s: float  # the model call, including any wait for a batch
    shadow: bool = False
    sticky_key: str | None = None
    error: str | None = None
    outputs: dict[str, np.ndarray] | None = None
    inputs: Any = None  # the validated model input (array, DataFrame or dict of arrays), not copied
    trace_id: str | None = None
    decode_s: float = 0.0  # from the request's arrival until the model input was ready (decode, route, validate)


class RecentRecords:
    """The default record sink: the last ``maxlen`` records in memory (the request log replaces it)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.records: deque[InferenceRecord] = deque(maxlen=maxlen)

    def __call__(self, record: InferenceRecord) -> None:
        self.records.append(record)


@dataclass
class LoadedVariant:
    route: VariantRoute
    runtime: Runtime
    validator: InputValidator
    metrics: VariantMetrics
    key: tuple[Any, ...]
    signature: Signature | None
    output_names: list[str] = field(default_factory=list)
    in_flight: int = 0  # requests this variant serves now (waiting for a batch included)
    breaker: CircuitBreaker | None = None  # only in a deployment with a fallback, never on the fallback itself

    @property
    def version(self) -> str:
        return str(self.route.model.version)


@dataclass
class LoadedDeployment:
    route: DeploymentRoute
    variants: dict[str, LoadedVariant]
    split: SplitTable | None
    by_version: dict[str, str]
    shadows: list[LoadedVariant]
    quarantine: Quarantine | None = None  # None: no rules (the hot path tests only this)
    rate: Rate | None = None  # the deployment's rate limit
    max_in_flight: int = 512  # per variant
    fallback: LoadedVariant | None = None  # answers for a variant whose breaker is open


@dataclass
class InferResult:
    variant: LoadedVariant
    outputs: dict[str, np.ndarray]
    predict_s: float
    log_s: float = 0.0  # handing the record to the request log (strict durability: until it is on disk)


def _variant_key(d: str, v: VariantRoute) -> tuple[Any, ...]:
    m = v.model
    return (
        d,
        v.name,
        m.digest,
        m.flavor,
        repr(sorted(m.flavor_metadata.items())),
        repr(m.signature),
        v.max_batch_size,
        v.max_wait_ms,
        v.generation,
    )


class DataPlane:
    """Serve deployments from routing snapshots.

    Args:
        blobs: where model bytes are read from (digest-verified).
        metrics: Prometheus metrics (a private registry).
        sink: called with every :class:`InferenceRecord` (must not block).
        executor: builds the variants' runtimes (``mlpilot.executors``; default in-process, with ``cache_dir``);
            the data plane owns it from then on and closes it in :meth:`close`.
        shadow_executor: runs sync model code of shadows (in-process runtimes).
        shadow_limit: most shadow predictions in flight before new ones are dropped.
        caller_rate: every caller's rate limit (None: none); ``max_callers`` callers' buckets are kept.
        max_in_flight: requests a variant serves at once before more are shed (a deployment's limits override it).
        load_retry_s: a deployment that failed to load keeps its previous routing and is loaded again after this
            many seconds, doubling up to 32x, while the snapshot stays the same (0: only a new snapshot retries).
        clock: monotonic seconds, for rate limits and circuit breakers.
    """

    def __init__(
        self,
        blobs: BlobStore,
        *,
        metrics: Metrics | None = None,
        sink: Callable[[InferenceRecord], None] | None = None,
        durable: Callable[[InferenceRecord], Awaitable[None]] | None = None,
        executor: Executor | None = None,
        shadow_executor: ThreadExecutor | None = None,
        shadow_limit: int = 64,
        unload_grace_s: float = 5.0,
        load_retry_s: float = 5.0,
        cache_dir: Path | None = None,
        llm_prices: Mapping[str, Mapping[str, float]] | None = None,
        caller_rate: Rate | None = None,
        max_callers: int = 10_000,
        max_in_flight: int = 512,
        clock: Clock = time.monotonic,
    ) -> None:
        self.blobs = blobs
        self.cache_dir = cache_dir if cache_dir is not None else blobs.root.parent / "cache"
        self.llm_prices = dict(llm_prices or {})
        self.metrics = metrics or Metrics()
        self.sink = sink or RecentRecords()
        self.durable = durable
        self.executor: Executor = executor or InProcessExecutor(cache_dir=self.cache_dir)
        self._shadow_executor = shadow_executor or ThreadPoolExecutor(1, "mlpilot-shadow")
        self._shadow_slots = shadow_limit
        self._unload_grace_s = unload_grace_s
        self._deployments: dict[str, LoadedDeployment] = {}
        self._snapshot = RoutingSnapshot(version=0)
        self._errors: dict[str, str] = {}
        self._load_retry_s = load_retry_s
        self._retries = 0  # failed loads of the current snapshot retried so far
        self._apply_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.limiter = Limiter(caller_rate, max_callers, clock)
        self.max_in_flight = max_in_flight
        self._clock = clock

    # ------------------------------------------------------------------------------------------ snapshots

    @property
    def snapshot_version(self) -> int:
        return self._snapshot.version

    async def apply(self, snapshot: RoutingSnapshot) -> bool:
        """Switch to ``snapshot`` once its new runtimes are loaded. Returns False if it was not newer."""
        return await self._apply(snapshot, retry=False)

    async def _apply(self, snapshot: RoutingSnapshot, retry: bool) -> bool:
        async with self._apply_lock:
            if retry:  # the same snapshot again, for the deployments that failed to load (and only while they fail)
                if snapshot.version != self._snapshot.version or not self._errors:
                    return False
            elif snapshot.version <= self._snapshot.version:
                return False
            old_variants = {lv.key: lv for d in self._deployments.values() for lv in d.variants.values()}
            new: dict[str, LoadedDeployment] = {}
            errors: dict[str, str] = {}
            created: list[LoadedVariant] = []
            for name, route in snapshot.deployments.items():
                if retry and name not in self._errors:
                    new[name] = self._deployments[name]
                    continue
                try:
                    new[name] = await self._load_deployment(route, old_variants, created)
                    if retry:
                        log.warning("deployment %s loaded on retry %d", name, self._retries + 1)
                except MlpilotError as exc:
                    errors[name] = exc.message
                    log.error("deployment %s: %s; keeping its previous routing", name, exc.message)
                    if name in self._deployments:
                        new[name] = self._deployments[name]
            kept = {lv.key for d in new.values() for lv in d.variants.values()}
            retired = [lv for k, lv in old_variants.items() if k not in kept]
            retired += [lv for lv in created if lv.key not in kept]  # loaded for a deployment that then failed
            self._deployments = new
            self._snapshot = snapshot
            self._errors = errors
            self._retries = self._retries + 1 if retry else 0
            self.metrics.snapshot_version.set(snapshot.version)
            if retired:
                self._spawn(self._retire(retired))
            if errors and self._load_retry_s > 0:
                self._spawn(self._retry_later(snapshot, self._load_retry_s * 2 ** min(self._retries, 5)))
            return True

    async def _retry_later(self, snapshot: RoutingSnapshot, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._apply(snapshot, retry=True)

    async def _load_deployment(
        self, route: DeploymentRoute, old: dict[tuple[Any, ...], LoadedVariant], created: list[LoadedVariant]
    ) -> LoadedDeployment:
        variants: dict[str, LoadedVariant] = {}
        for v in route.variants:
            key = (*_variant_key(route.name, v), *self.executor.reload_key(v))
            if key in old:
                lv = old[key]
                lv.route = v
            else:
                lv = await self._load_variant(route.name, v, key)
                created.append(lv)
            variants[v.name] = lv
        order = [v.name for v in route.variants]
        live = any(route.weights.get(n, 0) > 0 for n in order)
        by_version: dict[str, str] = {}
        for v in route.variants:  # live variants first, so /versions/N prefers the one taking traffic
            if route.weights.get(v.name, 0) > 0:
                by_version.setdefault(str(v.model.version), v.name)
        for v in route.variants:
            by_version.setdefault(str(v.model.version), v.name)
            by_version.setdefault(v.name, v.name)
        limits = route.limits
        fallback = variants.get(limits.fallback) if limits is not None and limits.fallback else None
        for lv in variants.values():
            self._fit_breaker(route.name, lv, fallback, limits)
        return LoadedDeployment(
            route=route,
            variants=variants,
            split=SplitTable(route.weights, order) if live else None,
            by_version=by_version,
            shadows=[variants[s] for s in route.shadows if s in variants],
            quarantine=Quarantine(route.quarantine) if route.quarantine else None,
            rate=Rate.of(limits.rate_per_s, limits.burst) if limits is not None else None,
            max_in_flight=limits.max_in_flight if limits is not None and limits.max_in_flight else self.max_in_flight,
            fallback=fallback,
        )

    def _fit_breaker(self, deployment: str, lv: LoadedVariant, fallback: LoadedVariant | None, limits: Any) -> None:
        """Give ``lv`` the breaker its deployment's limits call for (kept, with its state, when they are unchanged)."""
        if fallback is None or lv is fallback:
            if lv.breaker is not None:
                lv.breaker = None
                with contextlib.suppress(KeyError):
                    self.metrics.breaker_open.remove(deployment, lv.route.name)
            return
        b = lv.breaker
        if b is not None and (b.failures, b.open_s) == (limits.breaker_failures, limits.breaker_open_s):
            return
        gauge = self.metrics.breaker_open.labels(deployment, lv.route.name)
        breaker = CircuitBreaker(limits.breaker_failures, limits.breaker_open_s, clock=self._clock)
        breaker.on_change(lambda state: self._breaker_changed(deployment, lv.route.name, state, gauge))
        gauge.set(0)
        lv.breaker = breaker

    def _breaker_changed(self, deployment: str, variant: str, state: BreakerState, gauge: Any) -> None:
        gauge.set(1 if state is BreakerState.OPEN else 0)
        if state is BreakerState.OPEN:
            log.warning("circuit breaker of %s/%s opened: its requests go to the fallback", deployment, variant)
        elif state is BreakerState.CLOSED:
            log.info("circuit breaker of %s/%s closed", deployment, variant)

    async def _load_variant(self, deployment: str, v: VariantRoute, key: tuple[Any, ...]) -> LoadedVariant:
        vm = self.metrics.variant(deployment, v.name)
        runtime = self.executor.runtime_for(deployment, v, self.blobs, observe_batch=vm.batch.observe)
        if isinstance(runtime, BatchingRuntime):
            batcher = runtime
            self.metrics.watch_queue(deployment, v.name, lambda: float(batcher.queue_depth))
        await runtime.load()
        if isinstance(runtime, AppRuntime):
            return LoadedVariant(
                route=v, runtime=runtime, validator=InputValidator(None), metrics=vm, key=key, signature=None
            )
        sig = Signature.from_dict(v.model.signature) if v.model.signature else None
        outputs = [o["name"] for o in (v.model.signature or {}).get("outputs", [])]
        return LoadedVariant(
            route=v,
            runtime=runtime,
            validator=InputValidator(sig),
            metrics=vm,
            key=key,
            signature=sig,
            output_names=outputs,
        )

    async def _retire(self, variants: list[LoadedVariant]) -> None:
        await asyncio.sleep(self._unload_grace_s)  # let in-flight requests on the old routing finish
        for lv in variants:
            with contextlib.suppress(Exception):
                await lv.runtime.unload()
            self.metrics.forget(lv.key[0], lv.route.name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for d in self._deployments.values():
            for lv in d.variants.values():
                with contextlib.suppress(Exception):
                    await lv.runtime.unload()
        self._deployments = {}
        await self.executor.close()
        if isinstance(self._shadow_executor, ThreadPoolExecutor):
            self._shadow_executor.shutdown(wait=False)

    # ------------------------------------------------------------------------------------------ discovery

    def status(self) -> dict[str, Any]:
        return {
            "snapshot_version": self._snapshot.version,
            "deployments": sorted(self._deployments),
            "errors": dict(self._errors),
        }

    def ready(self) -> bool:
        return not self._errors and all(self._healthy(d) for d in self._deployments.values())

    @staticmethod
    def _healthy(d: LoadedDeployment) -> bool:
        try:
            for lv in d.variants.values():
                lv.runtime.health()
        except MlpilotError:
            return False
        return True

    def deployment(self, name: str) -> LoadedDeployment:
        d = self._deployments.get(name)
        if d is None:
            raise NotFound(f"unknown model {name!r}; served models are {sorted(self._deployments)}")
        return d

    def variant_for(self, name: str, version: str | None) -> LoadedVariant:
        d = self.deployment(name)
        if version is None:
            raise InvalidArgument("a version is required here")
        vname = d.by_version.get(version)
        if vname is None:
            raise NotFound(f"model {name!r} has no version {version!r}; it serves {sorted(set(d.by_version))}")
        return d.variants[vname]

    def apps(self) -> list[tuple[str, str]]:
        """``(deployment, kind)`` of every deployment that serves an LLM app (``kind``: chat or embeddings)."""
        out = []
        for name, d in sorted(self._deployments.items()):
            runtime = next(iter(d.variants.values())).runtime if d.variants else None
            if isinstance(runtime, AppRuntime):
                out.append((name, runtime.kind))
        return out

    def model_ready(self, name: str, version: str | None) -> bool:
        d = self.deployment(name)
        targets = [self.variant_for(name, version)] if version is not None else list(d.variants.values())
        try:
            for lv in targets:
                lv.runtime.health()
        except MlpilotError:
            return False
        return True

    def metadata(self, name: str, version: str | None) -> dict[str, Any]:
        d = self.deployment(name)
        if version is not None:
            lv = self.variant_for(name, version)
        else:
            primary = d.split.choose(0.0) if d.split else d.route.variants[0].name
            lv = d.variants[primary]
        sig = lv.signature
        return {
            "name": name,
            "versions": sorted({str(v.route.model.version) for v in d.variants.values()}, key=_version_sort),
            "platform": lv.route.model.flavor,
            "inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in sig.inputs]
            if sig
            else [],
            "outputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in sig.outputs]
            if sig
            else [],
            "parameters": {"variant": lv.route.name, "model": f"{lv.route.model.name}:{lv.route.model.version}"},
        }

    # ------------------------------------------------------------------------------------------ inference

    def choose(
        self, name: str, version: str | None, sticky_key: str | None, caller: str | None = None
    ) -> tuple[LoadedDeployment, LoadedVariant]:
        """The deployment and the variant that serve a request, after its rate limits (``caller``: the API key's
        name or the client's address; default: ``limits.CALLER``, which the transports set).

        Raises:
            NotFound: no such deployment or version. Unavailable: no variant takes traffic.
            ResourceExhausted: over the deployment's or the caller's rate limit (nothing is counted against the
                other one).
        """
        d = self.deployment(name)
        if self.limiter.caller_rate is not None and caller is None:
            caller = CALLER.get()
        if d.rate is not None or (caller is not None and self.limiter.caller_rate is not None):
            try:
                self.limiter.admit(name, d.rate, caller)
            except MlpilotError as exc:
                self.metrics.refused.labels(name, f"rate_{exc.detail.get('limit', 'limit')}").inc()
                raise
        if version is not None:
            return d, self.variant_for(name, version)
        if d.split is None:
            raise Unavailable(f"model {name!r} has no variant taking traffic (all weights are 0)")
        lv = d.variants[d.split.route(sticky_key)]
        if lv.breaker is not None and d.fallback is not None and not lv.breaker.allow():
            self.metrics.breaker_rerouted.labels(name, lv.route.name).inc()
            return d, d.fallback
        return d, lv

    def screen(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request: DecodedRequest,
        request_id: str,
        sticky_key: str | None = None,
    ) -> LoadedVariant:
        """Apply the deployment's input quarantine to a routed request: the variant that serves it (``lv``, or a
        route rule's variant), or ``Quarantined`` (counted, and recorded in the request log under ``lv`` with the status
        ``quarantined``: refused by the deployment's policy, not a failure of the model).
        Call only when ``d.quarantine`` is set."""
        assert d.quarantine is not None
        verdict = d.quarantine.check(request.inputs)
        if verdict is None:
            return lv
        rule = verdict.rule
        self.metrics.quarantined.labels(d.route.name, rule.feature, rule.action).inc()
        if rule.action == "route" and rule.variant is not None:
            target = d.variants.get(rule.variant)
            if target is not None:
                return target
        exc = Quarantined(verdict.message(), detail={"feature": rule.feature, "rows": verdict.rows})
        lv.metrics.requests["client_error"].inc()
        try:
            inputs = lv.validator(request.inputs)
        except MlpilotError:
            inputs = None
        if lv.validator.single_name and inputs is not None:
            inputs = {lv.validator.single_name: inputs}
        self._record(d, lv, request_id, "quarantined", 0.0, sticky_key, exc, None, inputs)
        raise exc

    async def infer(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request: DecodedRequest,
        request_id: str,
        sticky_key: str | None = None,
        trace_id: str | None = None,
        arrived: float | None = None,
    ) -> InferResult:
        """Validate and predict on the chosen variant; mirror to shadows afterwards.

        Args:
            arrived: ``perf_counter()`` when the request arrived (its record's ``decode_s`` counts from there).
        Raises:
            Overloaded: the variant already serves ``max_in_flight`` requests (shed; ``retry_after_s`` 1 s).
            DeadlineExceeded: the model did not answer within the variant's ``timeout_s``.
        """
        breaker = lv.breaker
        if lv.in_flight >= d.max_in_flight:
            if breaker is not None:
                breaker.release()
            self.metrics.refused.labels(d.route.name, "shed").inc()
            raise Overloaded(
                f"variant {lv.route.name!r} of {d.route.name!r} is serving its limit of {d.max_in_flight} requests; "
                "retry shortly",
                retry_after_s=1.0,
            )
        lv.in_flight += 1
        try:
            return await self._infer(d, lv, request, request_id, sticky_key, trace_id, arrived, breaker)
        finally:
            lv.in_flight -= 1

    async def _infer(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request: DecodedRequest,
        request_id: str,
        sticky_key: str | None,
        trace_id: str | None,
        arrived: float | None,
        breaker: CircuitBreaker | None,
    ) -> InferResult:
        try:
            model_input = lv.validator(request.inputs)
        except MlpilotError:
            if breaker is not None:
                breaker.release()
            raise
        t0 = time.perf_counter()
        decode_s = t0 - arrived if arrived is not None else 0.0
        try:
            try:
                outputs = await _within(lv.runtime.predict(model_input), lv.route.timeout_s)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"variant {lv.route.name!r} of {d.route.name!r} did not answer within {lv.route.timeout_s:g} s"
                ) from None
        except MlpilotError as exc:
            if breaker is not None:
                if exc.http_status >= 500:
                    breaker.failure()
                else:
                    breaker.release()
            self._record(
                d,
                lv,
                request_id,
                "error",
                time.perf_counter() - t0,
                sticky_key,
                exc,
                None,
                model_input,
                trace_id=trace_id,
                decode_s=decode_s,
            )
            raise
        if breaker is not None:
            breaker.success()
        t1 = time.perf_counter()
        predict_s = t1 - t0
        logged = {lv.validator.single_name: model_input} if lv.validator.single_name else model_input
        record = self._record(
            d,
            lv,
            request_id,
            "ok",
            predict_s,
            sticky_key,
            None,
            outputs,
            logged,
            deliver=self.durable is None,
            trace_id=trace_id,
            decode_s=decode_s,
        )
        if self.durable is not None:
            await self.durable(record)  # strict durability: on disk before the answer leaves
        log_s = time.perf_counter() - t1
        for shadow in d.shadows:
            self._mirror(d, shadow, request, request_id, sticky_key)
        return InferResult(lv, outputs, predict_s, log_s)

    def _record(
        self,
        d: LoadedDeployment,
        lv: LoadedVariant,
        request_id: str,
        status: str,
        latency: float,
        sticky_key: str | None,
        exc: MlpilotError | None,
        outputs: dict[str, np.ndarray] | None = None,
        inputs: Any = None,
        shadow: bool = False,
        deliver: bool = True,
        trace_id: str | None = None,
        decode_s: float = 0.0,
    ) -> InferenceRecord:
        record = InferenceRecord(
            ts=time.time(),
            request_id=request_id,
            deployment=d.route.name,
            variant=lv.route.name,
            model=f"{lv.route.model.name}:{lv.route.model.version}",
            status=status,
            latency_s=latency,
            shadow=shadow,
            sticky_key=sticky_key,
            error=exc.message if exc else None,
            outputs=outputs,
            inputs=inputs,
            trace_id=trace_id,
            decode_s=decode_s,
        )
        if deliver:
            self.sink(record)
        return record

    def _mirror(
        self, d: LoadedDeployment, lv: LoadedVariant, request: DecodedRequest, request_id: str, sticky_key: str | None
    ) -> None:
        if self._shadow_slots <= 0:
            self.metrics.shadow_dropped.labels(d.route.name, lv.route.name).inc()
            return
        self._shadow_slots -= 1
        self._spawn(self._shadow(d, lv, request, request_id, sticky_key))

    async def _shadow(
        self, d: LoadedDeployment, lv: LoadedVariant, request: DecodedRequest, request_id: str, sticky_key: str | None
    ) -> None:
        """Predict on a shadow after the primary answered. Its recorded latency is the model call alone, measured
        where it runs (like a primary's: validation and the wait for the shadow worker are not counted), so the
        shadow's latency is comparable with the primary's in a rollout's shadow phase."""
        t0 = time.perf_counter()
        try:
            model_input = lv.validator(request.inputs)
            runtime = lv.runtime
            if isinstance(runtime, FlavorRuntime):
                outputs, latency = await asyncio.get_running_loop().run_in_executor(
                    self._shadow_executor, _timed, runtime.predict_sync, model_input
                )
            else:
                t0 = time.perf_counter()
                outputs = await runtime.predict(model_input)
                latency = time.perf_counter() - t0
            self._record(d, lv, request_id, "ok", latency, sticky_key, None, outputs, model_input, shadow=True)
            lv.metrics.requests["ok"].inc()
        except MlpilotError as exc:
            self._record(d, lv, request_id, "error", time.perf_counter() - t0, sticky_key, exc, shadow=True)
            lv.metrics.requests["server_error"].inc()
        except Exception as exc:  # a shadow must never take anything down; count it as a server error
            log.warning("shadow %s/%s failed: %r", d.route.name, lv.route.name, exc)
            lv.metrics.requests["server_error"].inc()
        finally:
            self._shadow_slots += 1


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[Any], timeout_s: float) -> Any:
        """``await aw``, or ``TimeoutError`` after ``timeout_s`` (no extra task, unlike ``wait_for`` before 3.12)."""
        async with asyncio.timeout(timeout_s):
            return await aw

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[Any], timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(aw, timeout_s)
        except asyncio.TimeoutError as exc:
            raise TimeoutError from exc


def _timed(fn: Any, arg: Any) -> tuple[Any, float]:
    """``fn(arg)`` and the seconds it took (measured on the thread that runs it)."""
    t0 = time.perf_counter()
    out = fn(arg)
    return out, time.perf_counter() - t0


def _version_sort(v: str) -> tuple[int, str]:
    return (0, f"{int(v):012d}") if v.isdigit() else (1, v)
