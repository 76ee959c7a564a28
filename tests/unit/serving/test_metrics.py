"""The data plane's metrics: the per-request series render as Prometheus text equal to what prometheus_client's
own Counter/Histogram would give; they can be switched off (to measure their cost); rare events always count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mlpilot.serving.metrics import LATENCY_BUCKETS, Metrics


def _samples(m: Metrics, name: str) -> float:
    total = 0.0
    for family in m.registry.collect():
        for s in family.samples:
            if s.name == name:
                total += s.value
    return total


def test_rendering_matches_prometheus_client() -> None:
    values = [0.0001, 0.0005, 0.0007, 0.002, 0.004, 0.03, 0.3, 11.0, 0.0005]
    m = Metrics()
    vm = m.variant("iris", "v1")
    ref = CollectorRegistry()
    hist = Histogram(
        "mlpilot_request_duration_seconds",
        "Latency per stage",
        ["deployment", "variant", "stage"],
        buckets=LATENCY_BUCKETS,
        registry=ref,
    )
    count = Counter(
        "mlpilot_requests", "Inference requests by outcome", ["deployment", "variant", "status"], registry=ref
    )
    for v in values:
        vm.stages["predict"].observe(v)
        hist.labels("iris", "v1", "predict").observe(v)
    for _ in range(3):
        vm.requests["ok"].inc()
        count.labels("iris", "v1", "ok").inc()
    ours = generate_latest(m.registry).decode().splitlines()
    theirs = [ln for ln in generate_latest(ref).decode().splitlines() if not ln.startswith("mlpilot_requests_created")]
    theirs = [ln for ln in theirs if "_created" not in ln]
    predict = [ln for ln in ours if 'stage="predict"' in ln]
    assert predict == [ln for ln in theirs if 'stage="predict"' in ln]
    assert 'mlpilot_requests_total{deployment="iris",status="ok",variant="v1"} 3.0' in ours
    assert _samples(m, "mlpilot_request_duration_seconds_count") == len(values) * 1  # other stages: 0


def test_per_request_series_are_updated_when_on() -> None:
    m = Metrics()
    vm = m.variant("iris", "v1")
    vm.requests["ok"].inc()
    vm.stages["predict"].observe(0.002)
    vm.batch.observe(4)
    m.inflight.inc()
    assert _samples(m, "mlpilot_requests_total") == 1
    assert _samples(m, "mlpilot_batch_size_sum") == 4
    assert _samples(m, "mlpilot_inflight_requests") == 1
    m.forget("iris", "v1")
    assert _samples(m, "mlpilot_requests_total") == 0  # an unloaded variant's series are gone


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
    m.forget("iris", "v1")


def test_gc_pauses_are_measured_by_generation_while_watched() -> None:
    import gc

    m = Metrics()
    m.watch_gc()
    try:
        gc.collect()  # a full collection
        gc.collect(0)
        assert _samples(m, "mlpilot_gc_pause_seconds_count") >= 2
        full = [
            s
            for family in m.registry.collect()
            for s in family.samples
            if s.name == "mlpilot_gc_pause_seconds_count" and s.labels == {"generation": "2"}
        ]
        assert full and full[0].value >= 1
        assert _samples(m, "mlpilot_gc_pause_seconds_sum") > 0
    finally:
        m.unwatch_gc()
    before = _samples(m, "mlpilot_gc_pause_seconds_count")
    gc.collect()
    assert _samples(m, "mlpilot_gc_pause_seconds_count") == before  # no longer watched


def test_gc_pauses_are_not_reported_unless_watched() -> None:
    m = Metrics()
    names = {s.name for family in m.registry.collect() for s in family.samples}
    assert not any(n.startswith("mlpilot_gc_") for n in names)
