"""The routing snapshot's JSON form: a lossless round trip on many generated snapshots (every field, every optional
shape), defaults for fields older control planes did not send, and clear errors for malformed snapshots."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from mlpilot.serving.snapshot import (
    SCHEMA_VERSION,
    AutoscalingRoute,
    DeploymentRoute,
    ModelBinding,
    QuarantineRoute,
    RoutingSnapshot,
    VariantRoute,
)


def _name(rng: random.Random) -> str:
    return rng.choice(["iris", "fraud-v2", "bot", "ünïcode-模型", "a.b_c"]) + str(rng.randrange(1000))


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 2 else 4)
    if kind == 0:
        return rng.randrange(-(10**9), 10**9)
    if kind == 1:
        return rng.random() * 1e6
    if kind == 2:
        return rng.choice([None, True, False, "", "x"])
    if kind == 3:
        return _name(rng)
    if kind == 4:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_name(rng): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _quarantine(rng: random.Random, variants: list[str]) -> QuarantineRoute:
    kind = rng.randrange(3)
    route = rng.random() < 0.5
    return QuarantineRoute(
        feature=_name(rng),
        action="route" if route else "reject",
        low=rng.uniform(-5, 0) if kind == 0 and rng.random() < 0.7 else None,
        high=rng.uniform(0, 5) if kind == 0 else None,
        allowed=tuple(_name(rng) for _ in range(rng.randrange(1, 4))) if kind == 1 else None,
        nulls=kind == 2,
        variant=rng.choice(variants) if route else None,
        reason=rng.choice(["", "drifted", "bad upstream"]),
    )


def _snapshot(rng: random.Random) -> RoutingSnapshot:
    deployments = {}
    for _ in range(rng.randrange(5)):
        name = _name(rng)
        variants = []
        for i in range(rng.randrange(1, 4)):
            model = ModelBinding(
                name=_name(rng),
                version=rng.randrange(1, 100),
                digest="sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64)),
                flavor=rng.choice(["sklearn", "onnx", "pyfunc", "app"]),
                flavor_metadata={_name(rng): _json_value(rng) for _ in range(rng.randrange(3))},
                signature=rng.choice([None, {}, {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}]}]),
            )
            variants.append(
                VariantRoute(
                    name=f"v{i}",
                    model=model,
                    max_batch_size=rng.choice([1, 8, 64]),
                    max_wait_ms=rng.choice([None, 0.5, 10.0]),
                    replicas=rng.randrange(1, 5),
                    timeout_s=rng.choice([30.0, 2.5]),
                    generation=rng.randrange(3),
                    autoscaling=rng.choice(
                        [None, AutoscalingRoute(min_replicas=1, max_replicas=4, target_ongoing_requests=1.5)]
                    ),
                )
            )
        names = [v.name for v in variants]
        deployments[name] = DeploymentRoute(
            name=name,
            revision=rng.randrange(1, 50),
            variants=tuple(variants),
            weights={n: rng.randrange(101) for n in names},
            shadows=tuple(rng.sample(names, rng.randrange(len(names) + 1))),
            sticky_header=rng.choice([None, "x-user"]),
            quarantine=tuple(_quarantine(rng, names) for _ in range(rng.randrange(3))),
        )
    return RoutingSnapshot(version=rng.randrange(0, 10**12), deployments=deployments)


@pytest.mark.parametrize("seed", range(200))
def test_json_round_trip_is_lossless(seed: int) -> None:
    snap = _snapshot(random.Random(seed))
    wire = snap.to_json()
    assert RoutingSnapshot.from_json(wire) == snap
    assert RoutingSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap  # any JSON library
    assert RoutingSnapshot.from_json(wire).to_json() == wire  # stable


def test_an_empty_signature_stays_empty_and_tuples_stay_tuples() -> None:
    binding = ModelBinding("m", 1, "sha256:" + "0" * 64, "sklearn", signature={})
    snap = RoutingSnapshot(
        version=1,
        deployments={
            "d": DeploymentRoute(
                "d", 1, (VariantRoute("a", binding),), {"a": 100}, quarantine=(QuarantineRoute("c", allowed=("x",)),)
            )
        },
    )
    back = RoutingSnapshot.from_json(snap.to_json())
    assert back.deployments["d"].variants[0].model.signature == {}
    assert back.deployments["d"].quarantine[0].allowed == ("x",)
    assert isinstance(back.deployments["d"].variants, tuple)


def test_missing_optional_fields_take_defaults_and_unknown_fields_are_ignored() -> None:
    data = {
        "schema_version": SCHEMA_VERSION,
        "version": 7,
        "changed": True,  # the long-poll's flag rides along
        "deployments": {
            "d": {
                "name": "d",
                "revision": 2,
                "weights": {"a": 100},
                "variants": [
                    {"name": "a", "future_field": 1, "model": {"name": "m", "version": 1, "digest": "x", "flavor": "f"}}
                ],
            }
        },
    }
    d = RoutingSnapshot.from_dict(data).deployments["d"]
    assert d.shadows == () and d.quarantine == () and d.sticky_header is None
    v = d.variants[0]
    assert (v.max_batch_size, v.replicas, v.generation, v.autoscaling, v.model.signature) == (1, 1, 0, None, None)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=2), "schema_version 2"),
        (lambda d: d.pop("schema_version"), "schema_version None"),
        (lambda d: d.pop("version"), "'version' is missing"),
        (lambda d: d.update(version="7"), "snapshot.version: expected an integer"),
        (lambda d: d.update(version=True), "expected an integer"),
        (lambda d: d.update(deployments=[]), "snapshot.deployments: expected an object"),
        (lambda d: d["deployments"]["d"].update(variants={}), "snapshot.deployments.d.variants: expected a list"),
        (lambda d: d["deployments"]["d"]["variants"][0].pop("model"), "variants[0]: the field 'model' is missing"),
        (lambda d: d["deployments"]["d"]["variants"][0].update(timeout_s="30"), "timeout_s: expected a number"),
        (lambda d: d["deployments"]["d"]["weights"].update(a=None), "weights.a: expected an integer"),
        (lambda d: d["deployments"]["d"].update(sticky_header=3), "sticky_header: expected a str"),
    ],
)
def test_malformed_snapshots_raise_value_errors_naming_the_field(mutate: Any, message: str) -> None:
    binding = ModelBinding("m", 1, "sha256:" + "0" * 64, "sklearn")
    data = RoutingSnapshot(
        version=3, deployments={"d": DeploymentRoute("d", 1, (VariantRoute("a", binding),), {"a": 100})}
    ).to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        RoutingSnapshot.from_dict(data)


def test_invalid_json_and_non_objects_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        RoutingSnapshot.from_json(b"{nope")
    with pytest.raises(ValueError, match="schema_version 'list'"):
        RoutingSnapshot.from_json(b"[1, 2]")
