"""Connection strings and the HS256 access tokens of the SignalR Service REST API.

A server (the Functions SignalR output binding) signs a JWT with the AccessKey from
`AzureSignalRConnectionString`; `aud` is the request URL and `exp` is required. Written
out (a few lines of HMAC) rather than pulling in a JWT library for one algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionString:
    endpoint: str
    access_key: str
    version: str = "1.0"

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        """`Endpoint=https://x.service.signalr.net;AccessKey=...;Version=1.0;[Port=..]`."""
        fields: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep:
                fields[key.strip().lower()] = value.strip()
        endpoint = fields.get("endpoint", "").rstrip("/")
        if not endpoint or "accesskey" not in fields:
            raise ValueError("a SignalR connection string needs Endpoint= and AccessKey=")
        if "port" in fields:
            scheme, _, rest = endpoint.partition("://")
            host = rest.split("/", 1)[0].rsplit(":", 1)[0]
            endpoint = f"{scheme}://{host}:{fields['port']}"
        return cls(endpoint, fields["accesskey"], fields.get("version", "1.0"))

    def __str__(self) -> str:
        return f"Endpoint={self.endpoint};AccessKey={self.access_key};Version={self.version};"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(
    access_key: str, audience: str, *, lifetime: float = 3600, now: float | None = None
) -> str:
    """An HS256 JWT with `aud` and `exp`, as the service expects."""
    issued = int(time.time() if now is None else now)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(
        json.dumps({"aud": audience, "exp": issued + int(lifetime), "iat": issued}).encode()
    )
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(access_key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


class TokenError(ValueError):
    """Why a bearer token was refused (sent back in the 401 body)."""


def verify_token(
    token: str, access_key: str, audiences: set[str], *, now: float | None = None
) -> dict:
    """Check signature, expiry and audience; return the claims or raise TokenError."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(claims_b64))
        signature = _unb64(signature_b64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("bearer token is not a JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("only HS256 tokens signed with the AccessKey are accepted")
    expected = hmac.new(
        access_key.encode(), f"{header_b64}.{claims_b64}".encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("token signature does not match the AccessKey")
    if not isinstance(claims, dict):
        raise TokenError("token claims are not an object")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise TokenError("token has no exp claim")
    if exp < (time.time() if now is None else now):
        raise TokenError("token expired")
    aud = claims.get("aud")
    auds = {aud} if isinstance(aud, str) else set(aud or [])
    if not {a.rstrip("/") for a in auds} & {a.rstrip("/") for a in audiences}:
        raise TokenError(f"token audience {aud!r} is not the request URL")
    return claims
