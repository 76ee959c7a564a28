"""A runtime over a model flavor: loads from a verified blob (digest checked on every load, and a format that runs
code only with a trust record), predicts on a thread pool (never the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np

from mlpilot.blobs import BlobStore
from mlpilot.errors import InferenceError, MlpilotError, Unavailable
from mlpilot.flavors import check_trusted, get_flavor
from mlpilot.flavors.base import LoadedModel
from mlpilot.runtimes.base import Runtime, RuntimeTags


class FlavorRuntime(Runtime):
    """Serve one model version.

    Args:
        blobs: where the model bytes are (verified against ``digest`` at load).
        executor: where sync ``predict`` runs.
        label: names the model in errors (``NAME:VERSION``).
    """

    def __init__(
        self,
        blobs: BlobStore,
        digest: str,
        flavor: str,
        flavor_metadata: Mapping[str, Any],
        executor: Executor,
        columnar: bool = False,
        label: str = "",
    ) -> None:
        self._blobs = blobs
        self._digest = digest
        self._flavor = get_flavor(flavor)
        self._meta = dict(flavor_metadata)
        self._executor = executor
        self._label = label or f"model {digest}"
        self._model: LoadedModel | None = None
        self._predict: Callable[[Any], dict[str, np.ndarray]] | None = None
        self.tags = RuntimeTags(columnar=columnar)

    async def load(self) -> None:
        loop = asyncio.get_running_loop()

        def _load() -> LoadedModel:
            check_trusted(self._flavor, self._meta, self._label)  # before a byte is read
            return self._flavor.load(self._blobs.open_verified(self._digest), self._meta)

        self._model = await loop.run_in_executor(self._executor, _load)
        self._predict = self._model.predict

    async def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        fn = self._predict
        if fn is None:
            raise Unavailable("the model is not loaded")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, inputs)
        except MlpilotError:
            raise
        except Exception as exc:  # the user's model raised: an inference error, not a server bug
            raise InferenceError(f"the model failed: {type(exc).__name__}: {exc}") from exc

    def predict_sync(self, inputs: Any) -> dict[str, np.ndarray]:
        """For callers already off the event loop (the batcher's worker)."""
        if self._predict is None:
            raise Unavailable("the model is not loaded")
        return self._predict(inputs)

    async def unload(self) -> None:
        self._model = self._predict = None

    def health(self) -> None:
        if self._model is None:
            raise Unavailable("the model is not loaded")
