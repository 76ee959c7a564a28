"""Factories of real, small, trained models of every flavor, each with a way to save it as users do."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class ModelCase:
    id: str
    model: Any  # the in-memory object to register
    X: Any  # inputs to predict on
    save: Callable[[Path], Path]  # write the model to a file under the dir, return its path
    expected: np.ndarray  # the original object's primary prediction on X
    flavor: str


def iris_frame() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, data.target


def sklearn_case() -> ModelCase:
    import joblib
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    m = LogisticRegression(max_iter=300).fit(X, y)

    def save(d: Path) -> Path:
        joblib.dump(m, d / "model.joblib")
        return d / "model.joblib"

    return ModelCase("sklearn", m, X.head(20), save, m.predict(X.head(20)), "sklearn")


def skops_case() -> ModelCase:
    import skops.io
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris_frame()
    m = DecisionTreeClassifier(random_state=0).fit(X, y)

    def save(d: Path) -> Path:
        skops.io.dump(m, d / "model.skops")
        return d / "model.skops"

    return ModelCase("sklearn-skops", m, X.head(20), save, m.predict(X.head(20)), "sklearn")


def xgboost_case() -> ModelCase:
    import xgboost as xgb

    X, y = iris_frame()
    m = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)

    def save(d: Path) -> Path:
        m.save_model(d / "model.json")
        return d / "model.json"

    return ModelCase("xgboost", m, X.head(20), save, m.predict(X.head(20)), "xgboost")


def lightgbm_case() -> ModelCase:
    import lightgbm as lgb

    X, y = iris_frame()
    m = lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, y.astype(float))

    def save(d: Path) -> Path:
        m.booster_.save_model(str(d / "model.txt"))
        return d / "model.txt"

    return ModelCase("lightgbm", m, X.head(20), save, m.predict(X.head(20)), "lightgbm")


def onnx_case() -> ModelCase:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xf = X.to_numpy(dtype=np.float32)
    m = LogisticRegression(max_iter=300).fit(Xf, y)
    proto = to_onnx(m, Xf[:1], options={id(m): {"zipmap": False}}, target_opset=17)

    def save(d: Path) -> Path:
        (d / "model.onnx").write_bytes(proto.SerializeToString())
        return d / "model.onnx"

    return ModelCase("onnx", proto, Xf[:20], save, m.predict(Xf[:20]), "onnx")


PYFUNC_SOURCE = '''
import numpy as np


class Doubler:
    """Predicts twice the row sum."""

    def predict(self, X):
        return np.asarray(X, dtype=float).sum(axis=1) * 2
'''


class RowSum:
    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=float).sum(axis=1) * 2


def pyfunc_case() -> ModelCase:
    X = np.arange(12, dtype=float).reshape(4, 3)

    def save(d: Path) -> Path:
        (d / "doubler.py").write_text(PYFUNC_SOURCE)
        return d / "doubler.py"

    return ModelCase("pyfunc", RowSum(), X, save, X.sum(axis=1) * 2, "pyfunc")


ALL_CASES = [sklearn_case, skops_case, xgboost_case, lightgbm_case, onnx_case, pyfunc_case]


class SlowRowSum:
    """A pyfunc model that takes 50 ms per call (a slow shadow)."""

    def predict(self, X: Any) -> np.ndarray:
        import time

        time.sleep(0.05)
        return (np.asarray(X, dtype=float).sum(axis=1) > 10).astype(np.int64)


def index_tar(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    """An index archive (``manifest.json`` first) with ``members`` (data None: a link, a device …), as bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        manifest = tarfile.TarInfo("manifest.json")
        manifest.size = 2
        tar.addfile(manifest, io.BytesIO(b"{}"))
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info
