"""A stand-in OIDC provider for tests: RSA and EC signing keys made in the test (cryptography), tokens signed with
them (PyJWT), and its key set (JWKS) served by a real HTTP server on 127.0.0.1 (``http.server`` in a thread); the
key set can be changed while it runs (key rotation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.helpers import ServerProcess

ISSUER = "https://idp.test/realms/mlpilot"
AUDIENCE = "mlpilot-api"


class SigningKey:
    """A private key with its key id and algorithm (RS256 or ES256)."""

    def __init__(self, kid: str, alg: str = "RS256") -> None:
        self.kid, self.alg = kid, alg
        self.private: Any = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg.startswith("RS")
            else ec.generate_private_key(ec.SECP256R1())
        )

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        return {**json.loads(algo.to_jwk(self.private.public_key())), "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def claims(sub: str = "alice", scope: str = "read", lifetime_s: float = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "iat": now, "exp": now + lifetime_s, **extra}


def sign(key: SigningKey, body: dict[str, Any], **header: Any) -> str:
    return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid, **header})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(body: dict[str, Any]) -> str:
    """``alg: none``: a token with no signature at all."""
    header = json.dumps({"alg": "none", "typ": "JWT"}).encode()
    return f"{_b64(header)}.{_b64(json.dumps(body).encode())}."


def hs256_with(secret: bytes, body: dict[str, Any], kid: str | None = None) -> str:
    """An HS256 token whose HMAC secret is ``secret`` (the key-confusion attack signs with the public key's PEM)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tamper(token: str) -> str:
    """The same token with another payload (its signature no longer matches)."""
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["scope"] = "admin"
    return f"{head}.{_b64(json.dumps(body).encode())}.{sig}"


class JwksServer:
    """The provider's ``/jwks.json`` on 127.0.0.1 (a thread), counting fetches; ``publish`` changes the key set."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.fetches = 0
        self.publish(keys)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                outer.fetches += 1
                body = outer.body
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="jwks", daemon=True)
        self.thread.start()

    def publish(self, keys: list[SigningKey]) -> None:
        self.body = json.dumps({"keys": [k.jwk() for k in keys]}).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def oidc_env(jwks_url: str, **more: str) -> dict[str, str]:
    """The environment of a server that accepts this provider's tokens."""
    return {
        "MLPILOT_AUTH__OIDC__ISSUER": ISSUER,
        "MLPILOT_AUTH__OIDC__AUDIENCE": AUDIENCE,
        "MLPILOT_AUTH__OIDC__JWKS_URL": jwks_url,
        **more,
    }


def server_with_keys(
    home: Path,
    keys: dict[str, list[str]],
    env: dict[str, str],
    args: tuple[str, ...] = ("--no-grpc",),
    grants: dict[str, list[str]] | None = None,
) -> tuple[ServerProcess, dict[str, str]]:
    """A real ``mlpilot up`` with auth on and the API keys ``keys`` (name → scopes; ``grants``: name → deployments),
    made in its store first."""
    from mlpilot.app import build_platform
    from mlpilot.auth.authorizer import issue_key
    from mlpilot.settings import Settings

    home.parent.mkdir(parents=True, exist_ok=True)
    platform = build_platform(Settings(home=home))
    try:
        made = {
            name: issue_key(platform.store, name, scopes, (grants or {}).get(name, []), "test").key
            for name, scopes in keys.items()
        }
    finally:
        platform.close()
    full = {"MLPILOT_AUTH__MODE": "on", "MLPILOT_LOGS__ENABLED": "false", **env}
    return ServerProcess(home, extra_env=full, args=args), made
