"""Bearer JWTs from an OpenID Connect provider (``auth.oidc``; docs/security.md, "OIDC bearer tokens").

A token is accepted when its signature verifies with a key of the provider's key set (JWKS) — or, for ``HS*``
algorithms named explicitly with a shared secret, with that secret and never with a key-set key — and its ``iss``,
``aud``, ``exp``, ``nbf`` and ``iat`` claims hold (with ``leeway_s``). ``alg: none`` is never accepted, whatever the
settings say. Every refusal is an :class:`~mlpilot.errors.Unauthenticated` whose message says what was wrong and never
contains the token.

The key set (:class:`KeySet`) is fetched with httpx (or read from a file), kept ``jwks_cache_s``, and fetched again
when a token names a key id it does not hold — at most once every ``jwks_min_refresh_s``, so a flood of tokens with
made-up key ids costs one fetch per period. A key set that cannot be fetched at all is a 503
(:class:`~mlpilot.errors.Unavailable`); one that cannot be refreshed keeps serving the keys it had.

Claims → principal (pure, :func:`principal_from_claims`): scopes are the mlpilot scope names found in
``scopes_claim`` plus what ``role_scopes`` maps provider values (of ``scopes_claim`` and ``roles_claim``) to — a
provider group called ``admin`` grants nothing unless mapped; grants come from ``deployments_claim``; the actor is
``oidc:<actor_claim>``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlpilot.auth.keys import GRANTABLE
from mlpilot.auth.principal import Principal
from mlpilot.errors import PermissionDenied, Unauthenticated, Unavailable
from mlpilot.settings import OidcSettings

log = logging.getLogger("mlpilot.auth")

#: the key type (``kty``) each algorithm family verifies with
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MAX_NAME = 256
_GRANTABLE = tuple(s.value for s in GRANTABLE)


# ---------------------------------------------------------------------------------------------- claims (pure)


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` in ``claims`` (``realm_access.roles``), or ``None``."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _words(value: Any) -> list[str]:
    """A claim as a list of strings: a space- (or comma-) separated string, or a list of strings."""
    if isinstance(value, str):
        return [w for w in re.split(r"[\s,]+", value) if w]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str) and v]
    return []


def scopes_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> tuple[str, ...]:
    """The mlpilot scopes a token holds, in hierarchy order.

    Scope names (``read`` … ``admin``) count only from ``scopes_claim``; any value of ``scopes_claim`` or
    ``roles_claim`` that ``role_scopes`` names adds the scopes it maps to. Anything else is ignored.
    """
    direct = _words(claim(claims, settings.scopes_claim)) if settings.scopes_claim else []
    roles = _words(claim(claims, settings.roles_claim)) if settings.roles_claim else []
    held = {v for v in direct if v in _GRANTABLE}
    for value in (*direct, *roles):
        held.update(settings.role_scopes.get(value, ()))
    return tuple(s for s in _GRANTABLE if s in held)


def deployments_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> tuple[str, ...]:
    """The deployments a token is granted (empty: every one).

    Raises:
        PermissionDenied: ``deployments_claim`` is set and the token lacks it, or it grants none.
    """
    name = settings.deployments_claim
    if not name:
        return ()
    value = claim(claims, name)
    if value is None:
        raise PermissionDenied(
            f"the token lacks the {name!r} claim (auth.oidc.deployments_claim) listing the deployments it may use; "
            "ask the provider to add it ('*' for every deployment)"
        )
    granted = sorted(set(_words(value)))
    if "*" in granted:
        return ()
    if not granted:
        raise PermissionDenied(f"the token's {name!r} claim grants no deployment")
    return tuple(granted)


def principal_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> Principal:
    """Who a verified token speaks for: ``oidc:<actor_claim>``, its scopes and deployment grants.

    Raises:
        Unauthenticated: the token names nobody (no ``actor_claim``).
        PermissionDenied: see :func:`deployments_from_claims`.
    """
    who = claim(claims, settings.actor_claim)
    if isinstance(who, int) and not isinstance(who, bool):
        who = str(who)
    if not isinstance(who, str) or not who.strip():
        raise Unauthenticated(
            f"the token has no {settings.actor_claim!r} claim (auth.oidc.actor_claim) naming who acts"
        )
    name = who.strip()[:_MAX_NAME]
    return Principal(
        name=name,
        scopes=scopes_from_claims(claims, settings),
        deployments=deployments_from_claims(claims, settings),
        key_id=0,
        kind="oidc",
    )


# ---------------------------------------------------------------------------------------------- key set


@dataclass(frozen=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key


def parse_jwks(doc: Any) -> list[_Key]:
    """The signature keys of a JWKS document; keys of other uses, symmetric (``oct``) keys and keys PyJWT cannot
    load are skipped (logged).

    Raises:
        ValueError: not a JWKS document (no ``keys`` list).
    """
    import jwt

    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise ValueError('not a JSON Web Key Set (expected {"keys": [...]})')
    keys: list[_Key] = []
    for raw in doc["keys"]:
        if not isinstance(raw, Mapping) or raw.get("use", "sig") != "sig" or raw.get("kty") == "oct":
            continue
        try:
            loaded = jwt.PyJWK(dict(raw)).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("skipping key %r of the OIDC key set: %s", raw.get("kid"), exc)
            continue
        if hasattr(loaded, "public_key"):  # a private JWK: verify with its public half
            loaded = loaded.public_key()
        kid = raw.get("kid")
        keys.append(
            _Key(kid if isinstance(kid, str) else None, str(raw["kty"]), raw.get("crv"), raw.get("alg"), loaded)
        )
    return keys


def _fits(key: _Key, alg: str) -> bool:
    if key.alg is not None and key.alg != alg:
        return False
    if _KEY_TYPES.get(alg[:2]) != key.kty:
        return False
    return alg not in _CURVES or key.crv == _CURVES[alg]


class KeySet:
    """The provider's signing keys, loaded by ``load`` (a fetch or a file read) when first needed, again after
    ``max_age_s``, and on an unknown key id — never twice within ``min_refresh_s`` (thread-safe)."""

    def __init__(
        self,
        load: Callable[[], Any],
        source: str,
        *,
        max_age_s: float = 600.0,
        min_refresh_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.source = source
        self.max_age_s = max_age_s
        self.min_refresh_s = min_refresh_s
        self._now = monotonic
        self._keys: list[_Key] | None = None
        self._loaded_at = 0.0
        self._tried_at: float | None = None
        self._error = ""
        self._lock = threading.Lock()
        self.loads = 0  # how many times the set was loaded (successfully or not)

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        self.loads += 1
        try:
            keys = parse_jwks(self._load())
        except Unavailable as exc:
            self._error = exc.message
        except ValueError as exc:
            self._error = f"the key set at {self.source} is malformed: {exc}"
        else:
            self._keys, self._loaded_at, self._error = keys, now, ""
            return
        if self._keys is None:
            raise Unavailable(f"cannot verify bearer tokens: {self._error}", retry_after_s=self.min_refresh_s)
        log.warning("keeping the OIDC keys fetched before: %s", self._error)

    def find(self, kid: str | None, alg: str) -> Any:
        """The key to verify a token signed with ``alg`` by key ``kid``.

        Raises:
            Unauthenticated: no such key (after a refresh, if one is allowed), or it does not fit ``alg``.
            Unavailable: the key set was never loaded and cannot be.
        """
        with self._lock:
            now = self._now()
            may_refresh = self._tried_at is None or now - self._tried_at >= self.min_refresh_s
            if self._keys is None or now - self._loaded_at >= self.max_age_s:
                if may_refresh:
                    self._refresh(now)
                    may_refresh = False
                elif self._keys is None:
                    raise Unavailable(f"cannot verify bearer tokens: {self._error}", retry_after_s=self.min_refresh_s)
            found = self._match(kid, alg)
            if found is None and may_refresh:
                self._refresh(now)  # an unknown key id: the provider may have rotated its keys
                found = self._match(kid, alg)
            if found is None:
                raise Unauthenticated(
                    f"unknown signing key: the token's key id {kid!r} is not in the provider's key set at {self.source}"
                    if kid is not None
                    else f"the token names no key id (kid) and the key set at {self.source} holds no {alg} key"
                )
            return found.key

    def _match(self, kid: str | None, alg: str) -> _Key | None:
        keys = self._keys or []
        if kid is not None:
            named = [k for k in keys if k.kid == kid]
            if not named:
                return None
            fitting = [k for k in named if _fits(k, alg)]
            if not fitting:
                raise Unauthenticated(
                    f"the token's algorithm {alg} does not fit its signing key {kid!r} ({named[0].kty})"
                )
            return fitting[0]
        fitting = [k for k in keys if _fits(k, alg)]
        if len(fitting) > 1:
            raise Unauthenticated(
                f"the token names no key id (kid) and the key set at {self.source} holds several {alg} keys"
            )
        return fitting[0] if fitting else None


def fetch_jwks(url: str, timeout_s: float) -> Callable[[], Any]:
    """A loader fetching the key set at ``url`` (raises :class:`Unavailable` naming what failed)."""

    def load() -> Any:
        import httpx

        try:
            response = httpx.get(url, timeout=timeout_s, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot fetch the OIDC key set from {url} ({type(exc).__name__}: {exc})") from exc
        if response.status_code != 200:
            raise Unavailable(f"cannot fetch the OIDC key set from {url}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(f"the OIDC key set at {url} is not JSON") from exc

    return load


def read_jwks(path: Path) -> Callable[[], Any]:
    """A loader reading the key set in file ``path``."""

    def load() -> Any:
        try:
            return json.loads(path.read_bytes())
        except OSError as exc:
            raise Unavailable(f"cannot read the OIDC key set {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise Unavailable(f"the OIDC key set {path} is not JSON") from exc

    return load


# ---------------------------------------------------------------------------------------------- tokens


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "?"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class OidcValidator:
    """Validates bearer JWTs against ``settings`` (thread-safe; may fetch the key set: call it off the event loop).

    Args:
        keys: the key set (default: from ``jwks_url`` or ``jwks_file``).
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        keys: KeySet | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.algorithms = tuple(settings.algorithms)
        secret = settings.shared_secret.get_secret_value() if settings.shared_secret else ""
        self._secret = secret.encode()
        if keys is None and (settings.jwks_url or settings.jwks_file):
            load = (
                fetch_jwks(settings.jwks_url, settings.jwks_timeout_s)
                if settings.jwks_url
                else read_jwks(Path(settings.jwks_file))
            )
            keys = KeySet(
                load,
                settings.jwks_url or settings.jwks_file,
                max_age_s=settings.jwks_cache_s,
                min_refresh_s=settings.jwks_min_refresh_s,
                monotonic=monotonic,
            )
        self.keys = keys

    def validate(self, token: str) -> tuple[Principal, float]:
        """The principal a token speaks for and when it expires (seconds since the epoch).

        Raises:
            Unauthenticated: malformed, unsigned, an algorithm not accepted, an unknown key, a bad signature, the
                wrong issuer or audience, expired, not valid yet, or naming nobody.
            PermissionDenied: see :func:`deployments_from_claims`.
            Unavailable: the key set cannot be fetched.
        """
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(
                f"the bearer credential is neither an mlpilot API key (mlp_…) nor a well-formed JWT ({exc})"
            ) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise Unauthenticated("unsigned tokens (alg none) are never accepted")
        if alg not in self.algorithms:
            raise Unauthenticated(
                f"the token is signed with {alg}, which this server does not accept (auth.oidc.algorithms: "
                f"{', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        if alg.startswith("HS"):
            key: Any = self._secret  # never a key-set key: a public key is no HMAC secret
        elif self.keys is None:
            raise Unauthenticated(f"no key set is configured to verify {alg} tokens (auth.oidc.jwks_url)")
        else:
            key = self.keys.find(kid if isinstance(kid, str) else None, alg)
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(self._why(token, exc)) from None
        except (TypeError, ValueError) as exc:  # a key PyJWT cannot use for this algorithm
            raise Unauthenticated(f"the token's signing key does not fit its algorithm {alg} ({exc})") from None
        return principal_from_claims(claims, s), float(claims["exp"])

    def _why(self, token: str, exc: Exception) -> str:
        """What was wrong with a token, in words (never the token itself)."""
        import jwt

        s = self.settings
        leeway = f"leeway {s.leeway_s:g} s"
        if isinstance(exc, jwt.ExpiredSignatureError):
            exp = _unverified(token).get("exp")
            return f"the bearer token expired at {_when(exp)} ({leeway}); get a new one from the provider"
        if isinstance(exc, jwt.ImmatureSignatureError):
            claims = _unverified(token)
            field = "nbf" if "nbf" in str(exc) else "iat"
            return f"the bearer token is not valid yet ({field} {_when(claims.get(field))}, {leeway})"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"wrong audience: the token's aud does not name {s.audience!r} (auth.oidc.audience)"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"wrong issuer: the token's iss is not {s.issuer!r} (auth.oidc.issuer)"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "bad signature: the token was not signed by the provider's key it names"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the bearer token lacks the {exc.claim!r} claim"
        if isinstance(exc, jwt.DecodeError):
            return f"malformed bearer token ({exc})"
        return f"invalid bearer token ({type(exc).__name__}: {exc})"


def _unverified(token: str) -> dict[str, Any]:
    """The claims of a token whose signature was already verified (for messages only)."""
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def build_validator(settings: OidcSettings) -> OidcValidator | None:
    """The validator ``settings`` ask for, or ``None`` when OIDC is off (no ``issuer``)."""
    return OidcValidator(settings) if settings.enabled else None


__all__ = [
    "KeySet",
    "OidcValidator",
    "build_validator",
    "claim",
    "deployments_from_claims",
    "fetch_jwks",
    "parse_jwks",
    "principal_from_claims",
    "read_jwks",
    "scopes_from_claims",
]
