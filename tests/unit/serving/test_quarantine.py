"""Input quarantine rules: the vectorised check, its messages, the record's validation, the snapshot round trip."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.records import QuarantineRule
from mlpilot.serving.quarantine import Quarantine, breaking
from mlpilot.serving.snapshot import (
    DeploymentRoute,
    ModelBinding,
    QuarantineRoute,
    RoutingSnapshot,
    VariantRoute,
)

AMOUNT = QuarantineRoute("amount", low=0, high=500, reason="incident 12")


def test_bounds_reject_with_the_value_and_the_reason() -> None:
    q = Quarantine([AMOUNT])
    assert q.check({"amount": np.array([10.0, 499.5])}) is None
    v = q.check({"amount": np.array([1234.5])})
    assert v is not None and v.rule is AMOUNT and (v.rows, v.total) == (1, 1)
    assert v.message() == "input quarantined: feature 'amount' value 1234.5 outside [0, 500] (incident 12)"
    v = q.check({"amount": np.array([[1.0], [-3.0], [900.0]], dtype=np.float32)})  # a column sent as [n, 1]
    assert v is not None
    assert v.message() == "input quarantined: feature 'amount' value -3 outside [0, 500] in 2 of 3 rows (incident 12)"


def test_one_sided_bounds_and_integers() -> None:
    low = Quarantine([QuarantineRoute("n", low=1)])
    high = Quarantine([QuarantineRoute("n", high=9.5)])
    assert low.check({"n": np.array([1, 2, 3])}) is None
    v = low.check({"n": np.array([3, 0])})
    assert v is not None and v.message() == "input quarantined: feature 'n' value 0 below 1 in 1 of 2 rows"
    v = high.check({"n": np.array([10])})
    assert v is not None and v.message() == "input quarantined: feature 'n' value 10 above 9.5"


def test_allowed_categories_strings_bytes_and_numbers() -> None:
    q = Quarantine([QuarantineRoute("country", allowed=("de", "fr"))])
    assert q.check({"country": np.array(["de", b"fr"], dtype=object)}) is None
    v = q.check({"country": np.array(["de", "xx"], dtype=object)})
    assert v is not None and v.message() == (
        "input quarantined: feature 'country' value 'xx' is not one of ['de', 'fr'] in 1 of 2 rows"
    )
    assert q.check({"country": np.array([b"zz"], dtype=object)}) is not None
    many = Quarantine([QuarantineRoute("c", allowed=tuple(f"v{i}" for i in range(40)))])  # the hashed path
    assert many.check({"c": np.array(["v3", "v39"], dtype=object)}) is None
    assert many.check({"c": np.array(["v3", "v40"], dtype=object)}) is not None
    codes = Quarantine([QuarantineRoute("code", allowed=("1", "2"))])
    assert codes.check({"code": np.array([1, 2, 2])}) is None
    v = codes.check({"code": np.array([1, 7])})
    assert v is not None and v.value == 7


def test_nulls() -> None:
    q = Quarantine([QuarantineRoute("x", nulls=True, reason="null spike")])
    assert q.check({"x": np.array([1.0, 2.0])}) is None
    v = q.check({"x": np.array([1.0, np.nan])})
    assert (
        v is not None
        and v.message() == "input quarantined: feature 'x' has a missing value in 1 of 2 rows (null spike)"
    )
    assert q.check({"x": np.array(["a", ""], dtype=object)}) is not None
    assert q.check({"x": np.array([1, 2])}) is None  # integers cannot be missing


def test_rules_in_order_route_and_absent_inputs() -> None:
    route = QuarantineRoute("amount", action="route", variant="safe", high=100)
    q = Quarantine([route, AMOUNT])
    v = q.check({"amount": np.array([300.0])})
    assert v is not None and v.rule is route  # the first rule the request breaks decides
    assert q.check({"other": np.array([1e9])}) is None  # left to signature validation
    assert q.check({"amount": np.array(["x"], dtype=object)}) is None  # bounds do not apply to text
    assert not Quarantine([]) and bool(q)


def test_tensor_rows() -> None:
    q = Quarantine([QuarantineRoute("t", high=1.0)])
    v = q.check({"t": np.array([[0.1, 0.2], [0.3, 5.0], [2.0, 3.0]])})
    assert v is not None and (v.rows, v.total, v.value) == (2, 3, 5.0)


def test_breaking_marks_each_value() -> None:
    assert breaking(AMOUNT, np.array([1.0, 600.0, -1.0])).tolist() == [False, True, True]
    assert breaking(QuarantineRoute("x", high=1), np.array(["a"], dtype=object)) is None


def test_check_is_vectorised() -> None:
    q = Quarantine([AMOUNT, QuarantineRoute("country", allowed=("de", "fr", "it"))])
    inputs = {
        "amount": np.random.default_rng(0).uniform(0, 500, 1_000_000),
        "country": np.array(["de", "fr", "it", "de"] * 250_000, dtype=object),
    }
    q.check(inputs)
    t0 = time.perf_counter()
    assert q.check(inputs) is None
    assert time.perf_counter() - t0 < 0.5  # a Python loop over a million rows would take seconds


def test_rule_record_validation() -> None:
    assert QuarantineRule(feature="a", low=0).action == "reject"
    cases = [
        ({"feature": "a"}, "exactly one condition"),
        ({"feature": "a", "low": 0, "nulls": True}, "exactly one condition"),
        ({"feature": "a", "low": 5, "high": 1}, "low 5 is above high 1"),
        ({"feature": "a", "allowed": []}, "at least one value"),
        ({"feature": "a", "high": 1, "action": "route"}, "needs the variant"),
        ({"feature": "a", "high": 1, "variant": "b"}, "takes no variant"),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            QuarantineRule(**fields)


def test_snapshot_round_trip_with_rules_and_generation() -> None:
    binding = ModelBinding("m", 1, "sha256:" + "0" * 64, "sklearn")
    snap = RoutingSnapshot(
        version=3,
        deployments={
            "d": DeploymentRoute(
                name="d",
                revision=2,
                variants=(VariantRoute("a", binding, generation=4), VariantRoute("safe", binding)),
                weights={"a": 100, "safe": 0},
                quarantine=(AMOUNT, QuarantineRoute("c", allowed=("x",), action="route", variant="safe")),
            )
        },
    )
    assert RoutingSnapshot.from_dict(snap.to_dict()) == snap
    legacy = snap.to_dict()
    del legacy["deployments"]["d"]["quarantine"]
    for v in legacy["deployments"]["d"]["variants"]:
        del v["generation"]
    old = RoutingSnapshot.from_dict(legacy).deployments["d"]
    assert old.quarantine == () and old.variants[0].generation == 0
