"""Prediction drift: the feature-drift tests applied to a model's outputs.

A shift in what the model outputs (scores, probabilities, predicted labels, regression values) is visible without
labels and often before anything else. It is the same computation as feature drift, on output columns, so this
module only shapes the outputs into a table and runs :class:`~mlpilot.monitoring.table.TableDrift` on it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring.results import DriftResult
from mlpilot.monitoring.table import TableDrift


def outputs_frame(outputs: Any, *, role: str) -> pd.DataFrame:
    """Model outputs as a DataFrame.

    A DataFrame is kept; a Series keeps its name (default ``prediction``); a 1-D array becomes ``prediction``;
    a 2-D array (one column per class or output) becomes ``prediction_0 … prediction_{k-1}``.

    Args:
        outputs: the model outputs.
        role: ``reference`` or ``current``, for error messages.

    Returns:
        a DataFrame with one column per output.

    Raises:
        InvalidArgument: more than two dimensions.
    """
    if isinstance(outputs, pd.DataFrame):
        return outputs
    if isinstance(outputs, pd.Series):
        return outputs.to_frame(name=outputs.name if outputs.name is not None else "prediction")
    array = np.asarray(outputs)
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    raise InvalidArgument(f"{role} outputs must be 1-D or 2-D, got shape {array.shape}")


def prediction_drift(
    reference_outputs: Any,
    current_outputs: Any,
    *,
    kind: Literal["auto", "numeric", "categorical"] = "auto",
    numeric_test: str = "ks",
    categorical_test: str = "chi2",
    alpha: float = 0.05,
    correction: str = "holm",
    drift_share: float = 0.5,
) -> DriftResult:
    """Test whether a model's outputs drifted.

    Args:
        reference_outputs: outputs on the reference (validation) data: labels, scores, probabilities (2-D:
            one column per class) or a DataFrame of output columns.
        current_outputs: outputs on the current window, same shape and columns.
        kind: ``auto`` tests float columns as numeric (scores, probabilities, regression values) and everything
            else — integer, bool and text labels — as categorical; ``numeric``/``categorical`` force one kind.
        numeric_test: the numeric test (see :class:`TableDrift`).
        categorical_test: the categorical test (see :class:`TableDrift`).
        alpha: family significance level.
        correction: multiple-testing correction across output columns.
        drift_share: share of drifting output columns that makes the outputs drift.

    Returns:
        a :class:`DriftResult` with one row per output column.

    Raises:
        InvalidArgument: empty or mismatched outputs, an unknown ``kind``, a text column forced numeric.
    """
    if kind not in ("auto", "numeric", "categorical"):
        raise InvalidArgument(f"prediction_drift(kind={kind!r}) is invalid; use 'auto', 'numeric' or 'categorical'")
    reference = outputs_frame(reference_outputs, role="reference")
    current = outputs_frame(current_outputs, role="current")
    columns = list(reference.columns)
    if kind == "auto":
        numeric = [c for c in columns if pd.api.types.is_float_dtype(reference[c].dtype)]
    else:
        numeric = columns if kind == "numeric" else []
    categorical = [c for c in columns if c not in numeric]
    detector = TableDrift(
        numeric_test=numeric_test,
        categorical_test=categorical_test,
        alpha=alpha,
        correction=correction,
        drift_share=drift_share,
        numeric_columns=numeric,
        categorical_columns=categorical,
    )
    return detector.fit(reference).predict(current)
