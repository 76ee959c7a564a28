"""A minimal, idiomatic BentoML 1.4 service: the joblib model loaded in ``__init__``, one typed sync API.

The API's route is the V2 infer path and its parameter is the V2 body's ``inputs`` list, so it takes the same
request bytes as every other server. Configured by the environment: ``BENCH_MODEL_PATH``, ``BENCH_MODEL_NAME``.
Run: ``bentoml serve bentoml_service:SklearnV2 --working-dir bench/peers --host 127.0.0.1 --port P``.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib
import numpy as np
from pydantic import BaseModel

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "model")


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


@bentoml.service
class SklearnV2:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api(route=f"/v2/models/{MODEL_NAME}/infer")
    def infer(self, inputs: list[InferInput]) -> dict[str, Any]:
        tensor = inputs[0]
        x = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
        y = self.model.predict(x)
        output = {"name": "predict", "datatype": "INT64", "shape": list(y.shape), "data": y.tolist()}
        return {"model_name": MODEL_NAME, "outputs": [output]}
