"""The in-process executor: runtimes in the server process (what the data plane has always done).

Sync model code runs on a thread pool (never on the event loop); ``max_batch_size > 1`` wraps the runtime in
:class:`~mlpilot.runtimes.BatchingRuntime`. LLM apps get an :class:`~mlpilot.runtimes.app.AppRuntime` on the same
pool. ``replicas`` and ``autoscaling`` are ignored: one process serves one copy of each variant.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor as ThreadExecutor
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlpilot.blobs import BlobStore
from mlpilot.protocol.signature import Signature
from mlpilot.runtimes import BatchingRuntime, FlavorRuntime, Runtime
from mlpilot.runtimes.app import APP_FLAVOR, AppRuntime
from mlpilot.serving.snapshot import VariantRoute


class InProcessExecutor:
    """Args:
    pool: runs sync model code (default: a thread pool with one thread per core, at least 2).
    cache_dir: where LLM-app indexes are unpacked (default ``<blob root>/../cache``).
    """

    kind = "inprocess"

    def __init__(self, pool: ThreadExecutor | None = None, cache_dir: Path | None = None) -> None:
        self._own_pool = pool is None
        self.pool = pool or ThreadPoolExecutor(max(2, (os.cpu_count() or 2)), "mlpilot-predict")
        self.cache_dir = cache_dir

    def runtime_for(
        self,
        deployment: str,
        variant: VariantRoute,
        blobs: BlobStore,
        *,
        observe_batch: Callable[[int], None] | None = None,
    ) -> Runtime:
        m = variant.model
        if m.flavor == APP_FLAVOR:
            cache = self.cache_dir if self.cache_dir is not None else blobs.root.parent / "cache"
            return AppRuntime(blobs, m.flavor_metadata, self.pool, cache / "indexes")
        sig = Signature.from_dict(m.signature) if m.signature else None
        runtime: Runtime = FlavorRuntime(
            blobs,
            m.digest,
            m.flavor,
            m.flavor_metadata,
            self.pool,
            columnar=bool(sig and sig.columnar),
            label=f"model {m.name}:{m.version}",
        )
        if variant.max_batch_size > 1:
            runtime = BatchingRuntime(runtime, variant.max_batch_size, variant.max_wait_ms, observe_batch=observe_batch)
        return runtime

    def reload_key(self, variant: VariantRoute) -> tuple[Any, ...]:
        return ()

    async def close(self) -> None:
        if self._own_pool and isinstance(self.pool, ThreadPoolExecutor):
            self.pool.shutdown(wait=False)
