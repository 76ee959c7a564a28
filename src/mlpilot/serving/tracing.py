"""OpenTelemetry spans for inference requests, recorded after the fact from stage timestamps.

One root span ``infer <deployment>`` per traced request with a child span per stage (``decode``, ``route``,
``predict``, ``log``, ``encode``). Spans are built from the timestamps the request path already takes, so
tracing adds no work to the request path beyond creating the spans; the exporter (a batch processor) sends them
off the request path. The tracer provider is injected by the composition root; nothing here touches global
OpenTelemetry state.

**Sampling** is decided here, before any span object exists (head sampling, W3C Trace Context): a request with a
``traceparent`` header continues the caller's trace and is traced when the caller sampled it; other requests get
a new trace and are traced with probability ``sample_ratio`` (a non-sampled request costs one random number and
no span objects). Every request gets a trace id — it is written to the request log whether or not its spans are
recorded.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_BOUND = 1 << 64


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a W3C ``traceparent`` header, or ``None`` if it is invalid."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m.group(1) == "ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, bool(int(m.group(4), 16) & 1)


class RequestTracer:
    """Builds the spans of one request from ``perf_counter`` stage boundaries.

    Args:
        tracer_provider: an OpenTelemetry SDK ``TracerProvider`` (its own sampler should be always-on: the
            decision is made here).
        sample_ratio: share of requests without a sampled parent that are traced, in ``[0, 1]``.
    """

    def __init__(self, tracer_provider: Any, sample_ratio: float = 1.0) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError("sample_ratio must be in [0, 1]")
        self._tracer = tracer_provider.get_tracer("mlpilot.serving")
        self._bound = int(sample_ratio * _BOUND)
        # perf_counter -> epoch nanoseconds, fixed once (monotonic within the process)
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    def _ns(self, t: float) -> int:
        return self._offset_ns + int(t * 1e9)

    def begin(
        self, deployment: str, request_id: str, t0: float, traceparent: str | None = None
    ) -> tuple[Any | None, str]:
        """Open the root span at ``t0`` (a ``perf_counter`` value) if the request is sampled.

        Returns ``(root span or None, trace id as 32 hex digits)``.
        """
        parent = parse_traceparent(traceparent)
        if parent is None:
            trace_id = int.from_bytes(os.urandom(16), "big") or 1
            if (trace_id & (_BOUND - 1)) >= self._bound:
                return None, format(trace_id, "032x")  # not sampled: no span object at all
            context = None  # a new trace: the SDK makes the root and its id
        else:
            trace_id, span_id, sampled = parent
            if not sampled:
                return None, format(trace_id, "032x")
            from opentelemetry import trace

            remote = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(1))
            context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        from opentelemetry import trace

        root = self._tracer.start_span(
            f"infer {deployment}",
            context=context,
            start_time=self._ns(t0),
            kind=trace.SpanKind.SERVER,
            attributes={"mlpilot.deployment": deployment, "mlpilot.request_id": request_id},
        )
        return root, format(root.get_span_context().trace_id, "032x")

    def finish(self, root: Any, variant: str, model: str, stages: list[tuple[Any, ...]], status: str) -> None:
        """Add a child span per stage and end the root at the last stage's end.

        A stage is ``(name, t0, t1)`` or ``(name, t0, t1, attributes)`` (LLM apps' stages carry the OpenTelemetry
        GenAI attributes: ``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.*_tokens`` …).
        """
        from opentelemetry import trace

        root.set_attributes({"mlpilot.variant": variant, "mlpilot.model": model, "mlpilot.status": status})
        ctx = trace.set_span_in_context(root)
        for stage in stages:
            name, t0, t1 = stage[0], stage[1], stage[2]
            attrs = {k: v for k, v in (stage[3] if len(stage) > 3 else {}).items() if v is not None}
            span = self._tracer.start_span(name, context=ctx, start_time=self._ns(t0), attributes=attrs or None)
            span.end(end_time=self._ns(t1))
        root.end(end_time=self._ns(max(s[2] for s in stages)))
