"""The Ray executor beyond the conformance suite: Serve applications and their lifetime, scaling in place, retries
when a replica dies under a request, timeouts, and the data plane switching variants on Ray."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.blobs import BlobStore
from mlpilot.errors import LoadError, Unavailable
from mlpilot.flavors import with_trust
from mlpilot.serving.snapshot import DeploymentRoute, ModelBinding, RoutingSnapshot, VariantRoute
from mlpilot.testing.executor_checks import sklearn_variant

pytestmark = pytest.mark.slow

SLOW_MODEL = '''
import json, os, time
import numpy as np


class Slow:
    """Sums each row after 2 s; notes the pid of every call that finished under NOTES."""

    def predict(self, X):
        time.sleep(2.0)
        with open(os.path.join(NOTES, str(time.time_ns())), "w") as f:
            json.dump(os.getpid(), f)
        return np.asarray(X, dtype=float).sum(axis=1)
'''


def _executor(**kw: Any) -> Any:
    from mlpilot.executors.ray import RayExecutor, RayOptions

    return RayExecutor(RayOptions(health_check_period_s=1.0, **kw))


def _slow_variant(blobs: BlobStore, notes: Path, **kw: Any) -> VariantRoute:
    notes.mkdir(parents=True, exist_ok=True)
    digest, _ = blobs.put_bytes(f"NOTES = {str(notes)!r}\n{SLOW_MODEL}".encode())
    meta = with_trust({"format": "python", "class_name": "Slow"}, "test", "request")  # as the registry records it
    model = ModelBinding("slow", 1, digest, "pyfunc", meta)
    return VariantRoute(name="slow", model=model, **kw)


def _apps() -> set[str]:
    from mlpilot.executors.ray import serve

    return set(serve.status().applications)


def test_scaling_shares_the_application_and_the_last_unload_deletes_it(tmp_path: Path, ray_session: Any) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    one, X, expected = sklearn_variant(blobs)
    two = replace(one, replicas=2)

    async def go() -> None:
        executor = _executor()
        try:
            first = executor.runtime_for("d", one, blobs)
            await first.load()
            before = {a._actor_id for a in executor.replica_actors(first.app)}
            assert len(before) == 1
            second = executor.runtime_for("d", two, blobs)
            assert second.app == first.app  # the scaling is not part of the application's identity
            await second.load()
            after = {a._actor_id for a in executor.replica_actors(second.app)}
            assert len(after) == 2 and before < after  # scaled in place: the first replica kept serving
            await first.unload()  # the old runtime retires; the application is still in use
            assert second.app in _apps()
            outs = await asyncio.gather(*(second.predict(X[i : i + 1]) for i in range(16)))
            assert [int(o["predict"][0]) for o in outs] == expected[:16].tolist()
            assert sum(int(n) for n, _ in second.replica_stats.values()) == 16  # each answer says who served it
            await second.unload()
            assert second.app not in _apps()
        finally:
            await executor.close()

    asyncio.run(go())


def test_a_request_whose_replica_dies_is_sent_again(tmp_path: Path, ray_session: Any) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    notes = tmp_path / "notes"
    variant = _slow_variant(blobs, notes, replicas=1, timeout_s=60.0)

    async def go() -> None:
        executor = _executor()
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            [actor] = executor.replica_actors(runtime.app)
            request = asyncio.ensure_future(runtime.predict(np.ones((2, 3))))
            await asyncio.sleep(1.0)  # the replica is inside its 2 s call
            ray_session.kill(actor, no_restart=True)
            out = await request
            assert np.asarray(out["predict"]).tolist() == [3.0, 3.0]
            assert runtime.retried == 1
            pids = [json.loads(p.read_text()) for p in notes.iterdir()]
            assert len(pids) == 1  # the killed replica never finished; its replacement answered
            [replacement] = executor.replica_actors(runtime.app)
            assert replacement._actor_id != actor._actor_id
            await runtime.unload()
        finally:
            await executor.close()

    asyncio.run(go())


def test_unload_lets_the_requests_in_flight_finish_before_it_deletes_the_application(
    tmp_path: Path, ray_session: Any
) -> None:
    """A variant retired while a request is inside its replica: the request is answered, then the application goes
    (deleting it first left such requests waiting for a replica until their timeout)."""
    blobs = BlobStore(tmp_path / "blobs")
    variant = _slow_variant(blobs, tmp_path / "notes", replicas=1, timeout_s=30.0)

    async def go() -> None:
        executor = _executor()
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            request = asyncio.ensure_future(runtime.predict(np.ones((2, 3))))
            await asyncio.sleep(0.5)  # the replica is inside its 2 s call
            unloading = asyncio.ensure_future(runtime.unload())
            await asyncio.sleep(0.5)
            assert runtime.app in _apps() and not unloading.done()  # waiting for the request
            out = await asyncio.wait_for(request, 10)
            assert np.asarray(out["predict"]).tolist() == [3.0, 3.0]
            await asyncio.wait_for(unloading, 30)
            assert runtime.app not in _apps()
        finally:
            await executor.close()

    asyncio.run(go())


def test_a_request_whose_replicas_keep_dying_is_unavailable(tmp_path: Path, ray_session: Any) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    variant = _slow_variant(blobs, tmp_path / "notes", replicas=1, timeout_s=60.0)

    async def go() -> None:
        executor = _executor(retries=0)
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            [actor] = executor.replica_actors(runtime.app)
            request = asyncio.ensure_future(runtime.predict(np.ones((1, 3))))
            await asyncio.sleep(1.0)
            ray_session.kill(actor, no_restart=True)
            with pytest.raises(Unavailable, match="its replicas died under the request"):
                await request
            await runtime.unload()
        finally:
            await executor.close()

    asyncio.run(go())


def test_an_application_deleted_behind_its_back_is_unavailable(tmp_path: Path, ray_session: Any) -> None:
    from mlpilot.executors.ray import serve

    blobs = BlobStore(tmp_path / "blobs")
    variant, X, _ = sklearn_variant(blobs)

    async def go() -> None:
        executor = _executor()
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            runtime.health()
            await asyncio.to_thread(serve.delete, runtime.app)
            t0 = time.monotonic()
            # Serve's own error when the handle already knows, else ours once the status poller sees it gone
            with pytest.raises(Unavailable, match=r"on Ray: (DeploymentUnavailableError|its application is gone)"):
                await runtime.predict(X[:1])
            assert time.monotonic() - t0 < 15, "not the variant's 30 s timeout"
            deadline = time.monotonic() + 10
            while executor.status_of(runtime.app)[0] != "NOT_FOUND" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the status poller (every second) notices
            with pytest.raises(Unavailable, match="no replica of variant 'v1' is running on Ray"):
                runtime.health()
            await runtime.unload()
        finally:
            await executor.close()

    asyncio.run(go())


def test_a_slow_answer_is_unavailable_after_the_variant_timeout(tmp_path: Path, ray_session: Any) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    variant = _slow_variant(blobs, tmp_path / "notes", timeout_s=0.5)

    async def go() -> None:
        executor = _executor()
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            with pytest.raises(Unavailable, match=r"did not answer within 0\.5 s"):
                await runtime.predict(np.ones((1, 3)))
            await runtime.unload()
        finally:
            await executor.close()

    asyncio.run(go())


def test_replicas_that_cannot_start_fail_the_load_and_leave_nothing(tmp_path: Path, ray_session: Any) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    variant, _, _ = sklearn_variant(blobs, replicas=8)  # 8 x 0.5 CPU on a 2-CPU cluster

    async def go() -> None:
        executor = _executor(load_timeout_s=4.0)
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            with pytest.raises(LoadError, match=r"8 replica\(s\) not running on Ray within 4 s"):
                await runtime.load()
            assert runtime.app not in _apps()
            with pytest.raises(Unavailable):
                runtime.health()
        finally:
            await executor.close()

    asyncio.run(go())


def test_the_data_plane_switches_variants_on_ray(tmp_path: Path, ray_session: Any) -> None:
    from mlpilot.serving.dataplane import DataPlane

    blobs = BlobStore(tmp_path / "blobs")
    v1, X, expected = sklearn_variant(blobs)

    def snapshot(version: int, variant: VariantRoute) -> RoutingSnapshot:
        route = DeploymentRoute("iris", version, (variant,), {variant.name: 100})
        return RoutingSnapshot(version, {"iris": route})

    async def go() -> None:
        dp = DataPlane(blobs, executor=_executor(), unload_grace_s=0.0)
        try:
            assert await dp.apply(snapshot(1, v1))
            first = dp.deployment("iris").variants["v1"].runtime
            assert dp.ready()
            assert await dp.apply(snapshot(2, replace(v1, replicas=2)))  # scaled: same application
            scaled = dp.deployment("iris").variants["v1"].runtime
            assert scaled is not first and scaled.app == first.app  # type: ignore[attr-defined]
            assert await dp.apply(snapshot(3, replace(v1, replicas=2, generation=1)))  # a restart: a new one
            restarted = dp.deployment("iris").variants["v1"].runtime
            assert restarted.app != first.app  # type: ignore[attr-defined]
            out = await restarted.predict(X[:5])
            assert np.asarray(out["predict"]).tolist() == expected[:5].tolist()
            deadline = time.monotonic() + 30
            while first.app in _apps() and time.monotonic() < deadline:  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)  # retired after the (zero) grace, in the background
            assert first.app not in _apps()  # type: ignore[attr-defined]
            assert restarted.app in _apps()  # type: ignore[attr-defined]
            assert dp.ready()
        finally:
            await dp.close()
        assert not {a for a in _apps() if a.startswith("mlpilot.iris.")}
        assert ray_session.is_initialized()  # a Ray the executor did not start outlives it

    asyncio.run(go())


def test_replicas_read_the_model_from_an_fsspec_artifact_root(tmp_path: Path, ray_session: Any) -> None:
    """The router's blob store travels to the replicas with its settings (here a ``file://`` URL with a local
    cache): each replica rebuilds it and loads the model by digest from the URL."""
    from mlpilot.blobs import open_blob_store

    blobs = open_blob_store(f"file://{tmp_path / 'remote'}", cache_dir=tmp_path / "cache")
    variant, X, expected = sklearn_variant(blobs)
    for f in list((tmp_path / "cache").rglob("*")):  # only the replicas may bring the model into the cache now
        if f.is_file():
            f.unlink()
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]

    async def go() -> None:
        executor = _executor()
        try:
            runtime = executor.runtime_for("d", variant, blobs)
            await runtime.load()
            out = await runtime.predict(X[:7])
            assert np.asarray(out["predict"]).tolist() == expected[:7].tolist()
            hexd = variant.model.digest.removeprefix("sha256:")
            assert (tmp_path / "cache" / "sha256" / hexd[:2] / hexd[2:]).is_file()  # a replica fetched it
            await runtime.unload()
        finally:
            await executor.close()

    asyncio.run(go())
