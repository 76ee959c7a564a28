"""Scheduled monitors on the virtual clock: defaults, time series, windows, segments, references, bad input."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.records import MonitorKind, MonitorSpec, MonitorStatus
from tests.integration.monitors.conftest import World, shifted


def test_defaults_are_created_on_deploy(world: World) -> None:
    p = world.platform
    mons = {m.name: m for m in p.monitors.list_monitors("iris")}
    assert set(mons) == {"traffic", "drift"}
    assert mons["drift"].spec.kind is MonitorKind.DRIFT and mons["drift"].spec.reference == "bound"
    assert mons["traffic"].next_run == world.clock.now() + timedelta(minutes=5)
    assert [s.name for s in p.store.list_slos("iris")] == ["availability"]
    actions = [e.action for e in p.store.list_events(subject="monitor:iris/*")]
    assert actions.count("monitor.created") == 2
    # a second deployment revision does not add more
    p.deployments.deploy("iris", "iris:1", "tester", variant="again")
    assert len(p.monitors.list_monitors("iris")) == 2


def test_scheduled_drift_time_series_detects_the_shift(world: World) -> None:
    p, X = world.platform, world.X
    for _ in range(4):  # an hour of normal traffic, ticking as the server would
        world.log(X.sample(60, random_state=len(p.monitors.results("iris", "drift"))), minutes=15)
        p.monitors.tick()
    normal = p.monitors.results("iris", "drift")
    assert [r.status for r in normal] == [MonitorStatus.OK] * 4
    assert all(r.detail["reference"] == world.ref for r in normal)
    world.log(shifted(X, 1), minutes=60)  # an hour of traffic with one feature shifted
    report = p.monitors.tick()
    drift = [r for r in report.results if r.monitor == "drift"]
    assert len(drift) == 1 and drift[0].status is MonitorStatus.ALERT
    flagged = {f["feature"] for f in drift[0].detail["features"] if f["is_drift"]}
    assert "petal_width" in flagged and "sepal_width" not in flagged
    assert drift[0].value == pytest.approx(len(flagged) / 4)
    assert "petal_width" in drift[0].message
    series = p.monitors.results("iris", "drift")
    assert [r.ts for r in series] == sorted(r.ts for r in series) and len(series) == 5
    assert p.monitors.get("iris", "drift").last_status == "alert"
    assert [e.action for e in p.store.list_events(subject="monitor:iris/drift", action="monitor.alert")] == [
        "monitor.alert"
    ]


def test_missed_runs_are_skipped_not_replayed(world: World) -> None:
    p = world.platform
    world.clock.advance(3 * 3600)
    report = p.monitors.tick()
    assert sorted(r.monitor for r in report.results) == ["drift", "traffic"]
    assert p.monitors.get("iris", "traffic").next_run == world.clock.now() + timedelta(minutes=5)
    assert p.monitors.tick().results == []  # nothing due right after


def test_empty_window_is_recorded_as_no_data(world: World) -> None:
    p = world.platform
    result = p.monitors.run("iris", "drift")
    assert result.status is MonitorStatus.NO_DATA and result.value is None and result.rows == 0
    assert "fewer than 30" in result.message
    assert p.monitors.results("iris", "drift")[-1].id == result.id


def test_traffic_monitor_counts_requests_errors_and_latency(world: World) -> None:
    p = world.platform
    world.log(world.X, minutes=30, batch=3, error_every=10)  # 50 requests, 5 failed
    res = p.monitors.run("iris", "traffic")
    assert res.detail["requests"] == 50 and res.detail["errors"] == 5
    assert res.value == pytest.approx(0.1) and res.status is MonitorStatus.ALERT  # above the default 5%
    assert res.detail["p99_ms"] == pytest.approx(2.0)
    assert res.detail["top_errors"] == {"InferenceError": 5}


def test_count_window_takes_the_newest_rows(world: World) -> None:
    p = world.platform
    spec = MonitorSpec(kind=MonitorKind.DRIFT, window_rows=40, window=timedelta(days=1), every=timedelta(hours=1))
    p.monitors.create("iris", "last40", spec, "tester")
    world.log(world.X, minutes=30)
    world.log(shifted(world.X, 2), minutes=10)  # the newest rows are all shifted
    res = p.monitors.run("iris", "last40")
    assert res.rows == 40 and res.status is MonitorStatus.ALERT


def test_segment_monitor_sees_only_its_segment(world: World) -> None:
    p = world.platform
    world.log(world.X.sample(150, random_state=3), minutes=20, sticky="us", advance=False)
    world.log(shifted(world.X, 4), minutes=20, sticky="eu")
    for seg in ("eu", "us"):
        p.monitors.create("iris", f"drift-{seg}", MonitorSpec(kind=MonitorKind.DRIFT, segment={"sticky_key": seg}), "t")
    eu, us = p.monitors.run("iris", "drift-eu"), p.monitors.run("iris", "drift-us")
    assert (eu.status, eu.rows) == (MonitorStatus.ALERT, 150)
    assert (us.status, us.rows) == (MonitorStatus.OK, 150)


def test_previous_window_reference_and_prediction_drift(world: World) -> None:
    p = world.platform
    spec = MonitorSpec(kind=MonitorKind.DRIFT, reference="previous:1h", params={"on": "outputs"})
    p.monitors.create("iris", "pred-drift", spec, "t")
    setosa = world.X[world.y == 0]
    world.log(world.X.sample(150, random_state=5), minutes=60)
    world.log(pd.concat([setosa] * 3, ignore_index=True), minutes=60)  # only one class predicted now
    res = p.monitors.run("iris", "pred-drift")
    assert res.status is MonitorStatus.ALERT and res.detail["reference"].startswith("traffic ")
    assert any(f["feature"] == "predict" and f["is_drift"] for f in res.detail["features"])


def test_prediction_drift_against_the_bound_reference_runs_the_model(world: World) -> None:
    p = world.platform
    p.monitors.create("iris", "pred", MonitorSpec(kind=MonitorKind.DRIFT, params={"on": "outputs"}), "t")
    world.log(world.X.sample(150, random_state=6), minutes=30)
    res = p.monitors.run("iris", "pred")
    assert res.status is MonitorStatus.OK, res.message
    assert {f["feature"] for f in res.detail["features"]} >= {"predict", "predict_proba[0]"}


def test_performance_with_late_labels_and_label_free_estimate(world: World) -> None:
    p = world.platform
    p.monitors.create("iris", "accuracy", MonitorSpec(kind=MonitorKind.PERFORMANCE, min_rows=20), "t")
    p.monitors.create("iris", "estimate", MonitorSpec(kind=MonitorKind.ESTIMATED_PERFORMANCE), "t")
    frame = world.X.sample(150, random_state=7)
    ids = world.log(frame, minutes=30, batch=1)
    waiting = p.monitors.run("iris", "accuracy")
    assert waiting.status is MonitorStatus.NO_DATA and "0 of 150 predictions" in waiting.message
    truth = world.y.loc[frame.index].to_numpy()
    items = [{"request_id": rid, "label": int(lbl)} for rid, lbl in zip(ids[:100], truth[:100], strict=True)]
    p.feedback.submit("iris", items, "labeller")
    realized = p.monitors.run("iris", "accuracy")
    expected = float((world.model.predict(frame.iloc[:100]) == truth[:100]).mean())
    assert realized.status is MonitorStatus.OK
    assert realized.value == pytest.approx(expected)
    assert realized.detail["labelled"] == 100 and realized.detail["label_coverage"] == pytest.approx(100 / 150)
    estimate = p.monitors.run("iris", "estimate")
    assert estimate.status in (MonitorStatus.OK, MonitorStatus.ALERT) and estimate.value is not None
    assert abs(estimate.value - float((world.model.predict(frame) == world.y.loc[frame.index]).mean())) < 0.1


def test_quality_monitor_flags_out_of_range_values(world: World) -> None:
    p = world.platform
    p.monitors.create("iris", "quality", MonitorSpec(kind=MonitorKind.QUALITY, params={"check_dtypes": False}), "t")
    world.log(world.X.sample(60, random_state=8), minutes=10)
    assert p.monitors.run("iris", "quality").status is MonitorStatus.OK
    world.clock.advance(3600)
    world.log(world.X.assign(sepal_length=lambda d: d.sepal_length * 10), minutes=10)
    bad = p.monitors.run("iris", "quality")
    assert bad.status is MonitorStatus.ALERT and "sepal_length" in bad.message


def test_missing_reference_is_an_error_result_with_the_fix(world: World) -> None:
    p = world.platform
    p.deployments.deploy("other", "iris:1", "t")
    p.store.bind("iris:1", "reference", world.ref, "t")  # still bound for iris:1 …
    world.log(world.X, minutes=10, deployment="other", variant="iris-v1")
    spec = MonitorSpec(kind=MonitorKind.DRIFT, reference="previous:1d")
    p.monitors.create("other", "prev", spec, "t")
    res = p.monitors.run("other", "prev")  # … but the previous day holds no traffic
    assert res.status is MonitorStatus.ERROR and "reference window" in res.message


def test_bad_monitor_input_is_rejected_and_nothing_is_stored(world: World) -> None:
    p = world.platform
    before = len(p.monitors.list_monitors("iris"))
    with pytest.raises(InvalidArgument, match="feature 'petal_area' is not an input"):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, features=["petal_area"]), "t")
    with pytest.raises(InvalidArgument, match="no variant 'nope'"):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, variant="nope"), "t")
    with pytest.raises(NotFound):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, reference="no-such-data:1"), "t")
    with pytest.raises(InvalidArgument, match="not a dataset"):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, reference="iris:1"), "t")
    with pytest.raises(InvalidArgument, match="numeric_test"):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, params={"numeric_test": "magic"}), "t")
    with pytest.raises(InvalidArgument, match=r"segment column 'in\.colour'"):
        p.monitors.create("iris", "m", MonitorSpec(kind=MonitorKind.DRIFT, segment={"in.colour": "red"}), "t")
    with pytest.raises(NotFound):
        p.monitors.create("nope", "m", MonitorSpec(kind=MonitorKind.TRAFFIC), "t")
    with pytest.raises(InvalidArgument, match="monitor name"):
        p.monitors.create("iris", "bad name!", MonitorSpec(kind=MonitorKind.TRAFFIC), "t")
    with pytest.raises(InvalidArgument, match="duration"):
        MonitorSpec(kind=MonitorKind.TRAFFIC, every="soon")
    with pytest.raises(Conflict):
        p.monitors.create("iris", "drift", MonitorSpec(kind=MonitorKind.DRIFT), "t")
    assert len(p.monitors.list_monitors("iris")) == before


def test_two_schedulers_never_run_a_monitor_twice(world: World) -> None:
    from mlpilot.app import build_platform

    second = build_platform(world.platform.settings, clock=world.clock)
    try:
        world.log(world.X, minutes=20)
        a, b = world.platform.monitors.tick(), second.monitors.tick()
        assert sorted(r.monitor for r in a.results + b.results) == ["drift", "traffic"]
    finally:
        second.close()


def test_deleting_the_deployment_removes_its_monitors(world: World) -> None:
    p = world.platform
    world.log(world.X, minutes=20)
    p.monitors.tick()
    p.store.delete_deployment("iris", "t")
    assert p.store.list_monitors("iris") == [] and p.store.list_slos("iris") == []
    with pytest.raises(NotFound):
        p.monitors.results("iris", "drift")
