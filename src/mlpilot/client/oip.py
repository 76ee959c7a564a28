"""Client-side OIP v2 request building and response parsing (shared by embedded and remote clients)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.protocol.signature import DATATYPES, datatype_of


@dataclass(frozen=True)
class Prediction:
    """A prediction: named output arrays, plus which variant and model version answered."""

    outputs: dict[str, np.ndarray]
    model_version: str
    variant: str | None = None
    request_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]


def _tensor(name: str, values: Any) -> dict[str, Any]:
    arr = np.asarray(values)
    datatype = datatype_of(arr)
    data = [str(v) for v in arr.ravel()] if datatype == "BYTES" else arr.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


def build_request(data: Any, metadata: Mapping[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Turn user data into an OIP request body, using the model's metadata to name the inputs.

    ``data`` may be a full OIP body (a dict with ``inputs``), a DataFrame, a dict of column → values, a list of row
    dicts, or an array-like (for single-input models).
    """
    if isinstance(data, Mapping) and "inputs" in data:
        return dict(data)
    inputs_meta = list(metadata.get("inputs") or [])
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        data = pd.DataFrame(data)
    if isinstance(data, Mapping):
        data = pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in data.items()})
    if isinstance(data, pd.DataFrame):
        names = [i["name"] for i in inputs_meta]
        if len(inputs_meta) == 1 and len(inputs_meta[0]["shape"]) == 2 and inputs_meta[0]["name"] not in data:
            spec = inputs_meta[0]
            arr = data.to_numpy(dtype=DATATYPES[spec["datatype"]] if spec["datatype"] != "BYTES" else object)
            inputs = [_tensor(spec["name"], arr)]
        else:
            missing = [n for n in names if n not in data.columns]
            if names and missing:
                raise InvalidArgument(f"the data lacks the model's inputs {missing}")
            inputs = [_tensor(str(c), data[c].to_numpy()) for c in (names or list(data.columns))]
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        name = inputs_meta[0]["name"] if len(inputs_meta) == 1 else "input-0"
        inputs = [_tensor(name, arr)]
    body: dict[str, Any] = {"inputs": inputs}
    if request_id:
        body["id"] = request_id
    return body


def parse_response(body: Mapping[str, Any], variant: str | None, request_id: str | None) -> Prediction:
    outputs: dict[str, np.ndarray] = {}
    for out in body.get("outputs", []):
        dt = out["datatype"]
        arr = np.asarray(out["data"], dtype=object if dt == "BYTES" else DATATYPES[dt])
        outputs[out["name"]] = arr.reshape(out["shape"])
    return Prediction(
        outputs=outputs,
        model_version=str(body.get("model_version", "")),
        variant=variant,
        request_id=request_id,
        raw=dict(body),
    )
