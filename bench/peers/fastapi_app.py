"""A bare, idiomatic FastAPI app: pydantic request model, a sync endpoint (FastAPI runs it in its threadpool).

Serves ``POST /v2/models/{name}/infer`` (Open Inference Protocol v2 JSON, first input tensor) and
``GET /v2/health/ready``. Configured by the environment: ``BENCH_MODEL_PATH`` (joblib file), ``BENCH_MODEL_NAME``.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "model")
MODEL = joblib.load(os.environ["BENCH_MODEL_PATH"])

app = FastAPI()


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput]


@app.get("/v2/health/ready")
def ready() -> dict[str, Any]:
    return {}


@app.post("/v2/models/{model_name}/infer")
def infer(model_name: str, request: InferRequest) -> dict[str, Any]:
    if model_name != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"model {model_name!r} not found")
    tensor = request.inputs[0]
    x = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
    y = MODEL.predict(x)
    output = {"name": "predict", "datatype": "INT64", "shape": list(y.shape), "data": y.tolist()}
    return {"model_name": MODEL_NAME, "id": request.id, "outputs": [output]}
