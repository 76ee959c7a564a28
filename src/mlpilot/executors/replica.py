"""One Ray Serve replica of a variant: the code that runs in a Ray worker process.

Imported only by ``mlpilot.executors.ray`` (when the Ray executor is configured) and by Ray's workers, never by
``import mlpilot``. It imports data-plane and shared modules only: a replica may run on a host without the control
plane's store.

A replica loads its model itself: it reads the bytes by digest from the blob store it was given (the router's
``BlobStore``, pickled with its settings; its digest is verified on read), loads them with the flavor and predicts on
one worker thread, so the replica's event loop stays free for health checks and for collecting the next batch. With
``max_batch_size > 1`` requests are merged by ``@serve.batch`` (an adaptive wait: ``batch_wait_timeout_s`` is
``max_wait_ms``, or 0 — take what is queued — when the variant's wait is adaptive) and split back by row counts.

Answers are plain tuples (``("ok", outputs, info)`` or ``("error", error.to_dict())``) so mlpilot's errors cross the
process boundary as the same classes (``error_from_dict``) rather than as Ray's wrapped exceptions.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpilot.blobs import BlobStore
from mlpilot.errors import InferenceError, LoadError, MlpilotError, Unavailable
from mlpilot.flavors import check_trusted, get_flavor
from mlpilot.flavors.base import reason
from mlpilot.runtimes.batching import count_rows, merge_inputs

with warnings.catch_warnings():  # Ray's own deprecation warnings at import are not ours to fix
    warnings.simplefilter("ignore")
    from ray import serve


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a replica needs to load and serve one model version (pickled into the replica)."""

    deployment: str
    variant: str
    digest: str
    flavor: str
    flavor_metadata: Mapping[str, Any]
    max_batch_size: int
    max_wait_ms: float | None
    blobs: BlobStore


def _split(outputs: dict[str, np.ndarray], counts: list[int]) -> list[dict[str, np.ndarray]] | None:
    """Outputs per request, or None when the model did not answer one row per input row."""
    total = sum(counts)
    if any(np.ndim(a) == 0 or len(a) != total for a in outputs.values()):
        return None
    out, start = [], 0
    for n in counts:
        out.append({k: v[start : start + n] for k, v in outputs.items()})
        start += n
    return out


class VariantReplica:
    """A Ray Serve deployment class (wrapped with ``serve.deployment`` by the Ray executor)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.replica_id = _replica_id()
        self._pool = ThreadPoolExecutor(1, "mlpilot-replica")
        self._unbatchable = False
        try:
            flavor = get_flavor(spec.flavor)
            # before a byte is read: a format that runs code needs its version's trust record
            check_trusted(flavor, spec.flavor_metadata, f"the model of {spec.deployment}/{spec.variant}")
            self._model = flavor.load(spec.blobs.open_verified(spec.digest), spec.flavor_metadata)
        except MlpilotError:
            raise
        except Exception as exc:
            raise LoadError(f"the model failed to load in its replica: {reason(exc)}") from exc
        if spec.max_batch_size > 1:
            batcher: Any = self._predict_many
            batcher.set_max_batch_size(spec.max_batch_size)
            batcher.set_batch_wait_timeout_s((spec.max_wait_ms or 0.0) / 1000.0)

    # ---------------------------------------------------------------------------------------------- serving

    def _call(self, inputs: Any) -> dict[str, np.ndarray]:
        try:
            return self._model.predict(inputs)
        except MlpilotError:
            raise
        except Exception as exc:  # the user's model raised: an inference error, not a server bug
            raise InferenceError(f"the model failed: {type(exc).__name__}: {exc}") from exc

    async def _predict(self, inputs: Any) -> dict[str, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, inputs)

    @serve.batch(max_batch_size=2, batch_wait_timeout_s=0.0)
    async def _predict_many(self, batch: list[Any]) -> list[Any]:
        """Merged requests in one model call; each answer is its outputs and the batch size (on the first answer
        of a batch only, 0 on the others, so the router counts each model call once), or its error."""
        n = len(batch)
        try:
            if n > 1 and not self._unbatchable:
                merged = await self._predict(merge_inputs(batch))
                parts = _split(merged, [count_rows(b) for b in batch])
                if parts is not None:
                    return [(p, n if i == 0 else 0) for i, p in enumerate(parts)]
                self._unbatchable = True  # not one output row per input row: one request at a time from now on
            results: list[Any] = []
            for b in batch:
                try:
                    results.append((await self._predict(b), 1))
                except MlpilotError as exc:
                    results.append(exc)
            return results
        except MlpilotError as exc:  # a merged call failed: every request of the batch gets the error
            return [exc] * n

    async def __call__(self, inputs: Any) -> tuple[Any, ...]:
        t0 = time.perf_counter()
        try:
            if self.spec.max_batch_size > 1:
                answer = await self._predict_many(inputs)
                if isinstance(answer, MlpilotError):
                    raise answer
                outputs, size = answer
            else:
                outputs, size = await self._predict(inputs), 1
        except MlpilotError as exc:
            return ("error", exc.to_dict())
        except Exception as exc:  # never let a Ray-wrapped exception reach the router
            return ("error", InferenceError(f"the replica failed: {type(exc).__name__}: {exc}").to_dict())
        return ("ok", outputs, {"replica": self.replica_id, "model_s": time.perf_counter() - t0, "batch": size})

    def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising makes Serve replace the replica."""
        if getattr(self, "_model", None) is None:
            raise Unavailable(f"replica {self.replica_id} cannot serve: its model is not loaded")

    def info(self) -> dict[str, Any]:
        """Who this replica is (tests and operators): its id and process."""
        return {"replica": self.replica_id, "pid": os.getpid(), "host": socket.gethostname()}

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a Serve replica (unit use): the process identifies it
        return f"{socket.gethostname()}:{os.getpid()}"
