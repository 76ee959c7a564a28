"""The inference API's OpenAPI document: every route declares its request body, its answers and its error bodies
(found missing by the schemathesis run, tests/integration/fuzz, when the document declared only a bare 200), and
its schemas describe what the edges really send and accept."""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

from mlpilot.serving.codec import decode_request, encode_response
from mlpilot.serving.openai import error_body
from mlpilot.serving.spec import INFERENCE_ROUTES, inference_openapi

SPEC = inference_openapi("1.0")


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    return jsonschema.Draft202012Validator(schema)


def _op(method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = SPEC["paths"][path][method.lower()]
    return op


@pytest.mark.parametrize("route", INFERENCE_ROUTES, ids=[f"{r.method} {r.path}" for r in INFERENCE_ROUTES])
def test_every_route_declares_its_answers(route: Any) -> None:
    op = _op(route.method, route.path)
    responses = op["responses"]
    assert responses["200"]["content"], "a 200 with a declared body"
    if route.method == "POST":
        assert op["requestBody"]["required"] is True
        assert "application/json" in op["requestBody"]["content"]
    if route.deployment is not None:  # names a model or app: unknown ones are a 4xx with a declared body
        assert "4XX" in responses
        assert responses["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("Error")


def test_the_document_is_openapi_3_1_with_resolvable_schemas() -> None:
    assert SPEC["openapi"] == "3.1.0" and SPEC["info"]["version"] == "1.0"
    for name in SPEC["components"]["schemas"]:
        jsonschema.Draft202012Validator.check_schema(SPEC["components"]["schemas"][name])
        _validator(name).is_valid({})  # every $ref inside resolves


def test_the_examples_are_valid_requests() -> None:
    for name in ("InferenceRequest", "ChatCompletionRequest", "CompletionRequest", "EmbeddingsRequest"):
        schema = SPEC["components"]["schemas"][name]
        _validator(name).validate(schema["example"])
    example = SPEC["components"]["schemas"]["InferenceRequest"]["example"]
    decoded = decode_request(orjson.dumps(example))
    assert decoded.inputs["input-0"].shape == (1, 4)


@pytest.mark.parametrize("binary", [False, True])
def test_encoded_responses_conform(binary: bool) -> None:
    outputs = [
        ("predict", np.array([0, 2], dtype=np.int64), False),
        ("proba", np.array([[0.1, 0.9], [0.5, 0.5]], dtype=np.float16), binary),
        ("label", np.array([b"a", b"b"], dtype=object), False),
    ]
    body, header = encode_response("iris", "1", outputs, "req-1", {"variant": "a"})
    head = body if header is None else body[:header]
    _validator("InferenceResponse").validate(orjson.loads(head))


def test_error_bodies_conform() -> None:
    _validator("OipError").validate({"error": "no deployment named 'x'"})
    _validator("OpenAIError").validate(orjson.loads(error_body(404, "no app", "model")))
    assert not _validator("OpenAIError").is_valid({"error": "flat"})
