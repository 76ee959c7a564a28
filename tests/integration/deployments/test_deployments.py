"""Deployments through the SDK (embedded): desired state, validation, pinning, routing snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpilot import Client, InvalidArgument, NotFound, RuntimeOptions, SignatureError
from mlpilot.records import BatchingOptions
from mlpilot.serving.snapshot import RoutingSnapshot
from tests.factories import iris_frame, pyfunc_case, sklearn_case


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Client(home=tmp_path / "home", actor="tester") as c:
        case = sklearn_case()
        for _ in range(2):
            c.register_model("iris", case.model, sample=case.X.head(3))
        yield c


def _unchanged(client: Client, name: str, revision: int, n_events: int) -> None:
    assert client.get_deployment(name).revision == revision
    assert len(client.events(subject=f"deployment:{name}")) == n_events


def test_deploy_add_variants_and_split(client: Client) -> None:
    d = client.deploy("iris", "iris:1")
    assert d.revision == 1 and d.spec.traffic == {"iris-v1": 100}
    d = client.deploy("iris", "iris:2", runtime=RuntimeOptions(batching=BatchingOptions(max_batch_size=16)))
    assert d.spec.traffic == {"iris-v1": 100, "iris-v2": 0}
    d = client.set_traffic("iris", {"iris-v1": 90, "iris-v2": 10})
    assert d.revision == 3 and d.spec.traffic == {"iris-v1": 90, "iris-v2": 10}
    snap = RoutingSnapshot.from_dict(client.snapshot())
    assert snap.version == d.snapshot_version
    route = snap.deployments["iris"]
    assert route.weights == {"iris-v1": 90, "iris-v2": 10}
    v2 = next(v for v in route.variants if v.name == "iris-v2")
    assert (v2.model.version, v2.max_batch_size, v2.model.flavor) == (2, 16, "sklearn")
    assert v2.model.digest == client.get_version("iris:2").digest
    assert RoutingSnapshot.from_dict(snap.to_dict()) == snap
    actions = [e.action for e in client.events(subject="deployment:iris")]
    assert actions == ["deployment.created", "deployment.updated", "deployment.updated"]


def test_shadow_and_replace(client: Client) -> None:
    client.deploy("iris", "iris:1", variant="stable")
    d = client.deploy("iris", "iris:2", variant="cand", shadow=True, sticky_header="x-user")
    assert d.spec.shadows == ["cand"] and d.spec.sticky_header == "x-user"
    with pytest.raises(InvalidArgument, match="both live"):
        client.apply_deployment("iris", {**d.spec.model_dump(mode="json"), "traffic": {"stable": 50, "cand": 50}})
    d = client.deploy("iris", "iris:2", variant="only", replace=True)
    assert [v.name for v in d.spec.variants] == ["only"] and d.spec.traffic == {"only": 100}


def test_aliases_are_pinned_at_deploy(client: Client) -> None:
    client.set_alias("iris", "champion", 1)
    d = client.deploy("iris", "iris@champion", variant="champion")
    assert d.spec.variants[0].model == "iris:1" and d.spec.variants[0].requested == "iris@champion"
    client.set_alias("iris", "champion", 2)
    assert client.get_deployment("iris").spec.variants[0].model == "iris:1"  # no change behind the owner's back
    d = client.deploy("iris", "iris@champion", variant="champion")
    assert d.spec.variants[0].model == "iris:2"


def test_deploying_a_missing_version_changes_nothing(client: Client) -> None:
    with pytest.raises(NotFound, match="no version 9"):
        client.deploy("iris", "iris:9")
    with pytest.raises(NotFound):
        client.get_deployment("iris")
    client.deploy("iris", "iris:1")
    with pytest.raises(NotFound, match="ghost"):
        client.deploy("iris", "ghost:1")
    _unchanged(client, "iris", 1, 1)


@pytest.mark.parametrize(
    "weights",
    [{"iris-v1": 60, "iris-v2": 30}, {"iris-v1": 101, "iris-v2": -1}, {"iris-v1": 50, "nope": 50}],
    ids=["sum-90", "out-of-range", "unknown"],
)
def test_bad_weights_change_nothing(client: Client, weights: dict[str, int]) -> None:
    client.deploy("iris", "iris:1")
    client.deploy("iris", "iris:2")
    with pytest.raises(InvalidArgument):
        client.set_traffic("iris", weights)
    _unchanged(client, "iris", 2, 2)


def test_signature_mismatch_between_variants(client: Client) -> None:
    case = pyfunc_case()
    client.register_model("rowsum", case.model, sample=case.X)
    client.deploy("iris", "iris:1")
    d = client.deploy("iris", "rowsum:1", variant="other")  # idle at weight 0: allowed, not serving
    with pytest.raises(SignatureError, match="does not accept"):
        client.set_traffic("iris", {"iris-v1": 50, "other": 50})
    with pytest.raises(SignatureError):
        client.deploy("iris", "rowsum:1", variant="shadowy", shadow=True)
    _unchanged(client, "iris", d.revision, 2)


def test_deploying_a_dataset_is_rejected(client: Client) -> None:
    X, _ = iris_frame()
    client.register_dataset("data", X)
    with pytest.raises(InvalidArgument, match="not a model"):
        client.deploy("iris", "data:1")


def test_runtime_options_validated(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        client.deploy("iris", "iris:1", runtime={"batching": {"max_batch_size": 0}})
    with pytest.raises(NotFound):
        client.get_deployment("iris")


def test_a_snapshot_reads_each_pinned_model_version_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling the snapshot keeps the bindings of pinned model versions (they never change): many deployments of
    one version, compiled again and again, read that version from the store once; a new version is read when used."""
    for i in range(5):
        client.deploy(f"d{i}", "iris:1")
    platform = client._platform
    reads: list[str] = []
    real = platform.store.get_version
    monkeypatch.setattr(platform.store, "get_version", lambda ref: reads.append(str(ref)) or real(ref))
    first = platform.deployments.snapshot()
    second = platform.deployments.snapshot()
    assert reads == ["iris:1"]
    assert first.deployments["d3"].variants[0].model == second.deployments["d3"].variants[0].model
    assert second.deployments["d3"].variants[0].model.version == 1
    client.deploy("d0", "iris:2", variant="b")
    third = platform.deployments.snapshot()
    assert reads.count("iris:2") >= 1
    assert {v.model.version for v in third.deployments["d0"].variants} == {1, 2}
