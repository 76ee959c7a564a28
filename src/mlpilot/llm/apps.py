"""LLM apps as pure, validated data: a prompt, a retriever, a generator, tools and parameters, deployable like a model.

An app file is JSON (or YAML with PyYAML)::

    {
      "type": "chat",
      "description": "Answers support questions from the knowledge base",
      "prompt": "support-prompt@prod",
      "retriever": {"index": "support-kb@prod", "k": 4, "min_score": 0.1},
      "generator": {"local": "smollm2"},
      "tools": ["order-status@prod"],
      "parameters": {"temperature": 0, "max_tokens": 200},
      "pricing": {"input_per_million": 0.15, "output_per_million": 0.6}
    }

* ``type``: ``chat`` (default; serves ``/v1/chat/completions`` and ``/v1/completions``) or ``embeddings``
  (serves ``/v1/embeddings`` with its ``embedder``).
* ``prompt``, ``retriever.index`` and ``tools`` name registered artifacts (``NAME``, ``NAME:VERSION`` or
  ``NAME@ALIAS``). Unlike a deployment's variants, they are **live bindings**: the control plane resolves them
  every time it compiles a routing snapshot, so moving the prompt's or the index's alias (a rollback, say)
  changes what the deployed app uses within a snapshot propagation, without a restart, and the request log
  records the versions each answer used. Pin ``NAME:VERSION`` for a frozen app.
* ``generator``: ``{"local": "smollm2"}`` (the offline SmolLM2-135M-Instruct) or an OpenAI-compatible backend
  (``base_url``, ``model``, ``api_key_env``, ``timeout_s``, ``max_retries``, ``fallback`` …, see
  :class:`~mlpilot.llm.backends.BackendSpec`). ``embedder``: ``{"local": "all-minilm-l6-v2"}`` (default) or a
  backend; the retriever checks it is the model the index was built with.
* ``parameters``: defaults for every call (``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``);
  a request's own values win. ``context_window``: the most prompt + completion tokens the model takes (a
  request over it is refused with both numbers; for remote backends the prompt's tokens are estimated).
* ``max_tool_rounds``: how many times the app may run its tools and call the model again in one request.

The retrieved chunks reach the prompt as the ``context`` variable (``retriever.context_variable``), one chunk per
paragraph as ``[doc-id] text``; the question is the ``question`` variable (``retriever.query_variable``), taken
from the request's variables or else from its last user message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlpilot.errors import InvalidArgument
from mlpilot.llm.backends import BackendSpec

__all__ = [
    "LOCAL_EMBEDDERS",
    "LOCAL_GENERATORS",
    "AppSpec",
    "EmbedderSpec",
    "GeneratorSpec",
    "Pricing",
    "RetrieverSpec",
    "artifact_refs",
    "generator_backends",
    "load_app_file",
    "parse_app",
    "validate_app_file",
    "with_generator_backends",
]

SCHEMA_VERSION = 1
LOCAL_GENERATORS = ("smollm2",)
LOCAL_EMBEDDERS = ("all-minilm-l6-v2",)
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?::[1-9][0-9]*|@[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PARAMETERS = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")


def _check_ref(value: str, what: str) -> str:
    if not isinstance(value, str) or not _REF_RE.match(value):
        raise ValueError(f"{what} {value!r} must be NAME, NAME:VERSION or NAME@ALIAS of a registered artifact")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetrieverSpec(_Strict):
    index: str
    k: int = Field(default=4, ge=1, le=100)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    query_variable: str = "question"
    context_variable: str = "context"
    max_context_chars: int = Field(default=6000, ge=100, le=1_000_000)

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        return _check_ref(value, "retriever.index")

    @field_validator("query_variable", "context_variable")
    @classmethod
    def _var(cls, value: str) -> str:
        if not _VAR_RE.match(value):
            raise ValueError(f"{value!r} is not a variable name (letters, digits, '_')")
        return value


class GeneratorSpec(_Strict):
    """``local`` names an offline model; otherwise ``backend`` is an OpenAI-compatible endpoint."""

    local: Literal["smollm2"] | None = None
    backend: BackendSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "local" not in data and "backend" not in data and data:
            return {"backend": {"name": data.get("name", "backend"), **data}}
        return data

    @model_validator(mode="after")
    def _one(self) -> GeneratorSpec:
        if (self.local is None) == (self.backend is None):
            raise ValueError('give either "local": "smollm2" or an OpenAI-compatible backend ("base_url", "model")')
        return self

    @property
    def label(self) -> str:
        return f"local:{self.local}" if self.local else f"{self.backend.name}:{self.backend.model}"  # type: ignore[union-attr]


class EmbedderSpec(_Strict):
    local: Literal["all-minilm-l6-v2"] | None = None
    backend: BackendSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "local" not in data and "backend" not in data and data:
            return {"backend": {"name": data.get("name", "embedder"), **data}}
        return data

    @model_validator(mode="after")
    def _one(self) -> EmbedderSpec:
        if (self.local is None) == (self.backend is None):
            raise ValueError('give either "local": "all-minilm-l6-v2" or an OpenAI-compatible backend')
        return self


class Pricing(_Strict):
    """Prices in currency units per million tokens."""

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        return ((input_tokens or 0) * self.input_per_million + (output_tokens or 0) * self.output_per_million) / 1e6


class AppSpec(_Strict):
    schema_version: int = SCHEMA_VERSION
    type: Literal["chat", "embeddings"] = "chat"
    description: str = Field(default="", max_length=2000)
    prompt: str | None = None
    retriever: RetrieverSpec | None = None
    generator: GeneratorSpec | None = None
    embedder: EmbedderSpec = Field(default_factory=lambda: EmbedderSpec(local="all-minilm-l6-v2"))
    tools: list[str] = Field(default_factory=list, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)
    context_window: int = Field(default=8192, ge=64, le=10_000_000)
    max_tool_rounds: int = Field(default=3, ge=0, le=20)
    pricing: Pricing | None = None

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}; this mlpilot reads {SCHEMA_VERSION}")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else _check_ref(value, "prompt")

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        for ref in value:
            _check_ref(ref, "tool")
        if len({r.split("@")[0].split(":")[0] for r in value}) != len(value):
            raise ValueError("a tool is listed twice")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; allowed: {list(_PARAMETERS)}")
        return value

    @model_validator(mode="after")
    def _shape(self) -> AppSpec:
        if self.type == "chat" and self.generator is None:
            raise ValueError('a chat app needs a "generator" ({"local": "smollm2"} or an OpenAI-compatible backend)')
        if self.type == "embeddings" and (self.prompt or self.retriever or self.tools or self.generator):
            raise ValueError("an embeddings app has only an embedder (no prompt, retriever, generator or tools)")
        if self.tools and self.generator is not None and self.generator.local is not None:
            raise ValueError(
                f"the local generator {self.generator.local!r} does not call tools: give the app an "
                "OpenAI-compatible generator that does (vLLM, Ollama, a provider) or drop its tools"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _format_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "app"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return f"{source}: " + "; ".join(parts)


def parse_app(data: Any, *, source: str = "app") -> AppSpec:
    """Validate app data (a dict) into an :class:`AppSpec`.

    Raises:
        InvalidArgument: ``"app.json: retriever.k: Input should be less than or equal to 100"`` — every problem.
    """
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: an app is a JSON object, got {type(data).__name__}")
    try:
        return AppSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(_format_error(exc, source)) from None


def load_app_file(path: str | Path) -> AppSpec:
    from mlpilot.llm.prompts import _read_document

    path = Path(path)
    return parse_app(_read_document(path), source=path.name)


def artifact_refs(spec: AppSpec) -> dict[str, Any]:
    """The artifacts an app binds: ``{"prompt": ref | None, "index": ref | None, "tools": [ref]}``."""
    return {"prompt": spec.prompt, "index": spec.retriever.index if spec.retriever else None, "tools": list(spec.tools)}


def validate_app_file(path: str | Path) -> dict[str, Any]:
    """Validate an app file; the metadata the registry stores with its version: ``{"app": {...the spec...}}``."""
    spec = load_app_file(path)
    return {"app": spec.to_dict()}


def generator_backends(spec: AppSpec) -> list[BackendSpec]:
    """The backends an app generates with, in the order they are tried (each without its ``fallback``); empty for
    the local generator."""
    out = []
    backend = spec.generator.backend if spec.generator is not None else None
    while backend is not None:
        out.append(backend.model_copy(update={"fallback": None}))
        backend = backend.fallback
    return out


def with_generator_backends(spec: AppSpec, backends: Sequence[BackendSpec]) -> AppSpec:
    """``spec`` generating with ``backends``: the first answers, each next one is the previous one's fallback (e.g.
    a failover drops the failing backend from the chain; pinning keeps one backend alone)."""
    if not backends:
        raise InvalidArgument("an app that generates with a backend needs at least one")
    chain: BackendSpec | None = None
    for backend in reversed(backends):
        chain = backend.model_copy(update={"fallback": chain})
    assert chain is not None
    generator = {"backend": chain.model_dump(mode="json", exclude_none=True)}
    return parse_app({**spec.to_dict(), "generator": generator})
