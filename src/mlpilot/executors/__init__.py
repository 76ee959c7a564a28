"""Executors: where a variant's runtime runs. The data plane (router, split, shadows, quarantine, request log) stays
in front of every executor; an executor only turns a :class:`~mlpilot.serving.snapshot.VariantRoute` into a
:class:`~mlpilot.runtimes.Runtime`.

* :class:`InProcessExecutor` (default): runtimes in the server process (a thread pool, adaptive batching).
* ``RayExecutor`` (``mlpilot.executors.ray``, ``pip install "mlpilot[ray]"``): each variant is a Ray Serve
  application with replicas or autoscaling; imported only when configured, so ``import mlpilot`` never imports Ray.
"""

from mlpilot.executors.base import Executor
from mlpilot.executors.inprocess import InProcessExecutor

__all__ = ["Executor", "InProcessExecutor"]
