"""Tool definitions: the MCP ``Tool`` shape, validated, converted for models, and called.

A tool file is one JSON object in the shape of MCP's ``Tool`` (``name``, ``title``, ``description``,
``inputSchema``, ``outputSchema``, ``annotations``) plus mlpilot's ``implementation``, which says how to run it::

    {
      "name": "get_weather",
      "description": "Current weather for a city.",
      "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
      "outputSchema": {"type": "object", "properties": {"temp_c": {"type": "number"}}, "required": ["temp_c"]},
      "annotations": {"readOnlyHint": true, "openWorldHint": true},
      "implementation": {"type": "http", "url": "http://weather.internal/v1/now", "method": "POST", "timeout_s": 5}
    }

``implementation`` is either ``{"type": "python", "callable": "package.module:function"}`` or ``{"type": "http",
"url": …, "method": "POST", "timeout_s": 10, "headers": {…}}``; without it a tool can be described to a model but
not called. Schemas are checked against their JSON Schema meta-schema (Draft 2020-12 unless ``$schema`` says
otherwise). A tool *execution* failure (the function raised, the server answered 500, a timeout, an output that
does not match ``outputSchema``) is a :class:`ToolResult` with ``is_error=True``, as in MCP, so a model can see it;
a bad *call* (arguments that do not match ``inputSchema``) raises :class:`~mlpilot.errors.InvalidArgument`.

The ``python`` implementation imports and runs code named by the tool file: who may register tools is the trust
boundary. The checks on the callable string (``module:attr``, identifiers only, no dunders, no ``os``/
``subprocess``/``builtins``… targets) stop mistakes and the obvious misuse, they are not a sandbox.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlpilot.errors import FailedPrecondition, InvalidArgument, LoadError, MissingExtra

if TYPE_CHECKING:
    import httpx
    from jsonschema.protocols import Validator

__all__ = [
    "MAX_TOOL_FILE_BYTES",
    "HttpImplementation",
    "PythonImplementation",
    "ToolAnnotations",
    "ToolResult",
    "ToolRunner",
    "ToolSpec",
    "call_tool",
    "check_arguments",
    "from_openai_tool",
    "load_tool_file",
    "parse_tool",
    "to_openai_tool",
    "tool_metadata",
    "validate_tool_file",
]

#: The largest tool file accepted (256 KiB): a tool definition is a few KiB; more is a mistake.
MAX_TOOL_FILE_BYTES = 256 * 1024
#: At most this many violations are listed in one error message.
MAX_VIOLATIONS = 10
#: How much of a failing HTTP answer's body is quoted in the error.
_BODY_EXCERPT = 300

_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_OPENAI_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CALLABLE_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")
_PATH_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# Modules whose functions run commands, load code or leave the process: never a tool target.
_DENIED_MODULES = frozenset(
    {
        "builtins", "code", "codeop", "ctypes", "importlib", "marshal", "multiprocessing", "nt", "os", "pickle",
        "posix", "pty", "runpy", "shutil", "signal", "socket", "subprocess", "sys",
    }
)  # fmt: skip
_DRAFT_NAMES = {
    "Draft3Validator": "draft-03",
    "Draft4Validator": "draft-04",
    "Draft6Validator": "draft-06",
    "Draft7Validator": "draft-07",
    "Draft201909Validator": "draft 2019-09",
    "Draft202012Validator": "draft 2020-12",
}
_UNKNOWN_DIALECT = object()


# ------------------------------------------------------------------------------------------------ JSON Schema


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError as exc:
        raise MissingExtra("tool schemas", "llm") from exc
    return jsonschema


def _json_path(root: str, parts: Iterable[str | int]) -> str:
    """``root.a.b[0]["odd key"]``: where in a document something is, as a user would write it."""
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PATH_KEY_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    """The validator for the schema's ``$schema`` dialect (Draft 2020-12 when absent); unknown dialects fail."""
    jsonschema = _jsonschema()
    dialect = schema.get("$schema")
    if dialect is None:
        return jsonschema.Draft202012Validator
    if not isinstance(dialect, str):
        raise _FieldError(".$schema must be a string (a JSON Schema dialect URI)")
    cls = jsonschema.validators.validator_for(schema, default=_UNKNOWN_DIALECT)
    if cls is _UNKNOWN_DIALECT:
        raise _FieldError(
            f".$schema: unknown JSON Schema dialect {dialect!r}; use draft-04, -06, -07, 2019-09 or 2020-12 "
            '(e.g. "https://json-schema.org/draft/2020-12/schema") or leave it out'
        )
    return cls


def _compile(schema: Mapping[str, Any]) -> Validator:
    cls = _validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _check_tool_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """MCP requires ``"type": "object"``; the rest must be a valid schema for its dialect."""
    jsonschema = _jsonschema()
    if schema.get("type") != "object":
        raise _FieldError(f'.type must be "object" (got {json.dumps(schema.get("type"))})')
    cls = _validator_class(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = _json_path("", exc.path)
        draft = _DRAFT_NAMES.get(cls.__name__, cls.__name__)
        raise _FieldError(f"{'.' + where if where else ''}: {exc.message} (JSON Schema {draft})") from None
    return schema


def _violations(validator: Validator, instance: Any, root: str) -> list[dict[str, str]]:
    """Every violation of ``instance`` as ``{"path", "message"}``, sorted by path; ``required`` names the key."""
    found = []
    for err in validator.iter_errors(instance):
        path = _json_path(root, err.absolute_path)
        if err.validator == "required" and isinstance(err.validator_value, list):
            missing = next((p for p in err.validator_value if err.message == f"{p!r} is a required property"), None)
            if isinstance(missing, str):
                found.append({"path": _json_path(path, [missing]), "message": "is a required property"})
                continue
        found.append({"path": path, "message": err.message})
    return sorted(found, key=lambda v: (v["path"], v["message"]))


def _format_violations(violations: list[dict[str, str]]) -> str:
    shown = [
        f"{v['path']} {v['message']}" if v["message"] == "is a required property" else f"{v['path']}: {v['message']}"
        for v in violations[:MAX_VIOLATIONS]
    ]
    more = len(violations) - len(shown)
    return "; ".join(shown) + (f"; … and {more} more" if more > 0 else "")


# ------------------------------------------------------------------------------------------------------ spec


class _FieldError(ValueError):
    """A validation failure whose text is appended to the field's path (``.type must be …``, `` must be …``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PythonImplementation(_Strict):
    """Run ``callable`` (``package.module:function``) in this process with the arguments as keywords."""

    type: Literal["python"] = "python"
    callable: str = Field(description="package.module:function (or :Class.method)")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="default call timeout; None = no limit")

    @field_validator("callable")
    @classmethod
    def _check_callable(cls, value: str) -> str:
        if not _CALLABLE_RE.match(value):
            raise _FieldError(f' must be "package.module:function" (identifiers, one colon), got {value!r}')
        module, attr = value.split(":")
        if any(part.startswith("__") for part in [*module.split("."), *attr.split(".")]):
            raise _FieldError(f" must not name dunder attributes or modules, got {value!r}")
        if module.split(".")[0] in _DENIED_MODULES:
            raise _FieldError(f" must not point into {module.split('.')[0]!r} (runs commands or loads code)")
        return value


class HttpImplementation(_Strict):
    """Send the arguments as JSON (query parameters for GET) to ``url``; the JSON answer is the result."""

    type: Literal["http"] = "http"
    url: str
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    timeout_s: float = Field(10.0, gt=0, le=3600)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise _FieldError(f" must be an http:// or https:// URL, got {value!r}")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


Implementation = Annotated[PythonImplementation | HttpImplementation, Field(discriminator="type")]


class ToolAnnotations(_Strict):
    """MCP's behaviour hints; untrusted unless the tool's source is trusted."""

    title: str | None = None
    read_only_hint: bool | None = Field(None, alias="readOnlyHint")
    destructive_hint: bool | None = Field(None, alias="destructiveHint")
    idempotent_hint: bool | None = Field(None, alias="idempotentHint")
    open_world_hint: bool | None = Field(None, alias="openWorldHint")


class ToolSpec(_Strict):
    """A tool: MCP's ``Tool`` plus mlpilot's ``implementation``. JSON keys are MCP's camelCase.

    Construct from JSON with :meth:`from_dict` (errors become :class:`~mlpilot.errors.InvalidArgument`);
    serialise with :meth:`to_dict` (the tool file) or :meth:`to_mcp` (what an MCP ``tools/list`` returns).
    """

    name: str = Field(description="1-128 letters, digits, '_', '-' or '.' (MCP)")
    title: str | None = None
    description: str
    input_schema: dict[str, Any] = Field(alias="inputSchema")
    output_schema: dict[str, Any] | None = Field(None, alias="outputSchema")
    annotations: ToolAnnotations | None = None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = Field(None, alias="_meta")
    implementation: Implementation | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TOOL_NAME_RE.match(value):
            raise _FieldError(f" must be 1-128 letters, digits, '_', '-' or '.', got {value!r}")
        return value

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str) -> str:
        if not value.strip():
            raise _FieldError(" must say what the tool does (the model reads it to choose the tool)")
        return value

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_tool_schema(value)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "tool") -> ToolSpec:
        """Validate a parsed tool definition.

        Args:
            data: the JSON object (a dict).
            source: what to call it in errors, e.g. the file name.

        Raises:
            InvalidArgument: ``"{source}: {field} {what was expected}"``, one clause per problem.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{source}: a tool definition must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = [_describe(err) for err in exc.errors()]
            shown = "; ".join(problems[:MAX_VIOLATIONS])
            if len(problems) > MAX_VIOLATIONS:
                shown += f"; … and {len(problems) - MAX_VIOLATIONS} more"
            raise InvalidArgument(f"{source}: {shown}", detail={"source": source, "errors": problems}) from None

    def to_dict(self) -> dict[str, Any]:
        """The tool file's JSON object (MCP keys, ``implementation`` included, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_mcp(self) -> dict[str, Any]:
        """MCP's ``Tool`` object, as ``tools/list`` answers (without mlpilot's ``implementation``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"implementation"})


def _describe(err: Any) -> str:
    """One pydantic error as ``field.path what was expected``, with MCP's key names."""
    loc = list(err["loc"])
    if len(loc) >= 2 and loc[0] == "implementation" and loc[1] in ("python", "http"):
        del loc[1]  # the discriminator tag pydantic inserts
    path = _json_path("", loc)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), _FieldError):
        return f"{path}{ctx['error']}"
    if kind == "missing":
        return f"{path} is required"
    if kind == "extra_forbidden":
        return f"unknown field {path}"
    if kind == "union_tag_invalid":
        return f'{path}.type must be "python" or "http", got {json.dumps(ctx.get("tag"))}'
    if kind == "union_tag_not_found":
        return f'{path}.type is required: "python" or "http"'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{path} must be a JSON object"
    if kind == "string_type":
        return f"{path} must be a string"
    if kind in ("bool_type", "bool_parsing"):
        return f"{path} must be true or false"
    if kind == "literal_error":
        return f"{path} must be {ctx.get('expected', 'one of the allowed values')}"
    return f"{path}: {err['msg']}"


# ------------------------------------------------------------------------------------------- files, metadata


def parse_tool(data: bytes | str, *, source: str = "tool.json") -> ToolSpec:
    """Parse and validate a tool file's content.

    Raises:
        InvalidArgument: too large, not UTF-8, not JSON, or not a valid tool (the message names ``source``).
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_TOOL_FILE_BYTES:
        raise InvalidArgument(
            f"{source}: {len(raw)} bytes is too large; a tool file is at most {MAX_TOOL_FILE_BYTES} bytes (256 KiB)"
        )
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return ToolSpec.from_dict(parsed, source=source)


def load_tool_file(path: str | Path) -> ToolSpec:
    """Read, parse and validate a tool file (JSON, at most 256 KiB).

    Raises:
        InvalidArgument: as :func:`parse_tool`, or the file cannot be read.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_TOOL_FILE_BYTES:
            raise InvalidArgument(
                f"{p.name}: {size} bytes is too large; a tool file is at most {MAX_TOOL_FILE_BYTES} bytes (256 KiB)"
            )
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{p.name}: cannot read the tool file: {exc.strerror or exc}") from None
    return parse_tool(data, source=p.name)


def tool_metadata(spec: ToolSpec) -> dict[str, Any]:
    """The registry version's metadata for a tool: ``{"tool": {name, implementation, required, properties,
    read_only}}`` (``implementation`` is ``"python"``, ``"http"`` or None)."""
    props = spec.input_schema.get("properties")
    required = spec.input_schema.get("required")
    return {
        "tool": {
            "name": spec.name,
            "implementation": spec.implementation.type if spec.implementation else None,
            "required": [r for r in required if isinstance(r, str)] if isinstance(required, list) else [],
            "properties": list(props) if isinstance(props, dict) else [],
            "read_only": bool(spec.annotations and spec.annotations.read_only_hint),
        }
    }


def validate_tool_file(path: str | Path) -> dict[str, Any]:
    """Validate a tool file and return the metadata the registry stores with its version.

    Returns:
        ``{"tool": {"name": str, "implementation": "python" | "http" | None, "required": [str],
        "properties": [str], "read_only": bool}}``.

    Raises:
        InvalidArgument: ``"tool.json: inputSchema.type must be "object" …"`` — the file, the field, what was
            expected.
    """
    return tool_metadata(load_tool_file(path))


# ----------------------------------------------------------------------------------------------- arguments


def check_arguments(spec: ToolSpec, arguments: Mapping[str, Any]) -> None:
    """Validate call arguments against the tool's ``inputSchema``.

    Raises:
        InvalidArgument: ``"tool 'get_weather': arguments.city is a required property; arguments.units: …"``,
            every violation (at most 10 listed; all in ``detail["violations"]``).
    """
    _check_arguments(spec, _compile(spec.input_schema), arguments)


def _check_arguments(spec: ToolSpec, validator: Validator, arguments: Mapping[str, Any]) -> None:
    from referencing.exceptions import Unresolvable

    if not isinstance(arguments, Mapping):
        raise InvalidArgument(f"tool {spec.name!r}: arguments must be a JSON object, got {type(arguments).__name__}")
    try:
        found = _violations(validator, dict(arguments), "arguments")
    except Unresolvable as exc:
        raise InvalidArgument(f"tool {spec.name!r}: inputSchema has a $ref that cannot be resolved: {exc}") from None
    if found:
        raise InvalidArgument(
            f"tool {spec.name!r}: {_format_violations(found)}", detail={"tool": spec.name, "violations": found}
        )


# ---------------------------------------------------------------------------------------------- OpenAI form


def to_openai_tool(spec: ToolSpec) -> dict[str, Any]:
    """The OpenAI function-tool form: ``{"type": "function", "function": {name, description, parameters}}``.

    Raises:
        InvalidArgument: the name has a ``.`` or more than 64 characters, which OpenAI's API rejects.
    """
    if not _OPENAI_NAME_RE.match(spec.name):
        raise InvalidArgument(
            f"tool {spec.name!r}: OpenAI function names allow only letters, digits, '_' and '-' (at most 64); "
            "rename the tool to use it with an OpenAI-compatible model"
        )
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": json.loads(json.dumps(spec.input_schema)),  # a copy the caller may change
        },
    }


def from_openai_tool(data: Mapping[str, Any]) -> ToolSpec:
    """A tool spec from an OpenAI function tool (Chat Completions' nested form or the Responses API's flat form).

    The result has no ``implementation``: it can be described to a model but not called. A function without
    ``parameters`` takes no arguments.

    Raises:
        InvalidArgument: not a function tool, or not a valid tool once converted.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"OpenAI tool: expected a JSON object, got {type(data).__name__}")
    if data.get("type", "function") != "function":
        raise InvalidArgument(f"OpenAI tool: only function tools convert, got type {data.get('type')!r}")
    fn = data.get("function", data)
    if not isinstance(fn, Mapping):
        raise InvalidArgument("OpenAI tool: function must be a JSON object")
    if not fn.get("description"):
        raise InvalidArgument(
            f"OpenAI tool {fn.get('name')!r}: function.description is required (the model reads it); add one"
        )
    body = {
        "name": fn.get("name"),
        "description": fn["description"],
        "inputSchema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    return ToolSpec.from_dict(body, source=f"OpenAI tool {fn.get('name')!r}")


# -------------------------------------------------------------------------------------------------- results

ToolErrorKind = Literal["exception", "timeout", "http_status", "transport", "bad_output"]


class ToolResult(BaseModel):
    """MCP's ``CallToolResult`` plus how long the call took and, for errors, what kind of failure it was.

    ``content`` is a list of ``{"type": "text", "text": …}`` blocks (a plain string is accepted and wrapped);
    ``structured_content`` is set when the tool has an ``outputSchema`` and returned a matching object.
    ``error_kind`` lets a caller decide on retries (``timeout``/``transport``/``http_status`` may be transient).
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = Field(None, alias="structuredContent")
    is_error: bool = Field(False, alias="isError")
    error_kind: ToolErrorKind | None = None
    duration_s: float = Field(0.0, ge=0)

    @field_validator("content", mode="before")
    @classmethod
    def _wrap_text(cls, value: Any) -> Any:
        return [{"type": "text", "text": value}] if isinstance(value, str) else value

    @property
    def text(self) -> str:
        """The text blocks joined by newlines: what to hand back to a model as the tool message."""
        return "\n".join(str(c.get("text", "")) for c in self.content if c.get("type") == "text")

    def to_mcp(self) -> dict[str, Any]:
        """MCP's ``CallToolResult`` JSON (``content``, ``structuredContent`` if any, ``isError``)."""
        return self.model_dump(
            mode="json", by_alias=True, exclude_none=True, include={"content", "structured_content", "is_error"}
        )


class _ToolFailure(Exception):
    def __init__(self, kind: ToolErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ToolErrorKind = kind


# --------------------------------------------------------------------------------------------------- runner


def _resolve_callable(spec: ToolSpec, target: str) -> Callable[..., Any]:
    import importlib

    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module raised while importing
        raise LoadError(
            f"tool {spec.name!r}: cannot import module {module_name!r} for implementation.callable "
            f"({type(exc).__name__}: {exc}); install it where the tool runs"
        ) from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise LoadError(f"tool {spec.name!r}: {target!r} does not exist ({attr!r} not found)") from None
    if not callable(obj):
        raise LoadError(f"tool {spec.name!r}: {target!r} is a {type(obj).__name__}, not a function")
    return obj


def _invoke(fn: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    value = fn(**arguments)
    if inspect.isawaitable(value):

        async def wait() -> Any:
            return await value

        value = asyncio.run(wait())
    return value


class ToolRunner:
    """Calls one tool: validators compiled and the callable imported once, at construction.

    A runner for an ``http`` tool keeps one connection pool; close it with :meth:`close` (or use ``with``).
    It does not retry: ``ToolResult.error_kind`` tells the caller what failed.

    Raises (at construction):
        FailedPrecondition: the spec has no ``implementation``.
        LoadError: a ``python`` callable cannot be imported or is not callable.
    """

    def __init__(self, spec: ToolSpec) -> None:
        if spec.implementation is None:
            raise FailedPrecondition(
                f"tool {spec.name!r} has no implementation: it can be described to a model but not called; "
                'add "implementation" ({"type": "python", …} or {"type": "http", …}) to the tool file'
            )
        self.spec = spec
        self._input = _compile(spec.input_schema)
        self._output = _compile(spec.output_schema) if spec.output_schema is not None else None
        self._fn: Callable[..., Any] | None = None
        self._is_async = False
        self._client: httpx.Client | None = None
        impl = spec.implementation
        if isinstance(impl, PythonImplementation):
            self._fn = _resolve_callable(spec, impl.callable)
            self._is_async = inspect.iscoroutinefunction(self._fn)

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (a no-op for python tools)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def call(self, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> ToolResult:
        """Validate the arguments, run the tool, and check its output.

        Args:
            arguments: the call's arguments (a JSON object), matched against ``inputSchema``.
            timeout_s: overrides the implementation's ``timeout_s`` (seconds). A python tool that times out
                keeps running in its (daemon) thread; the caller gets the error at once. For http tools it
                bounds each phase (connect, send, each read), as httpx's timeouts do.

        Returns:
            A :class:`ToolResult`; execution failures are ``is_error=True`` with a one-line message.

        Raises:
            InvalidArgument: the arguments do not match ``inputSchema``, or ``timeout_s`` is not positive.
        """
        if timeout_s is not None and not timeout_s > 0:
            raise InvalidArgument(f"tool {self.spec.name!r}: timeout_s must be > 0 seconds, got {timeout_s}")
        _check_arguments(self.spec, self._input, arguments)
        args = dict(arguments)
        impl = self.spec.implementation
        start = time.perf_counter()
        try:
            if isinstance(impl, PythonImplementation):
                value = self._call_python(args, timeout_s if timeout_s is not None else impl.timeout_s)
            else:
                assert isinstance(impl, HttpImplementation)
                value = self._call_http(impl, args, timeout_s if timeout_s is not None else impl.timeout_s)
            result = self._result(value)
        except _ToolFailure as failure:
            return ToolResult(
                content=f"tool {self.spec.name!r} failed: {failure}",
                is_error=True,
                error_kind=failure.kind,
                duration_s=time.perf_counter() - start,
            )
        return result.model_copy(update={"duration_s": time.perf_counter() - start})

    # -- python

    def _call_python(self, args: dict[str, Any], timeout: float | None) -> Any:
        fn = self._fn
        assert fn is not None
        if timeout is None and not self._is_async:
            try:
                return _invoke(fn, args)
            except Exception as exc:
                raise _ToolFailure("exception", f"{type(exc).__name__}: {exc}") from exc
        # A thread of its own: a timeout can return at once, and a coroutine gets an event loop even when the
        # caller is inside one.
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = _invoke(fn, args)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=target, name=f"mlpilot-tool-{self.spec.name}", daemon=True).start()
        if not done.wait(timeout):
            raise _ToolFailure("timeout", f"timed out after {timeout:g} s")
        if "error" in box:
            error = box["error"]
            if not isinstance(error, Exception):
                raise error
            raise _ToolFailure("exception", f"{type(error).__name__}: {error}") from error
        return box.get("value")

    # -- http

    def _call_http(self, impl: HttpImplementation, args: dict[str, Any], timeout: float) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.Client(headers={"accept": "application/json"})
        request: dict[str, Any] = {"headers": impl.headers, "timeout": timeout}
        if impl.method == "GET":
            request["params"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}
        else:
            request["json"] = args
        try:
            response = self._client.request(impl.method, impl.url, **request)
        except httpx.TimeoutException as exc:
            raise _ToolFailure("timeout", f"timed out after {timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise _ToolFailure("transport", f"cannot reach {impl.url}: {type(exc).__name__}: {exc}") from exc
        body = response.text
        if not response.is_success:
            excerpt = body[:_BODY_EXCERPT] + ("…" if len(body) > _BODY_EXCERPT else "")
            message = f"HTTP {response.status_code} from {impl.url}" + (f": {excerpt}" if excerpt.strip() else "")
            raise _ToolFailure("http_status", message)
        if not body.strip():
            return None
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return json.loads(body)
            except json.JSONDecodeError as exc:
                raise _ToolFailure(
                    "bad_output", f"answered invalid JSON ({exc.msg} at line {exc.lineno}): {body[:80]!r}"
                ) from exc
        if self._output is not None:
            raise _ToolFailure("bad_output", f"answered {ctype or 'no content type'}, not JSON, but has outputSchema")
        return body

    # -- output

    def _result(self, value: Any) -> ToolResult:
        """MCP's result for a returned value: text for strings, JSON text (+ structured content) otherwise."""
        if value is None and self._output is None:
            return ToolResult()
        if isinstance(value, str) and self._output is None:
            return ToolResult(content=value)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _ToolFailure("bad_output", f"returned a value that is not JSON ({exc})") from exc
        if self._output is None:
            return ToolResult(content=text)
        if not isinstance(value, dict):
            raise _ToolFailure("bad_output", f"returned {type(value).__name__}; outputSchema expects a JSON object")
        found = _violations(self._output, value, "output")
        if found:
            raise _ToolFailure("bad_output", f"output does not match outputSchema: {_format_violations(found)}")
        return ToolResult(content=text, structured_content=value)


def call_tool(spec: ToolSpec, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> ToolResult:
    """Validate ``arguments`` and run the tool once (see :meth:`ToolRunner.call`); no retries.

    For repeated calls keep a :class:`ToolRunner`: it compiles the schemas and imports the callable once.

    Raises:
        InvalidArgument: the arguments do not match ``inputSchema``.
        FailedPrecondition: the spec has no implementation.
        LoadError: a python callable cannot be imported.
    """
    with ToolRunner(spec) as runner:
        return runner.call(arguments, timeout_s=timeout_s)
