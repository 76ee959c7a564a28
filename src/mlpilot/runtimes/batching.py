"""Adaptive batching as a wrapper runtime: concurrent requests are merged into one ``predict`` call.

The batcher is adaptive: while the model is busy, arriving requests queue up and are all taken by the next call
(up to ``max_batch_size``), so batches grow with load and a lone request is never held longer than
``max_wait_ms``. Outputs are split back by row counts. A model whose outputs cannot be split (not one row per
input row) is detected on its first merged batch and served one request at a time from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpilot.errors import Unavailable
from mlpilot.runtimes.base import Runtime, RuntimeTags

_Item = tuple[Any, int, "asyncio.Future[dict[str, np.ndarray]]"]


def count_rows(inputs: Any) -> int:
    """Rows of one request's inputs (an array, a frame, or a dict of equal-length columns)."""
    if isinstance(inputs, dict):
        return len(next(iter(inputs.values())))
    return len(inputs)


def merge_inputs(parts: list[Any]) -> Any:
    """Requests' inputs stacked into one batch, in order."""
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in first}
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


_SETTLE_PASSES = 4
_AUTO_WAIT_FRACTION = 0.3
_AUTO_WAIT_CAP_S = 0.005


class _Unsplittable(Exception):
    pass


class BatchingRuntime(Runtime):
    """Wrap ``inner`` with adaptive batching.

    Args:
        max_batch_size: most requests merged into one call.
        max_wait_ms: longest time the first request of a batch waits for company; ``None`` (default) adapts it:
            no wait without concurrency, else 30% of the recent model-call time (at most 5 ms).
        observe_batch: called with each batch's size (for metrics); must be cheap.
    """

    def __init__(
        self,
        inner: Runtime,
        max_batch_size: int = 32,
        max_wait_ms: float | None = None,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.max_batch_size = max_batch_size
        self.max_wait_s = None if max_wait_ms is None else max_wait_ms / 1000.0
        self._ewma_call_s = 0.0
        self._last_batch = 0
        self.tags = RuntimeTags(batchable=True, columnar=inner.tags.columnar)
        self._observe = observe_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._unbatchable = False

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def load(self) -> None:
        await self.inner.load()
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="mlpilot-batcher")

    async def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        if self._queue is None:
            raise Unavailable("the model is not loaded")
        fut: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((inputs, count_rows(inputs), fut))
        return await fut

    async def _collect(self, queue: asyncio.Queue[_Item]) -> list[_Item]:
        batch = [await queue.get()]
        # Let requests whose bytes already arrived reach the queue: each pass through the event loop polls the
        # sockets and runs ready handlers. Stop as soon as a pass brings nothing new (costs microseconds).
        for n in range(_SETTLE_PASSES):
            before = queue.qsize()
            await asyncio.sleep(0)
            if n >= 1 and queue.qsize() == before:
                break
        while len(batch) < self.max_batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        wait_s = self._wait_budget()
        if len(batch) < self.max_batch_size and wait_s > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
        return batch

    def _wait_budget(self) -> float:
        if self.max_wait_s is not None:
            return self.max_wait_s
        # Adaptive: only under concurrency (the last call merged requests), wait a fraction of a model call for
        # the clients just answered to come back, so batches merge instead of alternating in half-full groups.
        # A slow model (a forest, ~2 ms) waits ~0.6 ms; a fast one (~0.1 ms) practically never.
        if self._last_batch <= 1:
            return 0.0
        return min(_AUTO_WAIT_CAP_S, _AUTO_WAIT_FRACTION * self._ewma_call_s)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = await self._collect(queue)
            batch = [b for b in batch if not b[2].done()]  # cancelled by a client that went away
            if not batch:
                continue
            if self._observe is not None:
                self._observe(len(batch))
            self._last_batch = len(batch)
            started = time.perf_counter()
            try:
                if len(batch) == 1 or self._unbatchable:
                    results = [await self.inner.predict(b[0]) for b in batch]
                else:
                    try:
                        results = self._split(await self.inner.predict(merge_inputs([b[0] for b in batch])), batch)
                    except _Unsplittable:
                        # Not one output row per input row: serve this model one request at a time from now on.
                        self._unbatchable = True
                        results = [await self.inner.predict(b[0]) for b in batch]
            except Exception as exc:  # delivered to every waiting request of this batch
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._ewma_call_s = 0.8 * self._ewma_call_s + 0.2 * (time.perf_counter() - started)
            for (_, _, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    @staticmethod
    def _split(outputs: dict[str, np.ndarray], batch: list[_Item]) -> list[dict[str, np.ndarray]]:
        total = sum(n for _, n, _ in batch)
        for arr in outputs.values():
            if np.ndim(arr) == 0 or len(arr) != total:
                raise _Unsplittable
        results = []
        start = 0
        for _, n, _ in batch:
            results.append({k: v[start : start + n] for k, v in outputs.items()})
            start += n
        return results

    async def unload(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._queue is not None:
            while not self._queue.empty():
                _, _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(Unavailable("the model was unloaded"))
        await self.inner.unload()

    def health(self) -> None:
        if self._worker is None or self._worker.done():
            raise Unavailable("the batcher is not running")
        self.inner.health()
