"""Reading tabular files (datasets and samples) into DataFrames/arrays, and normalising datasets to Parquet."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument

TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".json", ".jsonl", ".npy")


def read_table(path: Path | str, *, allow_array: bool = True) -> Any:
    """Read a CSV, Parquet, JSON(lines) or ``.npy`` file; ``InvalidArgument`` with the reason if it cannot."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        if suffix == ".json":
            return pd.read_json(path)
        if suffix == ".npy" and allow_array:
            return np.load(path, allow_pickle=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InvalidArgument(f"cannot read {path.name} as {suffix[1:]}: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own (ArrowInvalid…): translate at this adapter
        raise InvalidArgument(f"cannot read {path.name} as {suffix[1:]}: {exc}") from exc
    allowed = TABLE_SUFFIXES if allow_array else TABLE_SUFFIXES[:-1]
    raise InvalidArgument(f"unsupported file type {path.name!r}; use one of {', '.join(allowed)}")


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Deterministic zstd Parquet bytes of a DataFrame (no index), the stored form of every dataset."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidArgument(f"a dataset must be a DataFrame or a table file, got {type(df).__name__}")
    if df.shape[1] == 0:
        raise InvalidArgument("the dataset has no columns")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def describe(df: pd.DataFrame) -> dict[str, Any]:
    """Metadata stored with a dataset version: rows and column dtypes."""
    return {"format": "parquet", "rows": len(df), "columns": {str(c): str(t) for c, t in df.dtypes.items()}}


def sample_to_bytes(sample: Any) -> tuple[bytes, str]:
    """Serialise an in-memory sample for upload: DataFrame → Parquet, anything array-like → ``.npy``."""
    if isinstance(sample, pd.DataFrame):
        return to_parquet_bytes(sample), "sample.parquet"
    arr = np.asarray(sample)
    if arr.dtype == object:
        raise InvalidArgument("an array sample must be numeric or boolean; use a DataFrame for strings")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue(), "sample.npy"
