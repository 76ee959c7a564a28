"""The registry through the SDK in embedded mode: round trips per flavor and every failure path of the issue."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpilot import (
    Client,
    Conflict,
    IntegrityError,
    InvalidArgument,
    LoadError,
    NotFound,
    SignatureError,
    UnknownFlavor,
)
from tests.factories import ALL_CASES, ModelCase, iris_frame, sklearn_case


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Client(home=tmp_path / "home", actor="tester") as c:
        yield c


def _primary(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


def _assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    if np.issubdtype(np.asarray(expected).dtype, np.floating):
        np.testing.assert_allclose(np.asarray(got, dtype=float).ravel(), np.asarray(expected).ravel(), rtol=1e-6)
    else:
        np.testing.assert_array_equal(np.asarray(got).ravel(), np.asarray(expected).ravel())


@pytest.mark.parametrize("make", ALL_CASES, ids=lambda f: f.__name__.removesuffix("_case"))
@pytest.mark.parametrize("source", ["object", "file"])
def test_round_trip_gives_same_predictions(client: Client, tmp_path: Path, make, source: str) -> None:  # type: ignore[no-untyped-def]
    case: ModelCase = make()
    if source == "object":
        v = client.register_model("m", case.model, sample=case.X[:5])
    else:
        v = client.register_model("m", case.save(tmp_path), sample=case.X[:5], trust_pickle=True)
    assert v.version == 1 and v.flavor == case.flavor and v.digest.startswith("sha256:")
    assert v.signature is not None and v.signature["inputs"]
    loaded = client.load_model(v.ref)
    _assert_same(_primary(loaded.predict(case.X)), case.expected)
    events = client.events(subject="artifact:m")
    assert [e.action for e in events] == ["artifact.created", "version.created"]
    assert events[-1].actor == "tester"


def test_signature_inferred_from_dataframe_sample(client: Client) -> None:
    case = sklearn_case()
    v = client.register_model("iris", case.model, sample=case.X.head(3))
    sig = v.signature
    assert sig is not None and sig["columnar"] is True
    assert [i["name"] for i in sig["inputs"]] == list(case.X.columns)
    assert {i["datatype"] for i in sig["inputs"]} == {"FP64"}
    assert [o["name"] for o in sig["outputs"]] == ["predict", "predict_proba"]
    assert sig["outputs"][1]["shape"] == [-1, 3]
    assert v.unsafe is True and "unsafe_reason" in v.metadata


def test_explicit_signature_must_match_sample(client: Client) -> None:
    case = sklearn_case()
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    with pytest.raises(SignatureError, match="does not match"):
        client.register_model("iris", case.model, sample=case.X.head(3), signature=bad)
    with pytest.raises(SignatureError, match="'inputs' must be a list"):  # was a TypeError: a 500 over HTTP
        client.register_model("iris", case.model, signature={"inputs": 5})
    with pytest.raises(NotFound):
        client.get_artifact("iris")


def _nothing_registered(client: Client) -> None:
    assert client.list_artifacts() == []
    assert client.events() == []


def test_unknown_flavor_changes_nothing(client: Client, tmp_path: Path) -> None:
    case = sklearn_case()
    with pytest.raises(UnknownFlavor, match="sklearn"):
        client.register_model("m", case.save(tmp_path), flavor="tensorflow")
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"hello, not a model")
    with pytest.raises(UnknownFlavor, match="--flavor"):
        client.register_model("m", junk)
    with pytest.raises(UnknownFlavor):
        client.register_model("m", object())
    _nothing_registered(client)


@pytest.mark.parametrize("make", ALL_CASES, ids=lambda f: f.__name__.removesuffix("_case"))
def test_truncated_file_is_a_load_error_and_changes_nothing(client: Client, tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    case: ModelCase = make()
    path = case.save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((LoadError, UnknownFlavor)):
        client.register_model("m", path, flavor=case.flavor, trust_pickle=True)
    _nothing_registered(client)


def test_digest_mismatch_on_load_is_refused(client: Client, tmp_path: Path) -> None:
    case = sklearn_case()
    v = client.register_model("m", case.model, sample=case.X.head(2))
    blob = tmp_path / "home" / "artifacts" / "sha256" / v.digest[7:9] / v.digest[9:]
    assert blob.is_file()
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")  # same size, different bytes
    with pytest.raises(IntegrityError, match="corrupt"):
        client.load_model(v.ref)


def test_dataset_register_and_bind(client: Client, tmp_path: Path) -> None:
    case = sklearn_case()
    m = client.register_model("iris", case.model, sample=case.X.head(2))
    X, y = iris_frame()
    csv = tmp_path / "ref.csv"
    X.assign(target=y).to_csv(csv, index=False)
    d = client.register_dataset("iris-ref", csv, bind_to=m.ref)
    assert d.kind.value == "dataset" and d.metadata["rows"] == 150 and "target" in d.metadata["columns"]
    assert client.get_version("iris:1").bindings == {"reference": "iris-ref:1"}
    back = client.read_dataset("iris-ref:1")
    pd.testing.assert_frame_equal(back, X.assign(target=y), check_dtype=False)
    with pytest.raises(NotFound):
        client.register_dataset("other", csv, bind_to="iris:9")
    with pytest.raises(NotFound):
        client.get_artifact("other")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(InvalidArgument, match="no rows"):
        client.register_dataset("other", empty)


def test_name_kind_conflict(client: Client) -> None:
    X, _ = iris_frame()
    client.register_dataset("shared", X)
    with pytest.raises(Conflict, match="dataset"):
        client.register_model("shared", sklearn_case().model)


def test_aliases_move_and_compare_and_set(client: Client) -> None:
    case = sklearn_case()
    for _ in range(2):
        client.register_model("m", case.model)
    client.set_alias("m", "champion", 1, expect="absent")
    assert client.get_version("m@champion").version == 1
    with pytest.raises(Conflict, match="expected version 2"):
        client.set_alias("m", "champion", 2, expect=2)
    client.set_alias("m", "champion", 2, expect=1)
    assert client.get_artifact("m").aliases == {"champion": 2}
    with pytest.raises(InvalidArgument):
        client.set_alias("m", "123", 1)
    with pytest.raises(NotFound):
        client.set_alias("m", "x", 7)


def _register_many(home: str, n: int, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from tests.factories import RowSum

    with Client(home=home, actor="proc") as c:
        queue.put([c.register_model("shared", RowSum(), flavor="pyfunc").version for _ in range(n)])


def _race_alias(home: str, target: int, expect: int, barrier: mp.Barrier, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    with Client(home=home) as c:
        barrier.wait()
        try:
            c.set_alias("shared", "prod", target, expect=expect)
            queue.put(("won", target))
        except Conflict:
            queue.put(("conflict", target))


def test_concurrent_registrations_from_processes_are_consecutive(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    with Client(home=home):
        pass  # create and migrate the store once
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(home, 5, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 21))
    with Client(home=home) as c:
        assert [v.version for v in c.list_versions("shared")] == list(range(1, 21))
        assert len(c.events(action="version.created", limit=1000)) == 20

        # Two processes race to move the same alias from the same state: one wins, one gets Conflict.
        c.set_alias("shared", "prod", 1)
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_race_alias, args=(home, t, 1, barrier, queue)) for t in (2, 3)]
    for p in procs:
        p.start()
    outcomes = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [o for o, _ in outcomes] == ["conflict", "won"]
    winner = next(t for o, t in outcomes if o == "won")
    with Client(home=home) as c:
        assert c.get_version("shared@prod").version == winner
        assert len(c.events(action="alias.moved")) == 2
