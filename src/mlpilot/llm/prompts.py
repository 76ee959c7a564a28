"""Prompts as pure, validated data: ``{{var}}`` templates, text or chat, plus model config.

A prompt file is JSON (``.json``), or YAML (``.yaml``/``.yml``) when PyYAML is installed, in the shape MLflow and
Langfuse use::

    {
      "type": "chat",
      "description": "Answers support questions",
      "template": [
        {"role": "system", "content": "You are a support agent for {{product}}."},
        {"role": "user", "content": "{{ user.name }} asks: {{question}}"}
      ],
      "config": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 512, "stop": ["\\n\\n"]},
      "variables": {"product": {"default": "mlpilot", "description": "product name"}}
    }

Fields: ``type`` (``"text"`` or ``"chat"``; inferred from ``template`` when absent), ``template`` (a string for text;
for chat a list of 1-200 messages with ``role`` in system/user/assistant/tool, a non-empty string ``content`` and
optionally ``name`` and ``tool_call_id``), optional ``config`` (``model``, ``temperature`` 0..2, ``max_tokens`` >= 1,
``top_p`` 0..1, ``stop`` list of strings, ``response_format`` object; any other JSON keys are kept as they are),
optional ``variables`` (declared names with an optional ``default`` and ``description``: an object keyed by name,
or a list of names or of ``{"name": …}`` objects), optional ``description`` and optional ``schema_version`` (1).
Unknown fields are errors, so typos are caught at registration.

The template language is deliberately *not* Jinja: a template is data, so rendering it runs no code and always
terminates.

- ``{{name}}`` or ``{{ name }}`` inserts a value; names are identifiers, with dots for nested lookups
  (``{{user.name}}`` reads ``values["user.name"]``, else ``values["user"]["name"]``).
- ``\\{{`` is a literal ``{{`` (in a JSON file, write ``"\\\\{{"``). Any other ``{{`` that does not start a
  valid placeholder is an error, so Jinja/Mustache syntax (``{{ x | upper }}``, ``{{#each}}``) fails loudly.
  ``{%`` and ``}}`` on their own are plain text: there are no loops, conditionals, filters or expressions.
  ``{{{x}}}`` is a literal ``{`` around ``{{x}}`` (not Mustache's unescaped form; nothing is HTML-escaped).
- Rendering is strict: a variable without a value and without a declared default is an error naming it.
  Extra values are allowed (:meth:`Prompt.check_values` lists them). Values become text with ``str()``, except
  lists and dicts, which are JSON-encoded. Inserted values are never re-scanned for placeholders.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from mlpilot.errors import InvalidArgument

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_MESSAGES",
    "MAX_VARIABLES",
    "ROLES",
    "ChatMessage",
    "Prompt",
    "PromptVariable",
    "diff",
    "to_openai_messages",
    "validate_prompt_file",
]

SCHEMA_VERSION = 1
MAX_FILE_BYTES = 1 << 20  # 1 MiB
MAX_MESSAGES = 200
MAX_VARIABLES = 200
ROLES = ("system", "user", "assistant", "tool")
PROMPT_TYPES = ("text", "chat")
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")

_FIELDS = ("schema_version", "type", "template", "config", "variables", "description")
_MESSAGE_FIELDS = ("role", "content", "name", "tool_call_id")
_VARIABLE_FIELDS = ("default", "description")
_SNIPPET = 60

# Templates are scanned by hand (not with a regex) so that error positions are exact and no pattern can backtrack.
_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT_REST = _IDENT_START | frozenset("0123456789")


def _is_name(name: str) -> bool:
    """Whether ``name`` is dotted identifiers: ``x``, ``user_1.name`` (ASCII letters, digits, ``_``)."""
    parts = name.split(".")
    return all(p and p[0] in _IDENT_START and all(c in _IDENT_REST for c in p) for p in parts)


@dataclass(frozen=True)
class _Var:
    """A ``{{name}}`` placeholder in a parsed template."""

    name: str


_Part = str | _Var
_Fail = Callable[[str], NoReturn]


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def _parse_template(text: str, where: str) -> tuple[_Part, ...]:
    """Split a template into literal strings and placeholders.

    Raises:
        InvalidArgument: an unclosed ``{{`` or an invalid variable name (``where`` prefixes the message).
    """
    parts: list[_Part] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("{{", i)
        if j < 0:
            buf.append(text[i:])
            break
        if j > 0 and text[j - 1] == "\\":
            buf.append(text[i : j - 1])
            buf.append("{{")
            i = j + 2
            continue
        if j + 2 < n and text[j + 2] == "{":  # `{{{x}}}` is a literal brace around a placeholder
            j += 1
        end = text.find("}}", j + 2)
        inner = text[j + 2 : end] if end >= 0 else ""
        if end < 0 or "{" in inner:
            raise InvalidArgument(
                f"{where} has a '{{{{' that starts no placeholder at {_position(text, j)}: placeholders look like "
                f"{{{{name}}}}; write \\{{{{ for a literal '{{{{'"
            )
        name = inner.strip()
        if not _is_name(name):
            snippet = text[j : end + 2]
            if len(snippet) > _SNIPPET:
                snippet = snippet[: _SNIPPET - 3] + "..."
            raise InvalidArgument(
                f"{where} has an invalid placeholder {snippet!r} at {_position(text, j)}: variable names are "
                "letters, digits and '_', with dots for nested lookups (user.name); filters, expressions, loops "
                f"and conditionals are not supported (this is not Jinja); write \\{{{{ for a literal '{{{{'"
            )
        buf.append(text[i:j])
        literal = "".join(buf)
        if literal:
            parts.append(literal)
        buf = []
        parts.append(_Var(name))
        i = end + 2
    literal = "".join(buf)
    if literal:
        parts.append(literal)
    return tuple(parts)


def _names(segments: Sequence[tuple[_Part, ...]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for parts in segments:
        for part in parts:
            if isinstance(part, _Var):
                seen.setdefault(part.name)
    return tuple(seen)


# ------------------------------------------------------------------------------------------------- validation


def _got(value: Any) -> str:
    """How a wrong value is shown in a message: short scalars by value, containers by kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= _SNIPPET else text[: _SNIPPET - 4] + "...'"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_json(value: Any, where: str, fail: _Fail) -> None:
    """Raise (via ``fail``) unless ``value`` is plain JSON data (YAML can also produce dates, bytes, sets …)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            fail(f"{where} must be a finite number, got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            _check_json(item, f"{where}[{k}]", fail)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                fail(f"{where} has a non-string key {key!r}: JSON object keys are strings")
            _check_json(item, f"{where}.{key}", fail)
        return
    fail(f"{where} must be JSON data (strings, numbers, booleans, null, lists, objects), got {_got(value)}")


def _normalize(data: Any, source: str) -> dict[str, Any]:
    """Validate a prompt document and return it in canonical form (what the model's fields hold).

    ``source`` (a file name, or ``"prompt"``) starts every message.
    """

    def fail(message: str) -> NoReturn:
        raise InvalidArgument(f"{source}: {message}")

    if not isinstance(data, Mapping):
        fail(f"a prompt must be an object with {', '.join(_FIELDS)}, got {_got(data)}")
    for key in data:
        if key not in _FIELDS:
            fail(f"unknown field {key!r}: a prompt has {', '.join(_FIELDS)}")
    if "schema_version" in data and data["schema_version"] != SCHEMA_VERSION:
        fail(f"schema_version must be {SCHEMA_VERSION}, got {_got(data['schema_version'])}")

    if "template" not in data:
        fail("template is missing: a string for a text prompt, a list of messages for a chat prompt")
    template = data["template"]
    kind = data.get("type")
    if kind is None:
        kind = "chat" if isinstance(template, (list, tuple)) else "text"
    elif kind not in PROMPT_TYPES:
        fail(f"type must be one of {', '.join(PROMPT_TYPES)}, got {_got(kind)}")

    segments: list[tuple[_Part, ...]] = []
    if kind == "text":
        if not isinstance(template, str):
            fail(f"template must be a string for a text prompt, got {_got(template)}")
        if not template.strip():
            fail("template must be a non-empty string")
        segments.append(_parse_template(template, f"{source}: template"))
        canonical_template: Any = template
    else:
        canonical_template, segments = _normalize_messages(template, source, fail)

    used = _names(segments)
    if len(used) > MAX_VARIABLES:
        fail(f"the template uses {len(used)} variables; the limit is {MAX_VARIABLES}")
    declared = _normalize_variables(data.get("variables"), used, fail)

    description = data.get("description")
    if description is not None and not isinstance(description, str):
        fail(f"description must be a string, got {_got(description)}")

    return {
        "type": kind,
        "template": canonical_template,
        "config": _normalize_config(data.get("config"), fail),
        "variables": declared,
        "description": description,
    }


def _normalize_messages(template: Any, source: str, fail: _Fail) -> tuple[list[dict[str, Any]], list[Any]]:
    if not isinstance(template, (list, tuple)):
        fail(f"template must be a list of messages for a chat prompt, got {_got(template)}")
    if not template:
        fail("template must hold at least one message")
    if len(template) > MAX_MESSAGES:
        fail(f"template has {len(template)} messages; the limit is {MAX_MESSAGES}")
    messages: list[dict[str, Any]] = []
    segments: list[tuple[_Part, ...]] = []
    for k, message in enumerate(template):
        where = f"template[{k}]"
        if isinstance(message, ChatMessage):
            message = message.to_dict()
        if not isinstance(message, Mapping):
            fail(f'{where} must be an object like {{"role": "user", "content": "..."}}, got {_got(message)}')
        for key in message:
            if key not in _MESSAGE_FIELDS:
                fail(f"{where} has unknown field {key!r}: a message has {', '.join(_MESSAGE_FIELDS)}")
        role = message.get("role")
        if role not in ROLES:
            got = "nothing" if "role" not in message else _got(role)
            fail(f"{where}.role must be one of {', '.join(ROLES)}, got {got}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            got = "nothing" if "content" not in message else _got(content)
            fail(f"{where}.content must be a non-empty string, got {got}")
        for key in ("name", "tool_call_id"):
            if key in message and (not isinstance(message[key], str) or not message[key]):
                fail(f"{where}.{key} must be a non-empty string, got {_got(message[key])}")
        segments.append(_parse_template(content, f"{source}: {where}.content"))
        messages.append({key: message[key] for key in _MESSAGE_FIELDS if key in message})
    return messages, segments


def _normalize_config(config: Any, fail: _Fail) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        fail(f"config must be an object of model parameters, got {_got(config)}")
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            fail(f"config has a non-string key {key!r}")
        where = f"config.{key}"
        if key == "model":
            if not isinstance(value, str) or not value.strip():
                fail(f"{where} must be a non-empty string, got {_got(value)}")
        elif key == "temperature":
            if not _is_number(value) or not 0 <= value <= 2:
                fail(f"{where} must be a number from 0 to 2, got {_got(value)}")
        elif key == "top_p":
            if not _is_number(value) or not 0 <= value <= 1:
                fail(f"{where} must be a number from 0 to 1, got {_got(value)}")
        elif key == "max_tokens":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{where} must be an integer >= 1, got {_got(value)}")
        elif key == "stop":
            if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
                hint = f" (write [{json.dumps(value)}] for one)" if isinstance(value, str) and value else ""
                fail(f"{where} must be a list of non-empty strings, got {_got(value)}{hint}")
            value = list(value)
        elif key == "response_format":
            if not isinstance(value, Mapping):
                fail(f'{where} must be an object such as {{"type": "json_object"}}, got {_got(value)}')
            if "type" in value and not isinstance(value["type"], str):
                fail(f"{where}.type must be a string, got {_got(value['type'])}")
        _check_json(value, where, fail)
        out[key] = copy.deepcopy(value)
    return out


def _normalize_variables(variables: Any, used: tuple[str, ...], fail: _Fail) -> dict[str, dict[str, Any]]:
    """Declared variables as ``{name: {"default"?: …, "description"?: …}}``, each used by the template."""
    if variables is None:
        return {}
    items: list[tuple[str, Any, str]] = []  # (name, spec, where)
    if isinstance(variables, Mapping):
        items = [(name, spec, f"variables.{name}") for name, spec in variables.items()]
    elif isinstance(variables, (list, tuple)):
        for k, item in enumerate(variables):
            if isinstance(item, str):
                items.append((item, None, f"variables[{k}]"))
            elif isinstance(item, Mapping) and "name" in item:
                items.append((item["name"], {k2: v for k2, v in item.items() if k2 != "name"}, f"variables[{k}]"))
            else:
                fail(f'variables[{k}] must be a name or an object with "name", got {_got(item)}')
    else:
        fail(f"variables must be an object keyed by variable name, got {_got(variables)}")
    if len(items) > MAX_VARIABLES:
        fail(f"variables declares {len(items)} variables; the limit is {MAX_VARIABLES}")

    out: dict[str, dict[str, Any]] = {}
    for name, spec, where in items:
        if not isinstance(name, str) or not _is_name(name):
            fail(f"{where}: invalid variable name {_got(name)}: use letters, digits and '_', dots for nesting")
        if name in out:
            fail(f"{where}: variable {name!r} is declared twice")
        if name not in used and not any(u.startswith(name + ".") for u in used):
            expected = ", ".join(used) if used else "none"
            fail(f"{where}: variable {name!r} is declared but the template does not use it (it uses: {expected})")
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            fail(f'{where} must be an object like {{"default": ..., "description": ...}}, got {_got(spec)}')
        for key in spec:
            if key not in _VARIABLE_FIELDS:
                fail(f"{where} has unknown field {key!r}: a variable has {', '.join(_VARIABLE_FIELDS)}")
        entry: dict[str, Any] = {}
        if "description" in spec:
            if not isinstance(spec["description"], str):
                fail(f"{where}.description must be a string, got {_got(spec['description'])}")
            entry["description"] = spec["description"]
        if "default" in spec:
            if spec["default"] is None:
                fail(f"{where}.default must not be null: omit 'default' to make the variable required")
            _check_json(spec["default"], f"{where}.default", fail)
            entry["default"] = copy.deepcopy(spec["default"])
        out[name] = entry
    return out


# ------------------------------------------------------------------------------------------------ the records


class _Frozen(BaseModel):
    # Like mlpilot.records.Record, redeclared because llm is shared with the data plane, which must not import
    # control-plane modules (tests/test_architecture.py).
    model_config = ConfigDict(frozen=True)


class ChatMessage(_Frozen):
    """One message of a chat template; ``content`` may hold ``{{name}}`` placeholders."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The OpenAI message shape (``name``/``tool_call_id`` only when set)."""
        out = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class PromptVariable(_Frozen):
    """A declared variable: an optional description and an optional default (never ``None``: absent means none)."""

    description: str | None = None
    default: Any = None

    @property
    def has_default(self) -> bool:
        return self.default is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.default is not None:
            out["default"] = copy.deepcopy(self.default)
        return out


_MISSING: Any = object()


def _lookup(name: str, values: Mapping[str, Any]) -> Any:
    """``values[name]``, else the nested ``values[a][b]…`` for ``a.b…``; ``_MISSING`` when absent."""
    if name in values:
        return values[name]
    head, *rest = name.split(".")
    if not rest or head not in values:
        return _MISSING
    current, walked = values[head], head
    for key in rest:
        if not isinstance(current, Mapping):
            raise InvalidArgument(
                f"variable {name!r}: the value of {walked!r} is {_got(current)}, not a mapping, so it has no {key!r}"
            )
        if key not in current:
            return _MISSING
        current, walked = current[key], f"{walked}.{key}"
    return current


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


class Prompt(_Frozen):
    """A prompt template with its model config: immutable, validated on construction.

    Build one with :meth:`from_file`, :meth:`from_dict` or ``Prompt(type=…, template=…, …)`` (the file's fields);
    every invalid input raises :class:`~mlpilot.errors.InvalidArgument` naming the field. ``config`` and
    ``declared`` are plain dicts: treat them as read-only (:meth:`to_dict` returns copies).
    """

    type: Literal["text", "chat"]
    template: str | tuple[ChatMessage, ...]
    config: dict[str, Any] = Field(default_factory=dict)
    declared: dict[str, PromptVariable] = Field(default_factory=dict, alias="variables")
    description: str | None = None

    _segments: tuple[tuple[_Part, ...], ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _validate(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, Prompt):
            return data
        source = (info.context or {}).get("source", "prompt")
        return _normalize(data, source)

    def model_post_init(self, context: Any, /) -> None:
        texts = [self.template] if isinstance(self.template, str) else [m.content for m in self.template]
        # Already validated by _normalize, so this parse cannot fail; keeping it lets rendering skip the scan.
        self._segments = tuple(_parse_template(t, "template") for t in texts)

    # -------------------------------------------------------------------------------------------- building

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "prompt") -> Prompt:
        """Validate a prompt document (the file's JSON object).

        Args:
            data: ``{"type", "template", "config"?, "variables"?, "description"?, "schema_version"?}``.
            source: how messages name the document (a file name).

        Raises:
            InvalidArgument: ``"<source>: <field> must be …, got …"``.
        """
        return cls.model_validate(data, context={"source": source})

    @classmethod
    def from_file(cls, path: str | Path) -> Prompt:
        """Read and validate a ``.json`` (or ``.yaml``/``.yml``, with PyYAML) prompt file of at most 1 MiB.

        Raises:
            InvalidArgument: unreadable, oversize, unparsable or invalid; the message starts with the file name.
        """
        path = Path(path)
        return cls.from_dict(_read_document(path), source=path.name)

    def to_dict(self) -> dict[str, Any]:
        """The canonical file form (a JSON-serialisable copy); ``Prompt.from_dict(p.to_dict()) == p``."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "type": self.type}
        if self.description is not None:
            out["description"] = self.description
        if isinstance(self.template, str):
            out["template"] = self.template
        else:
            out["template"] = [m.to_dict() for m in self.template]
        if self.config:
            out["config"] = copy.deepcopy(self.config)
        if self.declared:
            out["variables"] = {name: v.to_dict() for name, v in self.declared.items()}
        return out

    # ----------------------------------------------------------------------------------------- introspection

    @property
    def variables(self) -> tuple[str, ...]:
        """The ``{{name}}`` names the template uses, in order of first use (across messages, in order)."""
        return _names(self._segments)

    @property
    def defaults(self) -> dict[str, Any]:
        """Declared defaults by variable name (a copy)."""
        return {name: copy.deepcopy(v.default) for name, v in self.declared.items() if v.has_default}

    @property
    def required(self) -> tuple[str, ...]:
        """The used variables that have no declared default (directly or inside a parent's default)."""
        defaults = self.defaults
        return tuple(name for name in self.variables if _lookup(name, defaults) is _MISSING)

    @property
    def messages(self) -> int:
        """The number of messages the prompt renders to (1 for a text prompt)."""
        return 1 if isinstance(self.template, str) else len(self.template)

    def check_values(self, values: Mapping[str, Any]) -> list[str]:
        """The names in ``values`` that the template does not use (in ``values``' order); ``[]`` if none.

        A key is used when it is a variable (``user.name``) or the root of one (``user`` for ``{{user.name}}``).
        """
        used = self.variables
        return [str(key) for key in values if key not in used and not any(u.startswith(f"{key}.") for u in used)]

    # ----------------------------------------------------------------------------------------------- render

    def render(self, values: Mapping[str, Any] | None = None) -> str | list[dict[str, str]]:
        """Fill the placeholders: a string for a text prompt, a list of OpenAI-shaped messages for a chat prompt.

        Args:
            values: variable name -> value; a value is looked up as ``values["user.name"]`` then
                ``values["user"]["name"]``, then in the declared defaults. Extra names are ignored.

        Raises:
            InvalidArgument: a variable has neither a value nor a default (the message names every missing one
                and what the prompt expects), or a nested lookup goes through a value that is not a mapping.
        """
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise InvalidArgument(f"prompt values must be a mapping of variable name to value, got {_got(values)}")
        defaults = self.defaults
        resolved: dict[str, str] = {}
        missing: list[str] = []
        for name in self.variables:
            value = _lookup(name, values)
            if value is _MISSING:
                value = _lookup(name, defaults)
            if value is _MISSING:
                missing.append(name)
            else:
                resolved[name] = _to_text(value)
        if missing:
            required = set(self.required)
            expected = ", ".join(n if n in required else f"{n} (optional)" for n in self.variables)
            which = "variable" if len(missing) == 1 else "variables"
            raise InvalidArgument(
                f"missing value for {which} {', '.join(repr(m) for m in missing)}; the prompt expects: {expected}",
                detail={"missing": missing, "expected": list(self.variables)},
            )
        texts = ["".join(resolved[p.name] if isinstance(p, _Var) else p for p in parts) for parts in self._segments]
        if isinstance(self.template, str):
            return texts[0]
        return [{**m.to_dict(), "content": text} for m, text in zip(self.template, texts, strict=True)]


# ---------------------------------------------------------------------------------------------------- files


def _read_document(path: Path) -> Any:
    """Read a prompt file into plain data (no code runs: ``json`` and ``yaml.safe_load`` only)."""
    name = path.name or str(path)
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + YAML_SUFFIXES:
        raise InvalidArgument(f"{name}: a prompt file is .json (or .yaml/.yml), got {suffix or 'no extension'!r}")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidArgument(f"{name}: no such file {str(path)!r}") from None
    except OSError as exc:
        raise InvalidArgument(f"{name}: cannot read the file: {exc.strerror or exc}") from exc
    if len(raw) > MAX_FILE_BYTES:
        size = path.stat().st_size
        raise InvalidArgument(f"{name}: the file is {size} bytes; prompt files are limited to 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{name}: the file is not UTF-8 text (byte {exc.start})") from None
    if suffix in YAML_SUFFIXES:
        return _parse_yaml(text, name)
    return _parse_json(text, name)


def _parse_json(text: str, name: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise InvalidArgument(f"{name}: duplicate key {key!r} in a JSON object")
            out[key] = value
        return out

    def constant(token: str) -> Any:
        raise InvalidArgument(f"{name}: {token} is not valid JSON: use a finite number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{name}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def _parse_yaml(text: str, name: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency of the dev environment
        raise InvalidArgument(f"{name}: YAML prompt files need PyYAML (pip install pyyaml); or use JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{name}: not valid YAML: {' '.join(str(exc).split())}") from None


def validate_prompt_file(path: str | Path) -> dict[str, Any]:
    """Parse and validate a prompt file; return the metadata the registry stores with the version.

    Returns:
        ``{"prompt": {"type": "text"|"chat", "variables": [names in order of use], "config": {…},
        "messages": N}}`` where ``N`` is 1 for a text prompt.

    Raises:
        InvalidArgument: ``"<file name>: <field> must be …, got …"`` for any problem (size, syntax, fields).
    """
    prompt = Prompt.from_file(path)
    return {
        "prompt": {
            "type": prompt.type,
            "variables": list(prompt.variables),
            "config": copy.deepcopy(prompt.config),
            "messages": prompt.messages,
        }
    }


# ---------------------------------------------------------------------------------------------- conversions


def to_openai_messages(rendered: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Turn :meth:`Prompt.render`'s result into OpenAI chat messages.

    A text prompt becomes one user message; a chat prompt's messages are returned as they are (copied).

    Raises:
        InvalidArgument: ``rendered`` is neither a string nor a list of ``{"role", "content"}`` objects.
    """
    if isinstance(rendered, str):
        return [{"role": "user", "content": rendered}]
    if not isinstance(rendered, Sequence):
        raise InvalidArgument(f"rendered prompt must be a string or a list of messages, got {_got(rendered)}")
    out = []
    for k, message in enumerate(rendered):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise InvalidArgument(f'rendered message {k} must be an object with "role" and "content"')
        out.append(dict(message))
    return out


def _diff_lines(prompt: Prompt) -> list[str]:
    """A line-oriented text form of a prompt, with one config key and one variable per line (for diffs)."""
    lines = [f"type: {prompt.type}"]
    if prompt.description is not None:
        lines.extend(f"description: {line}" for line in prompt.description.split("\n"))
    if isinstance(prompt.template, str):
        lines.append("### template")
        # split("\n") rather than splitlines() so a trailing newline shows up as a difference.
        lines.extend(prompt.template.split("\n"))
    else:
        for k, m in enumerate(prompt.template):
            extra = "".join(f" {key}={value}" for key, value in m.to_dict().items() if key not in ("role", "content"))
            lines.append(f"### template[{k}] {m.role}{extra}")
            lines.extend(m.content.split("\n"))
    lines.append("### config")
    lines.extend(
        f"{key}: {json.dumps(prompt.config[key], sort_keys=True, ensure_ascii=False)}" for key in sorted(prompt.config)
    )
    if prompt.declared:
        lines.append("### variables")
        for name, v in prompt.declared.items():
            lines.append(f"{name}: {json.dumps(v.to_dict(), sort_keys=True, ensure_ascii=False)}")
    return [line + "\n" for line in lines]


def diff(a: Prompt, b: Prompt, *, a_label: str = "a", b_label: str = "b", context: int = 3) -> str:
    """A unified diff (difflib) of two prompts' templates, configs, declared variables and descriptions.

    Args:
        a_label, b_label: the ``---``/``+++`` header names (e.g. ``"support:1"``, ``"support:2"``).
        context: lines of context around each change.

    Returns:
        The diff text, ``""`` when the prompts are equal. Config keys are sorted, one per line, values as JSON.
    """
    return "".join(difflib.unified_diff(_diff_lines(a), _diff_lines(b), fromfile=a_label, tofile=b_label, n=context))
