"""Per-request metrics can be switched off (to measure their cost); rare events are counted either way."""

from __future__ import annotations

from mlpilot.serving.metrics import Metrics


def _samples(m: Metrics, name: str) -> float:
    total = 0.0
    for family in m.registry.collect():
        for s in family.samples:
            if s.name == name:
                total += s.value
    return total


def test_per_request_series_are_updated_when_on() -> None:
    m = Metrics()
    vm = m.variant("iris", "v1")
    vm.requests["ok"].inc()
    vm.stages["predict"].observe(0.002)
    m.inflight.inc()
    assert _samples(m, "mlpilot_requests_total") == 1
    assert _samples(m, "mlpilot_request_duration_seconds_count") == 1
    assert _samples(m, "mlpilot_inflight_requests") == 1


def test_off_updates_nothing_per_request_but_still_counts_drops() -> None:
    m = Metrics(per_request=False)
    vm = m.variant("iris", "v1")
    vm.requests["ok"].inc()
    vm.stages["predict"].observe(0.002)
    vm.batch.observe(4)
    m.inflight.inc()
    m.inflight.dec()
    m.log_dropped.inc(3)
    assert _samples(m, "mlpilot_requests_total") == 0
    assert _samples(m, "mlpilot_request_duration_seconds_count") == 0
    assert _samples(m, "mlpilot_log_dropped_total") == 3
    m.forget("iris", "v1")  # nothing was bound: forgetting is still safe
