"""The request and response schemas of the inference API's OpenAPI document (:func:`~mlpilot.serving.spec.
inference_openapi`): Open Inference Protocol v2's tensors and mlpilot's subset of the OpenAI API, as JSON Schema.

They describe what the data plane accepts and answers (``serving/codec.py``, ``serving/openai_schema.py``,
``serving/openai.py``) — the edges validate bodies themselves; these are documentation, and what the fuzz test
(``tests/integration/fuzz``) checks every answer against. Pure data.
"""

from __future__ import annotations

from typing import Any

from mlpilot.protocol.signature import DATATYPES

_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_OBJ: dict[str, Any] = {"type": "object"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": _STR, "datatype": {"enum": list(DATATYPES)}, "shape": {"type": "array", "items": _INT}},
}
_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "datatype": {"enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}, "binary_data": {"type": "boolean"}},
        },
        "data": {"description": "row-major values, flat or nested (absent with parameters.binary_data_size)"},
    },
}
_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "total_tokens"],
    "properties": {"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT},
}
_SAMPLING = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "seed": _INT,
    "stop": {"anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1, "maxItems": 4}]},
    "n": {"const": 1},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "variables": {"type": "object", "description": "mlpilot: values of the app prompt's template variables"},
}
_MODEL = {"type": "string", "minLength": 1, "description": "the deployed LLM app (deployment name)"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "OipError": {"type": "object", "required": ["error"], "properties": {"error": _STR}},
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {"message": _STR, "type": _STR, "param": _nullable(_STR), "code": _nullable(_STR)},
            }
        },
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}},
    },
    "Empty": {"type": "object", "maxProperties": 0},
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": _STR,
            "versions": {"type": "array", "items": _STR},
            "platform": _STR,
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META},
            "parameters": _OBJ,
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": _STR,
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": _STR,
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                    },
                },
            },
        },
        "example": {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]},
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": _STR,
            "model_version": _STR,
            "id": _STR,
            "parameters": _OBJ,
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": _STR, "object": {"const": "model"}, "created": _INT, "owned_by": _STR},
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}},
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": _MODEL,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": {"anyOf": [_STR, {"type": "null"}, {"type": "array", "items": _OBJ}]},
                        "name": _STR,
                        "tool_calls": {"type": "array", "items": _OBJ},
                        "tool_call_id": _STR,
                    },
                },
            },
            "tools": {"type": "array", "items": _OBJ},
            "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, _OBJ]},
            **_SAMPLING,
        },
        "example": {"model": "assistant", "messages": [{"role": "user", "content": "hello"}]},
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": _MODEL,
            "prompt": {"anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1, "maxItems": 1}]},
            **_SAMPLING,
        },
        "example": {"model": "assistant", "prompt": "hello"},
    },
    "Completion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": _STR,
            "object": {"enum": ["chat.completion", "text_completion"]},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "finish_reason"],
                    "properties": {
                        "index": _INT,
                        "finish_reason": _nullable(_STR),
                        "text": _STR,
                        "message": {
                            "type": "object",
                            "required": ["role"],
                            "properties": {"role": {"const": "assistant"}, "content": _nullable(_STR)},
                        },
                    },
                },
            },
            "usage": _USAGE,
            "system_fingerprint": _STR,
        },
    },
    "EmbeddingsRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _MODEL,
            "input": {"anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}]},
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
        "example": {"model": "vectors", "input": ["hello"]},
    },
    "Embeddings": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": _INT,
                        "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, _STR]},
                    },
                },
            },
            "model": _STR,
            "usage": _USAGE,
        },
    },
}


def json_body(schema: str, description: str = "") -> dict[str, Any]:
    """A request body or response of one JSON schema of :data:`SCHEMAS`."""
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


#: each server-sent event (OpenAPI before 3.2: ``schema`` describes one event)
_SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "string", "description": "a JSON chunk of the completion, last [DONE]"}},
        }
    }
}

#: the OIP v2 error responses of a route that names a model, and of one that runs it
_OIP_ERRORS = {"4XX": json_body("OipError", "the request is wrong or names no served model")}
_RUN_ERRORS = {
    "5XX": json_body("OipError", "the model failed (500), the server shed the request (503), it timed out (504)")
}
_OPENAI_ERRORS = {
    "4XX": json_body("OpenAIError", "the request is wrong or names no deployed app"),
    "5XX": json_body("OpenAIError", "the app's backend failed (500/502), or the server shed the request (503)"),
}

_INFER = {
    "requestBody": {"required": True, **json_body("InferenceRequest")},
    "responses": {
        "200": {
            "description": "JSON, or with binary outputs a JSON header of Inference-Header-Content-Length "
            "bytes followed by the raw tensors",
            "content": {
                "application/json": {"schema": _ref("InferenceResponse")},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **_OIP_ERRORS,
        **_RUN_ERRORS,
    },
}

#: ``(method, path)`` -> the OpenAPI operation fields beyond summary and scope: requestBody and responses
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v2"): {"responses": {"200": json_body("ServerMetadata")}},
    ("GET", "/v2/health/live"): {"responses": {"200": json_body("Empty")}},
    ("GET", "/v2/health/ready"): {
        "responses": {"200": json_body("Empty"), "503": json_body("OipError", "a deployment is not loaded yet")}
    },
    ("GET", "/v2/models/{name}"): {"responses": {"200": json_body("ModelMetadata"), **_OIP_ERRORS}},
    ("GET", "/v2/models/{name}/ready"): {
        "responses": {"200": json_body("Empty"), "503": json_body("OipError", "not loaded yet"), **_OIP_ERRORS}
    },
    ("GET", "/v2/models/{name}/versions/{version}"): {"responses": {"200": json_body("ModelMetadata"), **_OIP_ERRORS}},
    ("GET", "/v2/models/{name}/versions/{version}/ready"): {
        "responses": {"200": json_body("Empty"), "503": json_body("OipError", "not loaded yet"), **_OIP_ERRORS}
    },
    ("POST", "/v2/models/{name}/infer"): _INFER,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): _INFER,
    ("GET", "/v1/models"): {"responses": {"200": json_body("ModelList")}},
    ("GET", "/v1/models/{name}"): {"responses": {"200": json_body("Model"), **_OPENAI_ERRORS}},
    ("POST", "/v1/chat/completions"): {
        "requestBody": {"required": True, **json_body("ChatCompletionRequest")},
        "responses": {
            "200": {
                "description": "the completion, or with stream: true server-sent chunks",
                "content": {"application/json": {"schema": _ref("Completion")}, **_SSE},
            },
            **_OPENAI_ERRORS,
        },
    },
    ("POST", "/v1/completions"): {
        "requestBody": {"required": True, **json_body("CompletionRequest")},
        "responses": {
            "200": {
                "description": "the completion, or with stream: true server-sent chunks",
                "content": {"application/json": {"schema": _ref("Completion")}, **_SSE},
            },
            **_OPENAI_ERRORS,
        },
    },
    ("POST", "/v1/embeddings"): {
        "requestBody": {"required": True, **json_body("EmbeddingsRequest")},
        "responses": {"200": json_body("Embeddings"), **_OPENAI_ERRORS},
    },
    ("GET", "/metrics"): {
        "responses": {"200": {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": _STR}}}}
    },
}
