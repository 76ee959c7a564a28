"""The built-in flavors round-trip real models (from memory and from files) and fail cleanly on bad files."""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import lightgbm as lgb
import numpy as np
import onnx
import pandas as pd
import pytest
import skops.io
import xgboost as xgb
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mlpilot.blobs import BlobStore
from mlpilot.errors import LoadError, MissingExtra, UnknownFlavor
from mlpilot.flavors import BUILTIN_FLAVORS, Flavor, flavor_for_object, get_flavor, sniff_file
from mlpilot.protocol.signature import TensorSpec

Outputs = dict[str, np.ndarray]


@cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x, y


@cache
def cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x, y


def _pipeline() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*iris())


def _classifier_outputs(model: Any, x: Any) -> Outputs:
    return {"predict": model.predict(x), "predict_proba": model.predict_proba(x)}


def _predict_outputs(model: Any, x: Any) -> Outputs:
    return {"predict": model.predict(x)}


# --- models, built once per session --------------------------------------------------------------------------


@cache
def sklearn_pipeline() -> Pipeline:
    return _pipeline()


@cache
def sklearn_hgb() -> HistGradientBoostingClassifier:
    # Uses a type skops does not trust by default, so the skops_trusted path is exercised.
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(*iris())


@cache
def xgb_classifier() -> xgb.XGBClassifier:
    return xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(*iris())


@cache
def xgb_regressor() -> xgb.XGBRegressor:
    x, y = cancer()
    return xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(x, y.astype(float))


@cache
def xgb_booster() -> xgb.Booster:
    x, y = iris()
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=10)


def _booster_outputs(booster: xgb.Booster, x: Any) -> Outputs:
    proba = booster.predict(xgb.DMatrix(x))
    return {"predict": proba.argmax(axis=1), "predict_proba": proba}


@cache
def lgb_classifier() -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=10, min_child_samples=5, verbose=-1).fit(*iris())


@cache
def lgb_binary_named() -> lgb.LGBMClassifier:
    x, y = cancer()
    labels = np.array(["benign", "malignant"])[y]
    return lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, labels)


@cache
def lgb_regressor() -> lgb.LGBMRegressor:
    x, y = cancer()
    return lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(x, y.astype(float))


def _onnx_model(zipmap: bool) -> onnx.ModelProto:
    model = sklearn_pipeline()
    options = None if zipmap else {id(model): {"zipmap": False}}
    return convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))], options=options)


def _onnx_outputs(zipmap: bool) -> Callable[[Any, Any], Outputs]:
    label, proba = ("output_label", "output_probability") if zipmap else ("label", "probabilities")

    def outputs(_model: Any, x: Any) -> Outputs:
        ref = sklearn_pipeline()
        return {label: ref.predict(x), proba: ref.predict_proba(x)}

    return outputs


def _pyfunc_object() -> Any:
    class Wrapped:  # defined in a function, so cloudpickle stores the class by value
        def __init__(self, model: Any) -> None:
            self.model = model

        def predict(self, inputs: Any) -> Any:
            return self.model.predict(inputs)

    return Wrapped(sklearn_pipeline())


PYFUNC_SOURCE = '''\
"""A hand-written model: flags flowers whose sepal is longer than a threshold."""

import numpy as np


class Settings:
    """Not the model: it has no predict method."""

    threshold = 5.8


class LongSepal:
    def __init__(self):
        self.threshold = Settings.threshold

    def predict(self, inputs):
        return (np.asarray(inputs)[:, 0] > self.threshold).astype(np.int64)
'''


def _long_sepal(_model: Any, x: Any) -> Outputs:
    return {"predict": (np.asarray(x)[:, 0] > 5.8).astype(np.int64)}


# --- how users write each kind of file ----------------------------------------------------------------------


def _joblib_file(model: Any, d: Path) -> Path:
    joblib.dump(model, d / "model.joblib")
    return d / "model.joblib"


def _joblib_compressed_file(model: Any, d: Path) -> Path:
    joblib.dump(model, d / "model.joblib", compress=3)
    return d / "model.joblib"


def _pickle_file(model: Any, d: Path) -> Path:
    (d / "model.pkl").write_bytes(pickle.dumps(model))
    return d / "model.pkl"


def _skops_file(model: Any, d: Path) -> Path:
    skops.io.dump(model, d / "model.skops")
    return d / "model.skops"


def _xgb_file(suffix: str) -> Callable[[Any, Path], Path]:
    def save(model: Any, d: Path) -> Path:
        model.save_model(d / f"model{suffix}")
        return d / f"model{suffix}"

    return save


def _lgb_file(model: Any, d: Path) -> Path:
    model.booster_.save_model(d / "model.txt")
    return d / "model.txt"


def _onnx_file(model: onnx.ModelProto, d: Path) -> Path:
    onnx.save_model(model, d / "model.onnx")
    return d / "model.onnx"


def _cloudpickle_file(model: Any, d: Path) -> Path:
    with open(d / "model.pkl", "wb") as f:
        cloudpickle.dump(model, f)
    return d / "model.pkl"


def _source_file(_model: Any, d: Path) -> Path:
    (d / "long_sepal.py").write_text(PYFUNC_SOURCE)
    return d / "long_sepal.py"


@dataclass(frozen=True)
class Case:
    id: str
    flavor: str
    model: Callable[[], Any]
    inputs: Callable[[], Any]
    expected: Callable[[Any, Any], Outputs]
    save: Callable[[Any, Path], Path] | None = None  # None: only the in-memory path applies
    fmt: str = ""  # the format sniffing a saved file must report
    in_memory: bool = True  # False: serialize() never produces this format

    def __str__(self) -> str:
        return self.id


def _iris_x() -> np.ndarray:
    return iris()[0]


def _cancer_x() -> np.ndarray:
    return cancer()[0]


def _iris_frame() -> pd.DataFrame:
    return pd.DataFrame(iris()[0], columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])


@cache
def _sklearn_frame_model() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(_iris_frame(), iris()[1])


CASES = [
    Case("sklearn-joblib", "sklearn", sklearn_pipeline, _iris_x, _classifier_outputs, _joblib_file, "joblib"),
    Case("sklearn-frame", "sklearn", _sklearn_frame_model, _iris_frame, _classifier_outputs, _joblib_file, "joblib"),
    Case(
        "sklearn-joblib-compressed",
        "sklearn",
        sklearn_pipeline,
        _iris_x,
        _classifier_outputs,
        _joblib_compressed_file,
        "joblib",
        in_memory=False,
    ),
    Case(
        "sklearn-pickle",
        "sklearn",
        sklearn_pipeline,
        _iris_x,
        _classifier_outputs,
        _pickle_file,
        "pickle",
        in_memory=False,
    ),
    Case("sklearn-skops", "sklearn", sklearn_hgb, _iris_x, _classifier_outputs, _skops_file, "skops", in_memory=False),
    Case("xgboost-classifier", "xgboost", xgb_classifier, _iris_x, _classifier_outputs, _xgb_file(".json"), "json"),
    Case("xgboost-regressor", "xgboost", xgb_regressor, _cancer_x, _predict_outputs, _xgb_file(".ubj"), "ubj"),
    Case("xgboost-booster", "xgboost", xgb_booster, _iris_x, _booster_outputs, _xgb_file(".ubj"), "ubj"),
    Case("lightgbm-classifier", "lightgbm", lgb_classifier, _iris_x, _classifier_outputs, _lgb_file, "text"),
    Case("lightgbm-binary-named-classes", "lightgbm", lgb_binary_named, _cancer_x, _classifier_outputs),
    Case("lightgbm-regressor", "lightgbm", lgb_regressor, _cancer_x, _predict_outputs, _lgb_file, "text"),
    Case("onnx", "onnx", lambda: _onnx_model(False), _iris_x, _onnx_outputs(False), _onnx_file, "onnx"),
    Case("onnx-zipmap", "onnx", lambda: _onnx_model(True), _iris_x, _onnx_outputs(True), _onnx_file, "onnx"),
    Case("pyfunc-cloudpickle", "pyfunc", _pyfunc_object, _iris_x, _predict_outputs, _cloudpickle_file, "cloudpickle"),
    Case("pyfunc-python-file", "pyfunc", lambda: None, _iris_x, _long_sepal, _source_file, "python", in_memory=False),
]
MEMORY_CASES = [c for c in CASES if c.in_memory]
FILE_CASES = [c for c in CASES if c.save is not None]


def _assert_same(case: Case, got: Outputs, want: Outputs) -> None:
    assert list(got)[: len(want)] == list(want), f"outputs {list(got)}, expected {list(want)} first"
    for name, expected in want.items():
        actual, expected = np.asarray(got[name]), np.asarray(expected)
        if expected.dtype.kind == "f":
            if name == "predict_proba":
                assert actual.dtype == np.float64, f"{name} is {actual.dtype}"
            rtol, atol = (1e-4, 1e-5) if case.flavor == "onnx" else (1e-6, 0.0)  # onnxruntime computes in float32
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)


def _load(store: BlobStore, flavor: Flavor, digest: str, metadata: Any) -> Any:
    # Metadata is stored as JSON, so it must survive the trip.
    return flavor.load(store.open_verified(digest), json.loads(json.dumps(dict(metadata))))


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.mark.parametrize("case", MEMORY_CASES, ids=str)
def test_round_trip_from_memory(case: Case, store: BlobStore) -> None:
    obj = case.model()
    flavor = flavor_for_object(obj)
    assert flavor.name == case.flavor
    serialized = flavor.serialize(obj)
    digest, _ = store.put_bytes(serialized.data)
    loaded = _load(store, flavor, digest, serialized.metadata)
    x = case.inputs()
    _assert_same(case, loaded.predict(x), case.expected(obj, x))


@pytest.mark.parametrize("case", FILE_CASES, ids=str)
def test_round_trip_from_file(case: Case, store: BlobStore, tmp_path: Path) -> None:
    assert case.save is not None
    obj = case.model()
    path = case.save(obj, tmp_path)
    flavor, metadata = sniff_file(path)
    assert (flavor.name, metadata["format"]) == (case.flavor, case.fmt)
    digest, _ = store.put_file(path)
    loaded = _load(store, flavor, digest, metadata)
    x = case.inputs()
    _assert_same(case, loaded.predict(x), case.expected(obj, x))


def _bad_bytes(kind: str, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    return np.random.default_rng(0).bytes(4096)


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
@pytest.mark.parametrize("case", FILE_CASES, ids=str)
def test_bad_file_raises_load_error(case: Case, kind: str, store: BlobStore, tmp_path: Path) -> None:
    assert case.save is not None
    good = case.save(case.model(), tmp_path)
    _, good_metadata = sniff_file(good, case.flavor)
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    bad.write_bytes(_bad_bytes(kind, good.read_bytes()))
    digest, _ = store.put_file(bad)
    flavor = get_flavor(case.flavor)

    # As registration does it: the user names the flavor, the file is checked, then loaded.
    with pytest.raises(LoadError, match=case.flavor) as info:
        flavor, metadata = sniff_file(bad, case.flavor)
        flavor.load(store.open_verified(digest), metadata)
    assert "\n" not in info.value.message

    # Loading alone must also refuse it, even with the metadata of a good file.
    with pytest.raises(LoadError, match=case.flavor) as info:
        _load(store, flavor, digest, good_metadata)
    assert "\n" not in info.value.message


def test_unknown_flavor_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownFlavor, match="sklearn, onnx"):
        get_flavor("tensorflow")
    path = tmp_path / "model.joblib"
    joblib.dump(sklearn_pipeline(), path)
    with pytest.raises(UnknownFlavor):
        sniff_file(path, "tensorflow")


def test_object_without_predict_is_refused() -> None:
    with pytest.raises(UnknownFlavor, match="pyfunc"):
        flavor_for_object(object())


def test_unrecognised_file_suggests_flavor_option(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n")
    with pytest.raises(UnknownFlavor, match="--flavor"):
        sniff_file(path)


@pytest.mark.parametrize(
    ("flavor", "metadata"),
    [
        ("sklearn", {"format": "joblib"}),
        ("sklearn", {"format": "pickle"}),
        ("pyfunc", {"format": "cloudpickle"}),
        ("pyfunc", {"format": "python", "class_name": "LongSepal"}),
    ],
    ids=["sklearn-joblib", "sklearn-pickle", "pyfunc-cloudpickle", "pyfunc-python"],
)
def test_unsafe_formats_refuse_a_plain_path(flavor: str, metadata: dict[str, str], tmp_path: Path) -> None:
    path = _source_file(None, tmp_path) if flavor == "pyfunc" else _joblib_file(sklearn_pipeline(), tmp_path)
    assert get_flavor(flavor).tags(metadata).unsafe
    with pytest.raises(TypeError, match="VerifiedBlob"):
        get_flavor(flavor).load(path, metadata)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flavor", "metadata", "unsafe", "needs_sample"),
    [
        ("sklearn", {"format": "skops"}, False, True),
        ("xgboost", {"format": "ubj"}, False, True),
        ("lightgbm", {"format": "text"}, False, True),
        ("onnx", {"format": "onnx"}, False, False),
        ("pyfunc", {"format": "cloudpickle"}, True, True),
    ],
    ids=["sklearn-skops", "xgboost", "lightgbm", "onnx", "pyfunc"],
)
def test_tags(flavor: str, metadata: dict[str, str], unsafe: bool, needs_sample: bool) -> None:
    tags = get_flavor(flavor).tags(metadata)
    assert (tags.unsafe, tags.needs_sample, tags.extra) == (unsafe, needs_sample, flavor)


@pytest.mark.parametrize("zipmap", [False, True], ids=["plain", "zipmap"])
def test_onnx_native_signature(zipmap: bool, store: BlobStore) -> None:
    flavor = get_flavor("onnx")
    serialized = flavor.serialize(_onnx_model(zipmap))
    digest, _ = store.put_bytes(serialized.data)
    signature = _load(store, flavor, digest, serialized.metadata).native_signature()
    assert signature is not None
    assert signature.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    label, proba = ("output_label", "output_probability") if zipmap else ("label", "probabilities")
    assert signature.outputs == (
        TensorSpec(label, "INT64", (-1,)),
        TensorSpec(proba, "FP32", (-1, -1) if zipmap else (-1, 3)),
    )
    assert not signature.columnar


def test_onnx_accepts_a_dataframe_for_its_single_input(store: BlobStore) -> None:
    flavor = get_flavor("onnx")
    digest, _ = store.put_bytes(flavor.serialize(_onnx_model(False)).data)
    loaded = _load(store, flavor, digest, {"format": "onnx"})
    out = loaded.predict(_iris_frame())
    np.testing.assert_array_equal(out["label"], sklearn_pipeline().predict(iris()[0]))


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (xgb_classifier, "xgboost"),
        (xgb_booster, "xgboost"),
        (lgb_classifier, "lightgbm"),
        (lambda: lgb_regressor().booster_, "lightgbm"),
        (sklearn_pipeline, "sklearn"),
        (lambda: _onnx_model(False), "onnx"),
        (_pyfunc_object, "pyfunc"),
    ],
    ids=["xgb-wrapper", "xgb-booster", "lgb-wrapper", "lgb-booster", "sklearn", "onnx", "pyfunc"],
)
def test_flavor_for_object_prefers_the_specific_flavor(obj: Callable[[], Any], name: str) -> None:
    assert flavor_for_object(obj()).name == name


def test_builtin_flavor_names_are_unique() -> None:
    names = [f.name for f in BUILTIN_FLAVORS]
    assert names == ["xgboost", "lightgbm", "sklearn", "onnx", "pyfunc"]


def test_cloudpickle_file_is_not_claimed_by_sklearn(tmp_path: Path) -> None:
    path = _cloudpickle_file(_pyfunc_object(), tmp_path)
    with pytest.raises(LoadError, match="not a valid sklearn model file"):
        sniff_file(path, "sklearn")


def test_python_file_with_two_model_classes_is_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "two.py"
    model_class = "class {}:\n    def predict(self, x):\n        return x\n"
    path.write_text(model_class.format("A") + "\n\n" + model_class.format("B"))
    with pytest.raises(LoadError, match=r"exactly one class.*A, B"):
        sniff_file(path)


def test_python_file_is_not_run_when_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    marker = tmp_path / "ran"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n\nclass M:\n    def predict(self, x):\n        return x\n")
    flavor, metadata = sniff_file(path)
    assert (flavor.name, metadata) == ("pyfunc", {"format": "python", "class_name": "M"})
    assert not marker.exists()


def test_predict_failure_is_an_inference_error(store: BlobStore) -> None:
    from mlpilot.errors import InferenceError

    flavor = get_flavor("sklearn")
    digest, _ = store.put_bytes(flavor.serialize(sklearn_pipeline()).data)
    loaded = _load(store, flavor, digest, {"format": "joblib"})
    with pytest.raises(InferenceError, match="sklearn"):
        loaded.predict(np.zeros((2, 7)))


@pytest.mark.parametrize(("module", "flavor", "metadata"), [("lightgbm", "lightgbm", {}), ("xgboost", "xgboost", {})])
def test_missing_library_names_the_extra(
    module: str, flavor: str, metadata: dict[str, Any], store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest, _ = store.put_bytes(b"irrelevant")
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(MissingExtra, match=rf"mlpilot\[{flavor}\]"):
        get_flavor(flavor).load(store.open_verified(digest), metadata)
