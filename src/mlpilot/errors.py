"""The one exception tree of mlpilot.

Every error mlpilot raises on purpose is an :class:`MlpilotError`; its :class:`ErrorKind` says what kind of
failure it is, and only the edges (HTTP, gRPC, CLI) map a kind to a status code or an exit code.
Third-party exceptions are translated at the adapter that called the library, with ``raise ... from exc``.

::

    MlpilotError                       kind
    ├── InvalidArgument                INVALID_ARGUMENT     the request is wrong; the message says how to fix it
    │   ├── SignatureError             INVALID_ARGUMENT     data or signatures do not match
    │   └── UnknownFlavor              INVALID_ARGUMENT     no model flavor by that name / for that file
    ├── NotFound                       NOT_FOUND            artifact, version, alias, deployment …
    ├── Conflict                       CONFLICT             lost a race or already exists (retry after re-reading)
    ├── FailedPrecondition             FAILED_PRECONDITION  the system is not in a state that allows it
    ├── Unauthenticated                UNAUTHENTICATED      no credentials, or unknown or revoked ones
    ├── PermissionDenied               PERMISSION_DENIED    the credentials lack a scope or a deployment grant
    ├── LoadError                      INVALID_ARGUMENT     a model file could not be loaded (corrupt, truncated …)
    ├── InferenceError                 INTERNAL             the model raised while predicting
    ├── IntegrityError                 DATA_LOSS            stored bytes do not match their digest
    ├── ResourceExhausted              RESOURCE_EXHAUSTED   a rate limit was hit (``retry_after_s`` says when to retry)
    ├── DeadlineExceeded               DEADLINE_EXCEEDED    the model did not answer within its timeout
    ├── Unavailable                    UNAVAILABLE          a dependency (store, server) cannot be reached
    │   └── Overloaded                 UNAVAILABLE          the server shed the request (queue full, breaker open)
    └── MissingExtra                   UNIMPLEMENTED        an optional feature whose extra is not installed
"""

from __future__ import annotations

import enum
import math
from typing import Any


class ErrorKind(str, enum.Enum):
    """What kind of failure an error is; the edges map it to transport codes."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FAILED_PRECONDITION = "failed_precondition"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNIMPLEMENTED = "unimplemented"
    DATA_LOSS = "data_loss"
    INTERNAL = "internal"


#: HTTP status for each kind, used by the REST edges only.
HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FAILED_PRECONDITION: 412,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.RESOURCE_EXHAUSTED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.UNIMPLEMENTED: 501,
    ErrorKind.DATA_LOSS: 500,
    ErrorKind.INTERNAL: 500,
}


class MlpilotError(Exception):
    """Base of every error mlpilot raises on purpose.

    Args:
        message: one line that says what was wrong and, for user mistakes, how to fix it.
        detail: optional machine-readable context (JSON-serialisable), returned by the API next to the message.
        retry_after_s: when the caller may try again (the edges send ``Retry-After``); None: no advice.
    """

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(
        self, message: str, *, detail: dict[str, Any] | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}
        self.retry_after_s = retry_after_s

    def retry_after_header(self) -> str | None:
        """``Retry-After`` in whole seconds (rounded up, at least 1), or None."""
        if self.retry_after_s is None:
            return None
        return str(max(1, math.ceil(self.retry_after_s)))

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """The wire form: OIP's ``{"error": message}`` plus the kind, the class and any detail."""
        body: dict[str, Any] = {"error": self.message, "kind": self.kind.value, "type": type(self).__name__}
        if self.detail:
            body["detail"] = self.detail
        return body


class InvalidArgument(MlpilotError):
    kind = ErrorKind.INVALID_ARGUMENT


class SignatureError(InvalidArgument):
    pass


class UnknownFlavor(InvalidArgument):
    pass


class NotFound(MlpilotError):
    kind = ErrorKind.NOT_FOUND


class Conflict(MlpilotError):
    kind = ErrorKind.CONFLICT


class FailedPrecondition(MlpilotError):
    kind = ErrorKind.FAILED_PRECONDITION


class Unauthenticated(MlpilotError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(MlpilotError):
    kind = ErrorKind.PERMISSION_DENIED


class LoadError(MlpilotError):
    kind = ErrorKind.INVALID_ARGUMENT


class InferenceError(MlpilotError):
    kind = ErrorKind.INTERNAL


class IntegrityError(MlpilotError):
    kind = ErrorKind.DATA_LOSS


class Unavailable(MlpilotError):
    kind = ErrorKind.UNAVAILABLE


class Overloaded(Unavailable):
    """A request shed to protect the server: a variant's queue is full, or its circuit breaker is open."""


class ResourceExhausted(MlpilotError):
    """A rate limit was hit; ``retry_after_s`` says when a token is available again."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class DeadlineExceeded(MlpilotError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class MissingExtra(MlpilotError):
    """An optional feature was used without its extra; the message carries the exact pip command."""

    kind = ErrorKind.UNIMPLEMENTED

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f'{feature} needs an optional dependency: pip install "mlpilot[{extra}]"')
        self.extra = extra


_BY_NAME: dict[str, type[MlpilotError]] = {
    cls.__name__: cls
    for cls in (
        MlpilotError,
        InvalidArgument,
        SignatureError,
        UnknownFlavor,
        NotFound,
        Conflict,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        LoadError,
        InferenceError,
        IntegrityError,
        Unavailable,
        Overloaded,
        ResourceExhausted,
        DeadlineExceeded,
    )
}
_BY_KIND: dict[ErrorKind, type[MlpilotError]] = {
    ErrorKind.INVALID_ARGUMENT: InvalidArgument,
    ErrorKind.NOT_FOUND: NotFound,
    ErrorKind.CONFLICT: Conflict,
    ErrorKind.FAILED_PRECONDITION: FailedPrecondition,
    ErrorKind.UNAUTHENTICATED: Unauthenticated,
    ErrorKind.PERMISSION_DENIED: PermissionDenied,
    ErrorKind.UNAVAILABLE: Unavailable,
    ErrorKind.RESOURCE_EXHAUSTED: ResourceExhausted,
    ErrorKind.DEADLINE_EXCEEDED: DeadlineExceeded,
    ErrorKind.DATA_LOSS: IntegrityError,
}


def error_from_dict(body: dict[str, Any], status: int) -> MlpilotError:
    """Rebuild the error a server sent (``to_dict`` form), so remote and embedded clients raise the same class."""
    message = str(body.get("error") or body.get("detail") or f"HTTP {status}")
    cls = _BY_NAME.get(str(body.get("type", "")))
    if cls is None:
        try:
            cls = _BY_KIND.get(ErrorKind(body.get("kind", "")), MlpilotError)
        except ValueError:
            cls = InvalidArgument if 400 <= status < 500 else MlpilotError
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else None
    return cls(message, detail=detail)
