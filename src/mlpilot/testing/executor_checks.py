"""Executor conformance checks. Each takes ``make_executor() -> Executor`` (a fresh executor), ``workdir`` (an
empty directory for scratch files) and optionally ``make_blobs(workdir) -> (writer, reader)`` (the blob store the
check stores its models in, and the one it hands the executor; default one local directory for both), and raises
``AssertionError`` when the executor misbehaves.

Writer and reader may be two views of one storage, as on a cluster: the control plane writes to object storage
through its cache, replicas on other hosts read through theirs (two :class:`~mlpilot.blobs.remote.FsspecBlobStore`
of one ``s3://`` URL with separate cache directories: the replicas then read every model from the object store).

They use only the executor and :class:`~mlpilot.runtimes.Runtime` contracts, on real models: a scikit-learn
classifier and a pyfunc model that takes 0.3 s per call and notes which process served it and when. Run them on
every executor (in-process, Ray)::

    for check in EXECUTOR_CHECKS:
        check(make_executor, tmp_path / check.__name__)            # blobs in a local directory
        check(make_executor, tmp_path / check.__name__, make_blobs)  # e.g. on S3
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.blobs import BlobStore
from mlpilot.errors import InferenceError, LoadError, NotFound, Unavailable
from mlpilot.executors import Executor
from mlpilot.flavors import with_trust
from mlpilot.runtimes import Runtime
from mlpilot.serving.snapshot import AutoscalingRoute, ModelBinding, VariantRoute

ExecutorFactory = Callable[[], Executor]
#: ``make_blobs(workdir) -> (writer, reader)``: where a check stores its models, and what it gives the executor.
BlobsFactory = Callable[[Path], tuple[BlobStore, BlobStore]]
DEPLOYMENT = "conformance"


def local_blobs(workdir: Path) -> tuple[BlobStore, BlobStore]:
    """One local directory, for writing and reading (the default of every check)."""
    blobs = BlobStore(workdir / "blobs")
    return blobs, blobs


_SLEEPER = '''
import json, os, time, uuid
import numpy as np


class Sleeper:
    """Sums each row after 0.3 s of wall time; notes (pid, start, end) of every call under NOTES."""

    def predict(self, X):
        t0 = time.time()
        time.sleep(0.3)
        t1 = time.time()
        with open(os.path.join(NOTES, uuid.uuid4().hex), "w") as f:
            json.dump([os.getpid(), t0, t1], f)
        return np.asarray(X, dtype=float).sum(axis=1)
'''


def _iris() -> tuple[Any, Any, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    return model, X, model.predict(X)


def sklearn_variant(blobs: BlobStore, name: str = "v1", **kw: Any) -> tuple[VariantRoute, Any, Any]:
    """An iris classifier stored in ``blobs``, as a variant (``kw``: its runtime fields); its inputs and labels."""
    from mlpilot.flavors import get_flavor

    model, X, expected = _iris()
    ser = get_flavor("sklearn").serialize(model)
    digest, _ = blobs.put_bytes(ser.data)
    meta = with_trust(ser.metadata, "conformance-kit", "request")  # joblib runs code: trusted as registered
    binding = ModelBinding(name="iris", version=1, digest=digest, flavor="sklearn", flavor_metadata=meta)
    return VariantRoute(name=name, model=binding, **kw), X, expected


def sleeper_variant(blobs: BlobStore, notes: Path, **kw: Any) -> VariantRoute:
    """A pyfunc model of 0.3 s per call that notes ``[pid, start, end]`` of each call in a file under ``notes``."""
    notes.mkdir(parents=True, exist_ok=True)
    source = f"NOTES = {str(notes)!r}\n{_SLEEPER}"
    digest, _ = blobs.put_bytes(source.encode())
    meta = with_trust({"format": "python", "class_name": "Sleeper"}, "conformance-kit", "request")
    binding = ModelBinding(name="sleeper", version=1, digest=digest, flavor="pyfunc", flavor_metadata=meta)
    return VariantRoute(name="sleeper", model=binding, **kw)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def _loaded(executor: Executor, variant: VariantRoute, blobs: BlobStore, **kw: Any) -> Runtime:
    runtime = executor.runtime_for(DEPLOYMENT, variant, blobs, **kw)
    await runtime.load()
    return runtime


def _separate_processes(executor: Executor) -> bool:
    """Whether the executor runs each replica in its own process (the in-process executor runs one copy)."""
    return executor.kind != "inprocess"


# ---------------------------------------------------------------------------------------------------- checks


def check_load_and_predict(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """A loaded runtime answers one row with the model's own prediction and passes its health check."""
    blobs, reader = make_blobs(workdir)
    variant, X, expected = sklearn_variant(blobs)

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader)
            runtime.health()
            out = await runtime.predict(X[:1])
            assert set(out) == {"predict", "predict_proba"}, sorted(out)
            assert np.asarray(out["predict"]).tolist() == expected[:1].tolist()
            assert np.asarray(out["predict_proba"]).shape == (1, 3)
            await runtime.unload()
        finally:
            await executor.close()

    _run(go())


def check_batch_of_rows(make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs) -> None:
    """A request of many rows gets one output row per input row, in order."""
    blobs, reader = make_blobs(workdir)
    variant, X, expected = sklearn_variant(blobs)

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader)
            out = await runtime.predict(X)
            assert np.asarray(out["predict"]).tolist() == expected.tolist()
            await runtime.unload()
        finally:
            await executor.close()

    _run(go())


def check_bad_input_is_a_clear_error(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """Input the model refuses is an ``InferenceError`` naming why; the runtime serves the next request."""
    blobs, reader = make_blobs(workdir)
    variant, X, expected = sklearn_variant(blobs)

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader)
            try:
                await runtime.predict(X[:3, :2])  # 2 features instead of 4
            except InferenceError as exc:
                assert "feature" in exc.message, exc.message
            else:
                raise AssertionError("a 2-feature input to a 4-feature model did not fail")
            out = await runtime.predict(X[:2])
            assert np.asarray(out["predict"]).tolist() == expected[:2].tolist()
            await runtime.unload()
        finally:
            await executor.close()

    _run(go())


def check_failed_load_is_a_load_error(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """A corrupt model file fails ``load()`` with ``LoadError``; a digest not in the store with ``NotFound``."""
    blobs, reader = make_blobs(workdir)
    variant, _, _ = sklearn_variant(blobs)
    digest, _ = blobs.put_bytes(b"not a joblib file")
    corrupt = replace(variant, name="corrupt", model=replace(variant.model, digest=digest))
    missing = replace(variant, name="missing", model=replace(variant.model, digest="sha256:" + "ab" * 32))

    async def go() -> None:
        executor = make_executor()
        try:
            for bad, error in ((corrupt, LoadError), (missing, NotFound)):
                runtime = executor.runtime_for(DEPLOYMENT, bad, reader)
                try:
                    await runtime.load()
                except error as exc:
                    assert exc.message, exc
                else:
                    raise AssertionError(f"loading {bad.name} did not raise {error.__name__}")
                try:
                    runtime.health()
                except Unavailable:
                    pass
                else:
                    raise AssertionError(f"{bad.name} reports healthy after a failed load")
        finally:
            await executor.close()

    _run(go())


def check_unload_frees_it(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """After ``unload()`` the runtime refuses requests with ``Unavailable``, and health says so; twice is harmless."""
    blobs, reader = make_blobs(workdir)
    variant, X, _ = sklearn_variant(blobs)

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader)
            await runtime.unload()
            await runtime.unload()
            try:
                runtime.health()
            except Unavailable:
                pass
            else:
                raise AssertionError("health() passes after unload")
            try:
                await runtime.predict(X[:1])
            except Unavailable:
                pass
            else:
                raise AssertionError("predict() answers after unload")
        finally:
            await executor.close()

    _run(go())


def check_replicas_answer_concurrently(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """Two replicas of a 0.3 s model serve simultaneous requests at the same time (their calls overlap); an
    executor with replica processes serves them from two processes."""
    blobs, reader = make_blobs(workdir)
    notes = workdir / "notes"
    variant = sleeper_variant(blobs, notes, replicas=2)

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader)
            rows = [np.full((1, 3), float(i)) for i in range(4)]
            outs = await asyncio.gather(*(runtime.predict(r) for r in rows))
            assert [np.asarray(o["predict"]).tolist() for o in outs] == [[3.0 * i] for i in range(4)]
            calls = [json.loads(p.read_text()) for p in notes.iterdir()]
            assert len(calls) == 4, calls
            spans = sorted((t0, t1) for _, t0, t1 in calls)
            overlap = any(b0 < a1 for (_, a1), (b0, _) in itertools.pairwise(spans))
            assert overlap, f"no two calls overlapped: {spans} pids {[c[0] for c in calls]}"
            pids = {pid for pid, _, _ in calls}
            if _separate_processes(executor):
                assert len(pids) == 2 and os.getpid() not in pids, pids
            await runtime.unload()
        finally:
            await executor.close()

    _run(go())


def check_adaptive_batching(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """With ``max_batch_size > 1`` simultaneous requests are merged into fewer model calls (each counted once,
    with its size) and every request gets back exactly its own rows."""
    blobs, reader = make_blobs(workdir)
    variant, X, expected = sklearn_variant(blobs, max_batch_size=8, max_wait_ms=50.0)
    sizes: list[int] = []

    async def go() -> None:
        executor = make_executor()
        try:
            runtime = await _loaded(executor, variant, reader, observe_batch=sizes.append)
            starts = [0, 5, 9, 20, 33, 41, 60, 90]
            lengths = [5, 4, 11, 13, 8, 19, 30, 1]
            outs = await asyncio.gather(*(runtime.predict(X[s : s + n]) for s, n in zip(starts, lengths, strict=True)))
            for out, s, n in zip(outs, starts, lengths, strict=True):
                assert np.asarray(out["predict"]).tolist() == expected[s : s + n].tolist()
            assert sum(sizes) == len(starts), sizes  # every request in exactly one counted model call
            assert max(sizes) > 1, f"no request was merged: {sizes}"
            await runtime.unload()
        finally:
            await executor.close()

    _run(go())


def check_new_generation_replaces_the_runtime(
    make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs
) -> None:
    """A new generation (a restart) or new scaling is a new runtime, loaded while the old one serves; retiring the
    old one leaves the new one serving."""
    blobs, reader = make_blobs(workdir)
    variant, X, expected = sklearn_variant(blobs)
    restarted = replace(variant, generation=1)
    autoscaled = replace(restarted, autoscaling=AutoscalingRoute(min_replicas=1, max_replicas=2))

    async def go() -> None:
        executor = make_executor()
        try:
            old = await _loaded(executor, variant, reader)
            for new_variant in (restarted, autoscaled):
                new = await _loaded(executor, new_variant, reader)
                for runtime in (old, new):  # both serve until the old one is retired
                    out = await runtime.predict(X[:3])
                    assert np.asarray(out["predict"]).tolist() == expected[:3].tolist()
                await old.unload()
                new.health()
                out = await new.predict(X[3:6])
                assert np.asarray(out["predict"]).tolist() == expected[3:6].tolist()
                old = new
            await old.unload()
        finally:
            await executor.close()

    _run(go())


EXECUTOR_CHECKS: tuple[Callable[[ExecutorFactory, Path, BlobsFactory], None], ...] = (
    check_load_and_predict,
    check_batch_of_rows,
    check_bad_input_is_a_clear_error,
    check_failed_load_is_a_load_error,
    check_unload_frees_it,
    check_replicas_answer_concurrently,
    check_adaptive_batching,
    check_new_generation_replaces_the_runtime,
)


def check_executor(make_executor: ExecutorFactory, workdir: Path, make_blobs: BlobsFactory = local_blobs) -> None:
    """Run every executor check against the executor built by ``make_executor``, its models in ``make_blobs``."""
    for check in EXECUTOR_CHECKS:
        check(make_executor, workdir / check.__name__, make_blobs)


__all__ = [
    "EXECUTOR_CHECKS",
    "BlobsFactory",
    "ExecutorFactory",
    "check_executor",
    "local_blobs",
    "sklearn_variant",
    "sleeper_variant",
]
