"""The detector contract (sklearn-shaped), typed frozen results, the public surface and import hygiene."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlpilot.monitoring as monitoring
from mlpilot.errors import MissingExtra
from mlpilot.monitoring import (
    CBPE,
    ClassificationPerformance,
    DataQuality,
    Detector,
    DriftResult,
    FeatureDrift,
    KSDrift,
    PSIDrift,
    TableDrift,
    clone,
)
from mlpilot.monitoring._extras import needs_extra

DETECTORS = sorted(
    (obj for obj in vars(monitoring).values() if inspect.isclass(obj) and issubclass(obj, Detector)),
    key=lambda c: c.__name__,
)
CONCRETE = [c for c in DETECTORS if c.__name__ not in {"Detector", "UnivariateDrift"}]

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame({"a": RNG.normal(size=60), "b": RNG.normal(size=60)})
LABELS, PROBA = np.array([0, 1] * 30), np.linspace(0.01, 0.99, 60)
FIT_ARGS: dict[str, tuple[Any, ...]] = {
    "CBPE": (LABELS, PROBA),
    "ClassificationPerformance": (LABELS, PROBA),
    "RegressionPerformance": (FRAME["a"], FRAME["b"]),
    "ChiSquareDrift": (["x", "y"] * 30,),
    "CategoricalPSIDrift": (["x", "y"] * 30,),
    "CategoricalJensenShannonDrift": (["x", "y"] * 30,),
    "UnseenCategoryDrift": (["x", "y"] * 30,),
    "KSDrift": (FRAME["a"],),
    "WassersteinDrift": (FRAME["a"],),
    "PSIDrift": (FRAME["a"],),
    "JensenShannonDrift": (FRAME["a"],),
}


def test_every_detector_is_exported() -> None:
    assert {c.__name__ for c in CONCRETE} >= {
        "KSDrift",
        "WassersteinDrift",
        "PSIDrift",
        "JensenShannonDrift",
        "ChiSquareDrift",
        "CategoricalJensenShannonDrift",
        "CategoricalPSIDrift",
        "UnseenCategoryDrift",
        "MMDDrift",
        "ClassifierDrift",
        "TableDrift",
        "IsolationForestOutliers",
        "MahalanobisOutliers",
        "DataQuality",
        "ClassificationPerformance",
        "RegressionPerformance",
        "CBPE",
    }
    assert len(monitoring.__all__) == len(set(monitoring.__all__))
    assert all(getattr(monitoring, name) is not None for name in monitoring.__all__)


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_init_stores_parameters_verbatim_and_learns_nothing(cls: type[Detector]) -> None:
    detector = cls()
    params = detector.get_params()
    assert list(params) == [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert not [k for k in vars(detector) if k.endswith("_")], "nothing is learned in __init__"
    assert all(getattr(detector, k) is v for k, v in params.items())


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_fit_returns_self_learns_underscore_state_and_clone_forgets_it(cls: type[Detector]) -> None:
    detector = cls()
    fitted = detector.fit(*FIT_ARGS.get(cls.__name__, (FRAME,)))  # type: ignore[attr-defined]
    assert fitted is detector
    assert [k for k in vars(detector) if k.endswith("_")]
    copy = clone(detector)
    assert type(copy) is cls and copy.get_params() == detector.get_params()
    assert not [k for k in vars(copy) if k.endswith("_")]


def test_repr_shows_changed_parameters() -> None:
    assert repr(KSDrift()) == "KSDrift()"
    assert repr(PSIDrift(threshold=0.2)) == "PSIDrift(threshold=0.2)"


def test_results_are_frozen_dataclasses_with_read_only_mappings() -> None:
    result = KSDrift().fit(FRAME["a"]).predict(FRAME["b"])
    assert isinstance(result, FeatureDrift)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.is_drift = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.detail["method"] = "x"  # type: ignore[index]
    table = TableDrift().fit(FRAME).predict(FRAME)
    assert isinstance(table, DriftResult) and isinstance(table.features, tuple)
    assert table["a"].feature == "a"
    with pytest.raises(KeyError):
        table["zzz"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: TableDrift().fit(FRAME).predict(FRAME), id="drift"),
        pytest.param(lambda: DataQuality().fit(FRAME).predict(FRAME.assign(a=np.nan)), id="quality"),
        pytest.param(lambda: ClassificationPerformance().fit(LABELS, PROBA).predict(LABELS, PROBA), id="performance"),
        pytest.param(lambda: CBPE().fit(LABELS, PROBA).predict(PROBA), id="estimate"),
        pytest.param(lambda: monitoring.MMDDrift(n_permutations=5).fit(FRAME).predict(FRAME), id="multivariate"),
    ],
)
def test_to_dict_is_plain_json(make: Any) -> None:
    payload = make().to_dict()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert "meta" not in payload and "data" not in payload


def test_importing_monitoring_is_light() -> None:
    code = (
        "import sys, threading, mlpilot.monitoring;"
        "heavy = {'scipy', 'sklearn'} & {m.split('.')[0] for m in sys.modules};"
        "assert not heavy, heavy; assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extra_names_the_pip_command() -> None:
    with pytest.raises(MissingExtra, match=r'pip install "mlpilot\[sklearn\]"'), needs_extra("the KS drift test"):
        raise ImportError("No module named 'scipy'")
