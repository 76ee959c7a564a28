"""Adaptive batching over a fake inner runtime (pure logic: merging, splitting, errors, waiting)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InferenceError, Unavailable
from mlpilot.runtimes import BatchingRuntime, Runtime


class Recorder(Runtime):
    def __init__(self, delay: float = 0.01, fail: bool = False, scalar: bool = False) -> None:
        self.calls: list[int] = []
        self.delay, self.fail, self.scalar = delay, fail, scalar

    async def load(self) -> None:
        return None

    async def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        self.calls.append(len(inputs))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise InferenceError("boom")
        x = np.asarray(inputs, dtype=float)
        if self.scalar:
            return {"y": np.float64(1.0)}  # type: ignore[dict-item]
        return {"y": x.sum(axis=1), "z": x * 2}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_are_merged_and_split_back() -> None:
    async def main() -> tuple[list[dict[str, np.ndarray]], list[int], list[int]]:
        inner = Recorder()
        sizes: list[int] = []
        b = BatchingRuntime(inner, max_batch_size=8, max_wait_ms=0, observe_batch=sizes.append)
        await b.load()
        rows = [np.full((1, 3), i, dtype=float) for i in range(20)]
        out = await asyncio.gather(*(b.predict(r) for r in rows))
        await b.unload()
        return out, inner.calls, sizes

    out, calls, sizes = run(main())
    for i, o in enumerate(out):
        assert o["y"].tolist() == [3.0 * i] and o["z"].shape == (1, 3)
    assert sum(calls) == 20 and max(calls) <= 8 and len(calls) < 20  # merged, bounded
    assert sum(sizes) == 20


def test_max_wait_gathers_stragglers() -> None:
    async def main() -> list[int]:
        inner = Recorder(delay=0)
        b = BatchingRuntime(inner, max_batch_size=4, max_wait_ms=50)
        await b.load()

        async def later(i: int) -> dict[str, np.ndarray]:
            await asyncio.sleep(0.005 * i)
            return await b.predict(np.ones((1, 2)))

        await asyncio.gather(*(later(i) for i in range(4)))
        await b.unload()
        return inner.calls

    assert run(main()) == [4]


def test_dataframes_merge() -> None:
    async def main() -> list[dict[str, np.ndarray]]:
        class Frames(Recorder):
            async def predict(self, inputs: Any) -> dict[str, np.ndarray]:
                assert isinstance(inputs, pd.DataFrame)
                return {"y": inputs["a"].to_numpy() * 10}

        b = BatchingRuntime(Frames(), max_batch_size=4)
        await b.load()
        out = await asyncio.gather(*(b.predict(pd.DataFrame({"a": [i, i]})) for i in range(3)))
        await b.unload()
        return out

    assert [o["y"].tolist() for o in run(main())] == [[0, 0], [10, 10], [20, 20]]


def test_batch_failure_reaches_every_request() -> None:
    async def main() -> list[Any]:
        b = BatchingRuntime(Recorder(fail=True), max_batch_size=4)
        await b.load()
        res = await asyncio.gather(*(b.predict(np.ones((1, 2))) for _ in range(4)), return_exceptions=True)
        await b.unload()
        return res

    res = run(main())
    assert len(res) == 4 and all(isinstance(r, InferenceError) for r in res)


def test_unbatchable_model_falls_back_to_single_requests() -> None:
    async def main() -> tuple[list[Any], list[int]]:
        inner = Recorder(delay=0.001, scalar=True)
        b = BatchingRuntime(inner, max_batch_size=4)
        await b.load()
        res = await asyncio.gather(*(b.predict(np.ones((1, 2))) for _ in range(4)))
        res += await asyncio.gather(*(b.predict(np.ones((1, 2))) for _ in range(4)))
        await b.unload()
        return res, inner.calls

    res, calls = run(main())
    assert all(float(r["y"]) == 1.0 for r in res)
    assert calls == [4, 1, 1, 1, 1, 1, 1, 1, 1]  # one merged try, then one request at a time


def test_predict_before_load_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        run(BatchingRuntime(Recorder()).predict(np.ones((1, 2))))
