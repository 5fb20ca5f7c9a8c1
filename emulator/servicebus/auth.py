"""Shared Access Signature tokens: generation (for tests and the harness) and validation.

Token format, as the azure-servicebus SDK (``_pyamqp/utils.generate_sas_token``) and the
other SDKs build it::

    SharedAccessSignature sr=<quote_plus(uri)>&sig=<quote_plus(b64 hmac)>&se=<expiry>&skn=<name>

The signature is HMAC-SHA256 keyed by the policy key *as UTF-8 bytes* (never base64-decoded)
over ``<sr exactly as it appears in the token> + "\\n" + <se>``. Validation recomputes it over
the raw ``sr`` text, so it does not depend on how a client chose to percent-encode the URI.

Unlike the official emulator, which accepts any key, a token must be signed by a configured
policy: tests then catch a wrong connection string here rather than in the cloud.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus, urlencode, urlsplit

from .topology import AccessRights, SasPolicy

__all__ = [
    "AuthError",
    "SasToken",
    "audience_covers",
    "entity_path_from_audience",
    "generate_sas_token",
    "parse_sas_token",
    "validate_token",
]

_PREFIX = "SharedAccessSignature "
_FIELDS = ("sr", "sig", "se", "skn")


class AuthError(Exception):
    """A token that grants nothing; the message says why (put-token returns it to the client)."""


@dataclass(frozen=True)
class SasToken:
    """A parsed SAS token. ``sr``/``sig``/``skn`` are decoded; ``raw_sr``/``raw_se`` are signed."""

    sr: str
    sig: str
    se: int
    skn: str
    raw_sr: str
    raw_se: str


def generate_sas_token(audience: str, policy: str, key: str, expiry: int) -> str:
    """Build a token byte-for-byte as the Python SDK does (``expiry`` is epoch seconds)."""
    signature = _sign(quote_plus(audience), str(int(expiry)), key)
    fields = {"sr": audience, "sig": signature, "se": str(int(expiry))}
    if policy:
        # The SDK quotes the policy name twice (quote_plus, then urlencode); match it.
        fields["skn"] = quote_plus(policy)
    return _PREFIX + urlencode(fields)


def parse_sas_token(token: str) -> SasToken:
    """Split a token into its fields; raises AuthError when it is not a well-formed SAS token."""
    if not isinstance(token, str):
        raise AuthError(f"malformed token: expected a string, got {type(token).__name__}")
    text = token.strip()
    if not text.startswith(_PREFIX):
        raise AuthError(
            "malformed token: expected 'SharedAccessSignature sr=...&sig=...&se=...&skn=...'"
            " (JWT/Entra ID tokens are not supported)"
        )
    raw: dict[str, str] = {}
    for part in text[len(_PREFIX) :].strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise AuthError(f"malformed token: field {name!r} has no value")
        if name in raw:
            raise AuthError(f"malformed token: field {name!r} appears twice")
        raw[name] = value
    missing = [f for f in _FIELDS if not raw.get(f)]
    if missing:
        raise AuthError(f"malformed token: missing {', '.join(missing)}")
    try:
        se = int(raw["se"])
    except ValueError:
        raise AuthError(f"malformed token: se={raw['se']!r} is not an epoch timestamp") from None
    # base64 never contains spaces: a '+' a client forgot to encode is still a '+'.
    sig = unquote_plus(raw["sig"].replace("+", "%2B"))
    return SasToken(
        sr=unquote_plus(raw["sr"]),
        sig=sig,
        se=se,
        skn=unquote_plus(raw["skn"]),
        raw_sr=raw["sr"],
        raw_se=raw["se"],
    )


def validate_token(
    token: str, audience: str, policies: Sequence[SasPolicy], now: float
) -> AccessRights:
    """Check signature, policy, expiry and scope; return the rights the token grants.

    ``audience`` is the resource being accessed (the put-token ``name`` or an HTTP URL);
    the token's ``sr`` must cover it (see :func:`audience_covers`).
    """
    parsed = parse_sas_token(token)
    policy = _find_policy(parsed.skn, policies)
    expected = _sign(parsed.raw_sr, parsed.raw_se, policy.key)
    if not hmac.compare_digest(_b64(parsed.sig), _b64(expected)):
        raise AuthError(
            f"invalid signature: the token was not signed with the key of {policy.name!r}"
        )
    if parsed.se <= now:
        raise AuthError(f"token expired at {parsed.se} (now {int(now)})")
    if not audience_covers(parsed.sr, audience):
        raise AuthError(f"token for {parsed.sr!r} does not grant access to {audience!r}")
    return policy.rights


def audience_covers(token_resource: str, audience: str) -> bool:
    """True when a token for ``token_resource`` may be used for ``audience``.

    Case-insensitive; the scheme (sb/amqps/https) and a trailing slash are ignored, and a
    port missing on either side matches any port (``sb://localhost`` is the official
    emulator's endpoint). Paths must match whole segments: ``sb://h/q1`` covers
    ``sb://h/q1/$DeadLetterQueue`` but not ``sb://h/q10``.
    """
    token_host, token_port, token_path = _split_uri(token_resource)
    host, port, path = _split_uri(audience)
    if not token_host or token_host != host:
        return False
    if token_port is not None and port is not None and token_port != port:
        return False
    return path[: len(token_path)] == token_path


def entity_path_from_audience(audience: str) -> str:
    """The entity path of a resource URI: ``sb://host:5672/t/Subscriptions/s`` → same path.

    Sub-queue suffixes (``/$DeadLetterQueue``) and ``$management`` are kept; the caller
    decides what they mean. A bare namespace URI gives ``""``.
    """
    rest = audience.split("://", 1)[1] if "://" in audience else audience
    _, _, path = rest.partition("/")
    return path.split("?", 1)[0].strip("/")


# --- helpers -------------------------------------------------------------------------------


def _sign(raw_sr: str, raw_se: str, key: str) -> str:
    message = f"{raw_sr}\n{raw_se}".encode()
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _b64(value: str) -> bytes:
    """Decode a base64 signature; garbage decodes to b'' so it simply fails to compare."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _find_policy(skn: str, policies: Sequence[SasPolicy]) -> SasPolicy:
    # The Python SDK quotes skn twice, so a name with reserved characters arrives once-quoted.
    candidates = (skn, unquote_plus(skn))
    for candidate in candidates:
        folded = candidate.casefold()
        for policy in policies:
            if policy.name.casefold() == folded:
                return policy
    raise AuthError(f"unknown policy {skn!r} (SharedAccessKeyName)")


def _split_uri(uri: str) -> tuple[str, int | None, list[str]]:
    """(host, port, path segments), lower-cased, scheme dropped; unparsable gives no host."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    try:
        parts = urlsplit("//" + rest.casefold())
        port = parts.port
    except ValueError:
        return "", None, []
    return parts.hostname or "", port, [segment for segment in parts.path.split("/") if segment]
