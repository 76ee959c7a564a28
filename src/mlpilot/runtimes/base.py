"""The runtime contract of the data plane.

``load()`` prepares the model, ``predict(inputs)`` returns named output batches, ``unload()`` frees it,
``health()`` raises when the runtime cannot serve. Failures raise (``LoadError``, ``InferenceError``); nothing
returns ``False``. Sync user code never runs on the event loop: runtimes hand it to an executor.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RuntimeTags:
    """Capabilities, declared (scikit-learn-style tags) rather than discovered with if-chains."""

    batchable: bool = True  # predict accepts a batch of rows and returns one output row per input row
    columnar: bool = False  # inputs are table columns (a DataFrame)
    stateful: bool = False


class Runtime(abc.ABC):
    tags: RuntimeTags = RuntimeTags()

    @abc.abstractmethod
    async def load(self) -> None: ...

    @abc.abstractmethod
    async def predict(self, inputs: Any) -> dict[str, np.ndarray]: ...

    async def unload(self) -> None:
        return None

    def health(self) -> None:
        """Raise ``Unavailable`` if the runtime cannot serve now."""
        return None
