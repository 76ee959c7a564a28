"""The upper bound: a raw ASGI callable, orjson for JSON, model.predict inline; served by uvicorn (uvloop, httptools).

Serves ``POST /v2/models/{BENCH_MODEL_NAME}/infer`` (Open Inference Protocol v2 JSON, first input tensor) and
``GET /v2/health/ready``. Configured by the environment: ``BENCH_MODEL_PATH`` (joblib file), ``BENCH_MODEL_NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import joblib
import numpy as np
import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "model")
MODEL = joblib.load(os.environ["BENCH_MODEL_PATH"])
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
JSON_HEADERS = [(b"content-type", b"application/json")]


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _infer(body: bytes) -> bytes:
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    y = MODEL.predict(x)
    output = {"name": "predict", "datatype": "INT64", "shape": list(y.shape), "data": y.tolist()}
    return orjson.dumps({"model_name": MODEL_NAME, "outputs": [output]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == INFER_PATH:
        body = await _read_body(receive)
        try:
            payload = _infer(body)
        except Exception as exc:  # a bad request body: report it like a server would
            await _respond(send, 400, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return
        await _respond(send, 200, payload)
    elif method == "GET" and path in ("/v2/health/ready", "/v2/health/live"):
        await _respond(send, 200, b"{}")
    else:
        await _respond(send, 404, b'{"error":"not found"}')
