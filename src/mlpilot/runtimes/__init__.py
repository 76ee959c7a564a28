"""Runtimes: the serving contract (load, predict, unload, health) over flavors, plus adaptive batching."""

from mlpilot.runtimes.base import Runtime, RuntimeTags
from mlpilot.runtimes.batching import BatchingRuntime
from mlpilot.runtimes.flavor import FlavorRuntime

__all__ = ["BatchingRuntime", "FlavorRuntime", "Runtime", "RuntimeTags"]
