"""Redaction: configured fields and secrets never reach the request log or the process's log output.

Two things are removed:

* **Fields** (``logs.redact_fields``): input and output names of the request log (``in.email``, ``out.score``;
  every ``x[j]`` column of a tensor ``x``) and JSON keys at any depth inside its text (an LLM request's content
  parts, ``out.tool_calls`` and the arguments encoded in it, ``key: value`` / ``key=value`` in free text), matched
  case-insensitively. A value becomes :data:`REDACTED` (``mask``), or ``[REDACTED:<16 hex>]`` (``hash``: the first
  64 bits of an HMAC-SHA256 of the value's text under a secret salt — equal values stay equal, so joins and
  distinct counts still work, but nobody without the salt can test a guess).
* **Secrets**, always: mlpilot API keys (``mlp_…``), ``Bearer``/``Basic`` credentials and ``Authorization``
  values, JWTs, OpenAI-style keys (``sk-…``), AWS access key ids (``AKIA…``/``ASIA…``), passwords in URLs
  (``scheme://user:pass@host`` keeps the user) and ``password=…``-style pairs. They are scrubbed from every text
  column of the request log (LLM prompts and answers, error messages, string features) and from log records.

Everything here is pure (no I/O, no settings): the serving process builds a :class:`Redactor` from its settings and
hands it to the request log (:func:`mlpilot.telemetry.columns.partition_tables` applies it to every table it
builds; the strict-mode spill applies :meth:`Redactor.spill` to every line), and installs :func:`install_log_redaction`.
A redacted value is recognisable (it starts with ``[REDACTED``): redacting again leaves it unchanged, and the
monitors leave such columns out (:func:`redacted_columns`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

__all__ = [
    "REDACTED",
    "Redactor",
    "SecretFilter",
    "install_log_redaction",
    "is_redacted",
    "redacted_columns",
    "scrub_secrets",
]

REDACTED = "[REDACTED]"
_MARK = "[REDACTED"
_INDEX = re.compile(r"\[\d+\]$")

#: (pattern, replacement) pairs applied to every text, in order.
_SECRETS: list[tuple[re.Pattern[str], str]] = [
    # passwords in URLs: scheme://user:password@host → scheme://user:[REDACTED]@host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@\"']*:)[^\s/@\"']+(@)"), rf"\1{REDACTED}\2"),
    # header-style credentials: Authorization: Bearer …, X-Api-Key: …, "api_key": "…" (the scheme word is kept)
    (
        re.compile(
            r"(?i)((?<![\w-])[\"']?(?:authorization|proxy-authorization|x-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:bearer|basic|digest|token)\s+)?)(?!\[REDACTED)[^\s\"',;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # a bearer token anywhere (16+ characters: prose such as "bearer bonds" is left alone)
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]{16,}=*"), rf"\1{REDACTED}"),
    # credential-looking pairs: password=…, "secret": "…", token: …
    (
        re.compile(
            r"(?i)((?<![\w-])[\"']?(?:password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|"
            r"aws[_-]?secret[_-]?access[_-]?key|secret[_-]?key|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED)[^\s\"',;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # mlpilot API keys (mlp_<prefix>_<secret>)
    (re.compile(r"\bmlp_[A-Za-z0-9_\-]{8,}"), REDACTED),
    # JWTs (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"), REDACTED),
    # OpenAI-style keys: sk-…, sk-proj-…
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
]
#: a cheap test before the patterns: a text with none of these cannot hold a secret they match.
_HINTS = (
    "://", "bearer", "authori", "api_key", "api-key", "apikey", "pass", "pwd", "secret", "token", "private", "mlp_",
    "eyj", "sk-", "akia", "asia",
)  # fmt: skip


def _hinted(lowered: str) -> bool:
    return any(h in lowered for h in _HINTS)


def scrub_secrets(text: str) -> str:
    """``text`` with every secret pattern replaced (see the module docstring)."""
    if not _hinted(text.lower()):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def is_redacted(value: Any) -> bool:
    """True for a value this module produced (``[REDACTED]`` or ``[REDACTED:…]``)."""
    return isinstance(value, str) and value.startswith(_MARK)


def redacted_columns(frame: Any) -> list[str]:
    """Columns of a DataFrame whose every non-null value is redacted (a field redacted in the request log)."""
    out = []
    for name in frame.columns:
        col = frame[name]
        if getattr(col.dtype, "kind", "O") in "iufcbmM":  # numbers, booleans, times: never a redacted value
            continue
        values = col.dropna()
        if len(values) and is_redacted(values.iloc[0]) and all(map(is_redacted, values)):
            out.append(name)
    return out


class Redactor:
    """Redacts request-log tables, spill lines and texts.

    Args:
        fields: names of inputs, outputs and JSON keys whose values are redacted (case-insensitive).
        mode: ``mask`` (:data:`REDACTED`) or ``hash`` (``[REDACTED:<16 hex>]``, keyed by ``salt``).
        salt: the secret key of ``hash`` (required for it).

    Raises:
        ValueError: ``hash`` without a salt, or an unknown mode.
    """

    def __init__(
        self, fields: Iterable[str] = (), mode: Literal["mask", "hash"] = "mask", salt: str | bytes = b""
    ) -> None:
        if mode not in ("mask", "hash"):
            raise ValueError(f"redaction mode is 'mask' or 'hash', got {mode!r}")
        key = salt.encode() if isinstance(salt, str) else bytes(salt)
        if mode == "hash" and not key:
            raise ValueError("hash redaction needs a salt")
        self.fields = frozenset(f.strip().lower() for f in fields if f.strip())
        self.mode = mode
        self._key = key
        self._pair: re.Pattern[str] | None = None
        #: searched in a column's raw UTF-8 bytes, lowercased: a column with none of them needs no look at its values
        self._quick = tuple(h.encode() for h in (*_HINTS, *sorted(self.fields)))
        if self.fields:
            names = "|".join(re.escape(f) for f in sorted(self.fields, key=len, reverse=True))
            # key: value / key=value / "key": "value" / \"key\": \"value\" (JSON inside a JSON string)
            self._pair = re.compile(
                rf"(?i)((?<![\w-])(?:\\?[\"'])?(?:{names})(?:\\?[\"'])?\s*[:=]\s*)"
                r"(\\\"(?:[^\"\\]|\\[^\"])*\\\"|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;&}\]]+)"
            )

    def __repr__(self) -> str:
        return f"Redactor(fields={sorted(self.fields)}, mode={self.mode!r})"

    # ---------------------------------------------------------------------------------------------- values

    def is_field(self, name: str) -> bool:
        """Whether a column name (without ``in.``/``out.``; ``x[3]`` counts as ``x``) or JSON key is redacted."""
        return bool(self.fields) and _INDEX.sub("", name).lower() in self.fields

    def value(self, value: Any) -> str | None:
        """A redacted value (``None`` stays ``None``; a value redacted already stays as it is)."""
        if value is None or is_redacted(value):
            return value
        if self.mode == "mask":
            return REDACTED
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED:{digest}]"

    def text(self, text: str) -> str:
        """``text`` without the values of redacted keys (JSON at any depth, ``key: value`` pairs) or secrets."""
        if self.fields and text and text.lstrip()[:1] in ("{", "["):
            try:
                doc = json.loads(text)
            except ValueError:
                pass
            else:
                redacted = self._json(doc)
                if redacted != doc:
                    text = json.dumps(redacted, ensure_ascii=False)
        if self._pair is not None:
            text = self._pair.sub(self._pair_value, text)
        return scrub_secrets(text)

    def _pair_value(self, m: re.Match[str]) -> str:
        raw = m.group(2)
        for quote in ('\\"', '"', "'"):
            if len(raw) >= 2 * len(quote) and raw.startswith(quote) and raw.endswith(quote):
                inner = raw[len(quote) : -len(quote)]
                return f"{m.group(1)}{quote}{self.value(inner) if not is_redacted(inner) else inner}{quote}"
        return f"{m.group(1)}{raw if is_redacted(raw) else self.value(raw)}"

    def _json(self, doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: self.value(v) if self.is_field(str(k)) else self._json(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self._json(v) for v in doc]
        if isinstance(doc, str):
            return self.text(doc)
        return doc

    # ---------------------------------------------------------------------------------------------- tables

    def table(self, table: Any) -> Any:
        """A request-log Arrow table with redacted ``in.*``/``out.*`` fields and secrets scrubbed from ``error`` and
        every string ``in.*``/``out.*`` column (each distinct value once). Returns ``table`` itself when nothing
        changed."""
        import pyarrow as pa

        columns = list(table.columns)
        changed = False
        for i, (name, col) in enumerate(zip(table.column_names, columns, strict=True)):
            logged = name.startswith(("in.", "out."))
            if logged and self.is_field(name.split(".", 1)[1]):
                columns[i] = self._column(col, self.value)
                changed = True
            elif (name == "error" or logged) and col.null_count < len(col):
                if not self._may_hold(col):
                    continue
                if _is_text(col.type, pa):
                    new = self._column(col, self.text, keep=pa.string())
                elif logged and _is_binary(col.type, pa):  # BYTES tensors sent in binary form
                    new = self._column(col, self._binary_text, keep=col.type)
                else:
                    continue
                if new is not None:
                    columns[i] = new
                    changed = True
        return pa.Table.from_arrays(columns, names=table.column_names) if changed else table

    def _may_hold(self, col: Any) -> bool:
        """Whether a string/binary column's bytes hold a hint of a secret or a field name (substring searches over
        its lowercased data buffer, no Python object per value); other layouts: True."""
        chunks = getattr(col, "chunks", [col])
        for chunk in chunks:
            buffers = chunk.buffers()
            if len(buffers) != 3:
                return True
            data = buffers[2]
            if data is not None:
                lowered = data.to_pybytes().lower()
                if any(h in lowered for h in self._quick):
                    return True
        return False

    def _binary_text(self, value: bytes) -> bytes:
        text = value.decode("utf-8", "surrogateescape")
        clean = self.text(text)
        return value if clean == text else clean.encode("utf-8", "surrogateescape")

    @staticmethod
    def _column(col: Any, fn: Callable[[Any], Any], keep: Any = None) -> Any:
        """``fn`` over a column's values (once per distinct value): a string column; with ``keep`` (the type to
        keep), ``None`` when nothing changed."""
        import pyarrow as pa

        values = col.to_pylist()
        seen: dict[Any, Any] = {}
        out: list[Any] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            key = (type(v), v) if isinstance(v, (str, bytes, int, float, bool)) else None
            if key is not None and key in seen:
                out.append(seen[key])
                continue
            r = fn(v)
            if key is not None:
                seen[key] = r
            out.append(r)
        if keep is not None:
            return None if out == values else pa.array(out, type=keep)
        return pa.array(out, type=pa.string())

    # ---------------------------------------------------------------------------------------------- spill lines

    def spill(self, body: dict[str, Any]) -> dict[str, Any]:
        """A strict-mode spill line's body (``inputs``/``outputs``/``error`` as JSON) redacted like its table."""
        inputs = body.get("inputs")
        if isinstance(inputs, dict):
            for wrapper in ("__frame__", "__dict__"):
                if isinstance(inputs.get(wrapper), Mapping):
                    inputs[wrapper] = self._named(inputs[wrapper])
        elif inputs is not None:
            body["inputs"] = self._leaves(inputs, self._text_leaf)
        if isinstance(body.get("outputs"), Mapping):
            body["outputs"] = self._named(body["outputs"])
        if isinstance(body.get("error"), str):
            body["error"] = self.text(body["error"])
        return body

    def _named(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._leaves(v, self.value if self.is_field(str(k)) else self._text_leaf) for k, v in values.items()}

    def _text_leaf(self, v: Any) -> Any:
        return self.text(v) if isinstance(v, str) else v

    def _leaves(self, value: Any, fn: Callable[[Any], Any]) -> Any:
        if isinstance(value, list):
            return [self._leaves(v, fn) for v in value]
        return fn(value)


def _is_text(dtype: Any, pa: Any) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def _is_binary(dtype: Any, pa: Any) -> bool:
    return bool(pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype))


# -------------------------------------------------------------------------------------------------- log records


class SecretFilter(logging.Filter):
    """A :class:`logging.Filter` that scrubs secrets (and, given a :class:`Redactor`, its fields' ``key: value``
    pairs) from a record's message and traceback in place; it never drops a record.

    Usable in a logging config: ``{"filters": {"redact": {"()": "mlpilot.telemetry.redact.SecretFilter"}}}``.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._text = redactor.text if redactor is not None else scrub_secrets

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record, self._text)
        return True


def scrub(record: logging.LogRecord, text: Callable[[str], str]) -> None:
    """Replace ``record``'s message (formatted with its args) and traceback by their scrubbed text."""
    if getattr(record, "_mlpilot_scrubbed", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it itself when it formats the record
        return
    clean = text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = text(record.exc_text)
    if record.stack_info:
        record.stack_info = text(record.stack_info)
    record._mlpilot_scrubbed = True


_installed: list[Any] = []


def install_log_redaction(redactor: Redactor | None = None) -> None:
    """Scrub every log record this process creates, whatever handler it reaches (uvicorn's, the root's, ones
    added later): wraps the log record factory. For server processes (``mlpilot up``, ``mlpilot serve``), never
    at import; calling it again replaces the previous installation."""
    text = redactor.text if redactor is not None else scrub_secrets
    base = _installed[0] if _installed else logging.getLogRecordFactory()
    if not _installed:
        _installed.append(base)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        scrub(record, text)
        return record

    logging.setLogRecordFactory(factory)


def uninstall_log_redaction() -> None:
    """Undo :func:`install_log_redaction` (tests)."""
    if _installed:
        logging.setLogRecordFactory(_installed.pop())
