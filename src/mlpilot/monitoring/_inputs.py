"""Input validation shared by the detectors: every user mistake becomes an ``InvalidArgument`` that says
what was wrong and how to fix it. Validation happens once, at the edge of ``fit``/``score``/``predict``."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument

#: What a univariate detector accepts: a pandas Series, a 1-D numpy array or a plain sequence.
Values = pd.Series | np.ndarray | Sequence[Any]
#: What a table or multivariate detector accepts: a DataFrame or a 2-D array.
Table = pd.DataFrame | np.ndarray


def check_fitted(detector: object, attribute: str) -> None:
    """Raise ``InvalidArgument`` when ``detector`` has no learned ``attribute`` yet (predict before fit)."""
    if not hasattr(detector, attribute):
        name = type(detector).__name__
        raise InvalidArgument(f"{name} is not fitted yet: call {name}.fit(reference) before score() or predict()")


def check_one_of(owner: object, param: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ``InvalidArgument`` when a hyperparameter is not one of ``allowed``."""
    if value not in allowed:
        raise InvalidArgument(f"{type(owner).__name__}({param}={value!r}) is invalid; use one of {list(allowed)}")


def check_interval(owner: object, param: str, value: float, low: float, high: float, *, closed: str = "both") -> None:
    """Raise ``InvalidArgument`` unless ``low <= value <= high`` (``closed`` ∈ both, left, right, neither)."""
    ok_low = value >= low if closed in ("both", "left") else value > low
    ok_high = value <= high if closed in ("both", "right") else value < high
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (ok_low and ok_high):
        lo = "[" if closed in ("both", "left") else "("
        hi = "]" if closed in ("both", "right") else ")"
        raise InvalidArgument(f"{type(owner).__name__}({param}={value!r}) must be a number in {lo}{low}, {high}{hi}")


def check_int(owner: object, param: str, value: object, minimum: int) -> None:
    """Raise ``InvalidArgument`` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgument(f"{type(owner).__name__}({param}={value!r}) must be an integer >= {minimum}")


def is_real_numeric(dtype: Any) -> bool:
    """True for integer and float dtypes (numpy or pandas nullable); False for bool, complex, object, text …"""
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def feature_name(values: object, default: str = "value") -> str:
    """The name of a pandas Series, or ``default`` for anything else."""
    if isinstance(values, pd.Series) and values.name is not None:
        return str(values.name)
    return default


def _as_series(values: Values, *, feature: str, role: str) -> pd.Series:
    if isinstance(values, pd.DataFrame):
        raise InvalidArgument(f"{role} data for feature {feature!r} is a DataFrame; pass one column (a Series)")
    if isinstance(values, pd.Series):
        return values
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidArgument(f"{role} data for feature {feature!r} must be one-dimensional, got shape {array.shape}")
    return pd.Series(array, copy=False)


def numeric_values(values: Values, *, feature: str, role: str) -> np.ndarray:
    """Finite float64 values of a numeric 1-D input; NaN and ±inf are dropped (they are a data-quality concern).

    Raises:
        InvalidArgument: the input is not numeric, not one-dimensional, or has no finite value.
    """
    series = _as_series(values, feature=feature, role=role)
    if not is_real_numeric(series.dtype):
        raise InvalidArgument(
            f"{role} data for feature {feature!r} is not numeric (dtype {series.dtype}); "
            "use a categorical test for it or convert it to numbers"
        )
    array = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(array)
    if not finite.all():
        array = array[finite]
    if array.size == 0:
        raise InvalidArgument(f"{role} window for feature {feature!r} is empty (no finite values)")
    return array


def category_values(values: Values, *, feature: str, role: str) -> pd.Series:
    """The non-missing values of a 1-D input, as a pandas Series (categories are compared by equality).

    Raises:
        InvalidArgument: the input is not one-dimensional or has no non-missing value.
    """
    series = _as_series(values, feature=feature, role=role).dropna()
    if len(series) == 0:
        raise InvalidArgument(f"{role} window for feature {feature!r} is empty (no non-missing values)")
    return series


def as_frame(data: object, *, role: str) -> pd.DataFrame:
    """Check that ``data`` is a non-empty DataFrame."""
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgument(f"{role} data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidArgument(f"{role} window is empty (0 rows)")
    return data


def require_columns(frame: pd.DataFrame, columns: Sequence[Hashable], *, role: str) -> None:
    """Raise ``InvalidArgument`` naming every column of ``columns`` that ``frame`` lacks."""
    missing = [str(c) for c in columns if c not in frame.columns]
    if missing:
        hint = "pass the same features as the reference" if role == "current" else "check the column names"
        raise InvalidArgument(f"{role} data lacks column(s) {missing}; {hint}", detail={"missing_columns": missing})


def numeric_matrix(data: object, columns: tuple[str, ...] | None, *, role: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """A finite 2-D float64 matrix from a DataFrame (all of ``columns``, or every column) or a 2-D array.

    Returns:
        ``(matrix of shape (n_rows, n_features), column names)``; arrays get names ``x0, x1, …``.

    Raises:
        InvalidArgument: empty, missing or non-numeric columns, wrong shape, NaN or infinite values.
    """
    if isinstance(data, pd.DataFrame):
        names = tuple(str(c) for c in data.columns) if columns is None else columns
        require_columns(data, names, role=role)
        frame = data[list(names)]
        bad = [c for c in names if not is_real_numeric(frame[c].dtype)]
        if bad:
            raise InvalidArgument(f"{role} columns {bad} are not numeric; encode or drop them first")
        matrix = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        array = np.asarray(data)
        if array.ndim != 2:
            raise InvalidArgument(f"{role} data must be a DataFrame or a 2-D array, got shape {array.shape}")
        if not is_real_numeric(array.dtype):
            raise InvalidArgument(f"{role} data is not numeric (dtype {array.dtype}); encode it first")
        matrix = array.astype(np.float64, copy=False)
        names = tuple(f"x{i}" for i in range(matrix.shape[1])) if columns is None else columns
        if matrix.shape[1] != len(names):
            raise InvalidArgument(f"{role} data has {matrix.shape[1]} columns, expected {len(names)} ({list(names)})")
    if matrix.shape[0] == 0:
        raise InvalidArgument(f"{role} window is empty (0 rows)")
    if matrix.shape[1] == 0:
        raise InvalidArgument(f"{role} data has no columns")
    if not np.isfinite(matrix).all():
        raise InvalidArgument(f"{role} data contains NaN or infinite values; impute or drop those rows first")
    return matrix, names
