"""OpenTelemetry spans for inference requests, recorded after the fact from stage timestamps.

One root span ``infer <deployment>`` per request with a child span per stage (``decode``, ``route``, ``predict``,
``encode``). Spans are built from the timestamps the request path already takes, so tracing adds no work to the
request path beyond creating the spans; the exporter (a batch processor) sends them off the request path. The
tracer provider is injected by the composition root; nothing here touches global OpenTelemetry state.
"""

from __future__ import annotations

import time
from typing import Any


class RequestTracer:
    """Builds the spans of one request from ``perf_counter`` stage boundaries."""

    def __init__(self, tracer_provider: Any) -> None:
        self._tracer = tracer_provider.get_tracer("mlpilot.serving")
        # perf_counter -> epoch nanoseconds, fixed once (monotonic within the process)
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    def _ns(self, t: float) -> int:
        return self._offset_ns + int(t * 1e9)

    def begin(self, deployment: str, request_id: str, t0: float) -> tuple[Any, str]:
        """Open the root span at ``t0`` (a ``perf_counter`` value); returns it and its trace id (hex)."""
        from opentelemetry import trace

        root = self._tracer.start_span(
            f"infer {deployment}",
            start_time=self._ns(t0),
            kind=trace.SpanKind.SERVER,
            attributes={"mlpilot.deployment": deployment, "mlpilot.request_id": request_id},
        )
        return root, format(root.get_span_context().trace_id, "032x")

    def finish(self, root: Any, variant: str, model: str, stages: list[tuple[str, float, float]], status: str) -> None:
        """Add a child span per stage and end the root at the last stage's end."""
        from opentelemetry import trace

        root.set_attributes({"mlpilot.variant": variant, "mlpilot.model": model, "mlpilot.status": status})
        ctx = trace.set_span_in_context(root)
        for name, t0, t1 in stages:
            self._tracer.start_span(name, context=ctx, start_time=self._ns(t0)).end(end_time=self._ns(t1))
        root.end(end_time=self._ns(stages[-1][2]))
