"""The executor contract: build the runtime of one variant; release everything at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mlpilot.blobs import BlobStore
from mlpilot.runtimes import Runtime
from mlpilot.serving.snapshot import VariantRoute


class Executor(Protocol):
    """Turns variants of the routing snapshot into runtimes.

    ``runtime_for`` only builds: the data plane calls ``load()`` on the result (before it switches to a new snapshot)
    and ``unload()`` when the variant is retired. ``close()`` releases what the executor itself holds (thread pools,
    a Ray connection) after every runtime was unloaded.
    """

    kind: str  # "inprocess", "ray"

    def runtime_for(
        self,
        deployment: str,
        variant: VariantRoute,
        blobs: BlobStore,
        *,
        observe_batch: Callable[[int], None] | None = None,
    ) -> Runtime:
        """A runtime (not loaded yet) for ``variant`` of ``deployment``; ``observe_batch`` is called with the size
        of each merged model call (metrics)."""
        ...

    def reload_key(self, variant: VariantRoute) -> tuple[Any, ...]:
        """The variant settings beyond the model and batching whose change needs a new runtime (the data plane adds
        them to a variant's identity). In-process: none (one runtime per variant whatever ``replicas`` says)."""
        ...

    async def close(self) -> None: ...
