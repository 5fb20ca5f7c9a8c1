"""SAS tokens: SDK compatibility, every rejection, audience scoping and rights."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.servicebus._base_handler import (
    ServiceBusAzureNamedKeyTokenCredential,
    ServiceBusSharedKeyCredential,
)
from azure.servicebus._pyamqp.utils import generate_sas_token as sdk_generate_sas_token

from emulator.servicebus.auth import (
    AuthError,
    SasToken,
    audience_covers,
    entity_path_from_audience,
    generate_sas_token,
    parse_sas_token,
    validate_token,
)
from emulator.servicebus.topology import AccessRights, SasPolicy, default_policies

NOW = 1_800_000_000.0
EXPIRY = int(NOW) + 3600
AUDIENCE = "sb://localhost:5672/q1"
POLICIES = [
    *default_policies(),
    SasPolicy("vercel-send", "send-key", AccessRights.SEND),
    SasPolicy("functions-rw", "rw-key", AccessRights.SEND | AccessRights.LISTEN),
]
ALL = AccessRights.SEND | AccessRights.LISTEN | AccessRights.MANAGE


# --- SDK compatibility ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audience", "policy", "key"),
    [
        (AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE"),
        ("sb://localhost:5672/t/Subscriptions/s/$DeadLetterQueue", "functions-rw", "rw-key"),
        ("https://127.0.0.1:5300", "vercel-send", "k+/=é"),
        ("sb://x/q", "my policy&co", "key"),
    ],
)
def test_generate_matches_the_sdk_byte_for_byte(audience: str, policy: str, key: str) -> None:
    assert generate_sas_token(audience, policy, key, EXPIRY) == sdk_generate_sas_token(
        audience, policy, key, EXPIRY
    )


def test_sdk_shared_key_credential_token_validates() -> None:
    credential = ServiceBusSharedKeyCredential("functions-rw", "rw-key")
    access = credential.get_token(AUDIENCE)
    rights = validate_token(access.token, AUDIENCE, POLICIES, now=time.time())
    assert rights == AccessRights.SEND | AccessRights.LISTEN
    assert parse_sas_token(access.token).se == access.expires_on


def test_sdk_named_key_credential_token_validates_for_root_policy() -> None:
    named = AzureNamedKeyCredential("RootManageSharedAccessKey", "SAS_KEY_VALUE")
    access = ServiceBusAzureNamedKeyTokenCredential(named).get_token("sb://localhost:5672/t")
    rights = validate_token(access.token, "sb://localhost:5672/t", POLICIES, now=time.time())
    assert rights == ALL


def test_sdk_token_with_reserved_characters_in_policy_name_validates() -> None:
    policy = SasPolicy("odd name+x", "k", AccessRights.LISTEN)
    token = sdk_generate_sas_token(AUDIENCE, policy.name, policy.key, EXPIRY)
    assert validate_token(token, AUDIENCE, [policy], NOW) == AccessRights.LISTEN


def test_admin_client_style_token_covers_entity_urls() -> None:
    token = generate_sas_token("https://localhost:5300", "vercel-send", "send-key", EXPIRY)
    rights = validate_token(token, "https://localhost:5300/huntaze-jobs", POLICIES, NOW)
    assert rights == AccessRights.SEND


# --- parsing -------------------------------------------------------------------------------


def test_parse_decodes_fields_and_keeps_raw_signed_text() -> None:
    token = generate_sas_token("sb://h:1/t/Subscriptions/s", "vercel-send", "send-key", EXPIRY)
    parsed = parse_sas_token(token)
    assert isinstance(parsed, SasToken)
    assert parsed.sr == "sb://h:1/t/Subscriptions/s"
    assert parsed.raw_sr == quote_plus("sb://h:1/t/Subscriptions/s")
    assert parsed.se == EXPIRY and parsed.raw_se == str(EXPIRY)
    assert parsed.skn == "vercel-send"
    assert len(parsed.sig) == 44  # base64 of a SHA-256 digest


def test_fields_in_any_order_and_surrounding_whitespace() -> None:
    token = generate_sas_token(AUDIENCE, "vercel-send", "send-key", EXPIRY)
    fields = token.removeprefix("SharedAccessSignature ").split("&")
    reordered = "SharedAccessSignature " + "&".join(reversed(fields))
    assert validate_token(f"  {reordered}\n", AUDIENCE, POLICIES, NOW) == AccessRights.SEND


def test_unencoded_plus_in_signature_is_tolerated() -> None:
    token = generate_sas_token(AUDIENCE, "vercel-send", "send-key", EXPIRY)
    sig = parse_sas_token(token).sig
    raw = token.replace(quote_plus(sig), sig)  # a client that forgot to encode the signature
    assert validate_token(raw, AUDIENCE, POLICIES, NOW) == AccessRights.SEND


def test_signature_is_checked_over_the_sr_text_as_sent() -> None:
    # Another client percent-encodes differently (lower-case escapes): still valid, because the
    # signer signed exactly that text.
    raw_sr = quote_plus(AUDIENCE).lower()
    digest = hmac.new(b"send-key", f"{raw_sr}\n{EXPIRY}".encode(), hashlib.sha256).digest()
    sig = quote_plus(base64.b64encode(digest).decode())
    token = f"SharedAccessSignature sr={raw_sr}&sig={sig}&se={EXPIRY}&skn=vercel-send"
    assert validate_token(token, AUDIENCE, POLICIES, NOW) == AccessRights.SEND


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("Bearer eyJ0eXAiOiJKV1QifQ", "expected 'SharedAccessSignature sr="),
        ("", "expected 'SharedAccessSignature sr="),
        ("SharedAccessSignature", "expected 'SharedAccessSignature sr="),
        ("SharedAccessSignature sr=a&sig", "field 'sig' has no value"),
        ("SharedAccessSignature sr=a&sr=b&sig=c&se=1&skn=d", "field 'sr' appears twice"),
        ("SharedAccessSignature sr=a&sig=c&se=1", "missing skn"),
        ("SharedAccessSignature sig=c&skn=d", "missing sr, se"),
        ("SharedAccessSignature sr=a&sig=&se=1&skn=d", "missing sig"),
        ("SharedAccessSignature sr=a&sig=c&se=soon&skn=d", "se='soon' is not an epoch timestamp"),
    ],
)
def test_malformed_tokens(token: str, fragment: str) -> None:
    with pytest.raises(AuthError, match=r"^malformed token: ") as info:
        validate_token(token, AUDIENCE, POLICIES, NOW)
    assert fragment in str(info.value)


def test_non_string_token_is_malformed() -> None:
    with pytest.raises(AuthError, match="malformed token: expected a string, got bytes"):
        parse_sas_token(b"SharedAccessSignature sr=a")  # type: ignore[arg-type]


# --- rejections ----------------------------------------------------------------------------


def test_unknown_policy() -> None:
    token = generate_sas_token(AUDIENCE, "nobody", "SAS_KEY_VALUE", EXPIRY)
    with pytest.raises(AuthError, match=r"unknown policy 'nobody' \(SharedAccessKeyName\)"):
        validate_token(token, AUDIENCE, POLICIES, NOW)


def test_wrong_key_is_a_bad_signature() -> None:
    token = generate_sas_token(AUDIENCE, "vercel-send", "SAS_KEY_VALUE", EXPIRY)
    with pytest.raises(AuthError, match=r"invalid signature: .* key of 'vercel-send'"):
        validate_token(token, AUDIENCE, POLICIES, NOW)


def test_key_is_not_base64_decoded() -> None:
    # A base64-looking key signs with its text, not its decoded bytes.
    key = "aHVudGF6ZQ=="
    policy = SasPolicy("p", key, AccessRights.SEND)
    token = generate_sas_token(AUDIENCE, "p", key, EXPIRY)
    assert validate_token(token, AUDIENCE, [policy], NOW) == AccessRights.SEND
    decoded_key_token = generate_sas_token(AUDIENCE, "p", base64.b64decode(key).decode(), EXPIRY)
    with pytest.raises(AuthError, match="invalid signature"):
        validate_token(decoded_key_token, AUDIENCE, [policy], NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(f"se={EXPIRY}", f"se={EXPIRY + 3600}"),  # extend the lifetime
        lambda t: t.replace(quote_plus(AUDIENCE), quote_plus("sb://localhost:5672/q2")),
        lambda t: t.replace("sig=", "sig=AAAA"),  # not a 32-byte signature
        lambda t: t.replace("sig=", "sig=%25%25"),  # not base64 at all
    ],
)
def test_tampered_tokens_are_bad_signatures(tamper) -> None:  # type: ignore[no-untyped-def]
    token = tamper(generate_sas_token(AUDIENCE, "vercel-send", "send-key", EXPIRY))
    with pytest.raises(AuthError, match="invalid signature"):
        validate_token(token, "sb://localhost:5672", POLICIES, NOW)


@pytest.mark.parametrize("now", [EXPIRY, EXPIRY + 0.5, EXPIRY + 86400])
def test_expired(now: float) -> None:
    token = generate_sas_token(AUDIENCE, "vercel-send", "send-key", EXPIRY)
    with pytest.raises(AuthError, match=f"token expired at {EXPIRY}"):
        validate_token(token, AUDIENCE, POLICIES, now)


def test_valid_until_the_last_second() -> None:
    token = generate_sas_token(AUDIENCE, "vercel-send", "send-key", EXPIRY)
    assert validate_token(token, AUDIENCE, POLICIES, EXPIRY - 0.001) == AccessRights.SEND


def test_audience_not_covered() -> None:
    token = generate_sas_token("sb://localhost:5672/q1", "vercel-send", "send-key", EXPIRY)
    with pytest.raises(AuthError, match="does not grant access to 'sb://localhost:5672/q2'"):
        validate_token(token, "sb://localhost:5672/q2", POLICIES, NOW)


# --- audience scoping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_sr", "audience"),
    [
        ("sb://localhost:5672/q1", "sb://localhost:5672/q1"),
        ("sb://localhost:5672/q1", "amqps://localhost:5672/q1"),
        ("sb://localhost:5672/q1", "https://LOCALHOST:5672/Q1/"),
        ("sb://localhost:5672/q1/", "sb://localhost:5672/q1"),
        ("sb://localhost:5672", "sb://localhost:5672/t/Subscriptions/s"),
        ("sb://localhost:5672/", "sb://localhost:5672/q1"),
        ("sb://localhost:5672/t", "sb://localhost:5672/t/Subscriptions/s/$DeadLetterQueue"),
        ("sb://localhost:5672/q1", "sb://localhost:5672/q1/$management"),
        ("sb://localhost", "sb://localhost:5672/q1"),  # official emulator endpoint: no port
        ("sb://localhost:5672/q1", "sb://localhost/q1"),
        ("sb://[::1]:5672/q1", "amqps://[::1]:5672/q1"),
    ],
)
def test_audience_covered(token_sr: str, audience: str) -> None:
    assert audience_covers(token_sr, audience)
    token = generate_sas_token(token_sr, "vercel-send", "send-key", EXPIRY)
    assert validate_token(token, audience, POLICIES, NOW) == AccessRights.SEND


@pytest.mark.parametrize(
    ("token_sr", "audience"),
    [
        ("sb://localhost:5672/q1", "sb://localhost:5672/q10"),  # whole segments only
        ("sb://localhost:5672/q1", "sb://localhost:5672/q"),
        ("sb://localhost:5672/t/Subscriptions/s", "sb://localhost:5672/t"),
        ("sb://localhost:5672/q1", "sb://otherhost:5672/q1"),
        ("sb://localhost:5672/q1", "sb://localhost:5673/q1"),
        ("sb://localhost:5672/q1", "sb://localhost:notaport/q1"),
        ("", "sb://localhost:5672/q1"),
    ],
)
def test_audience_not_covered_cases(token_sr: str, audience: str) -> None:
    assert not audience_covers(token_sr, audience)


# --- rights --------------------------------------------------------------------------------


def test_rights_per_policy() -> None:
    def rights(policy: str, key: str) -> AccessRights:
        token = generate_sas_token(AUDIENCE, policy, key, EXPIRY)
        return validate_token(token, AUDIENCE, POLICIES, NOW)

    assert rights("RootManageSharedAccessKey", "SAS_KEY_VALUE") == ALL
    assert rights("rootmanagesharedaccesskey", "SAS_KEY_VALUE") == ALL  # names ignore case
    assert rights("vercel-send", "send-key") == AccessRights.SEND
    assert AccessRights.LISTEN not in rights("vercel-send", "send-key")
    rw = rights("functions-rw", "rw-key")
    assert AccessRights.SEND in rw and AccessRights.LISTEN in rw
    assert AccessRights.MANAGE not in rw


def test_manage_implies_send_and_listen() -> None:
    policy = SasPolicy("admin", "k", AccessRights.MANAGE)
    assert policy.rights == ALL
    assert AccessRights.MANAGE.effective() == ALL
    assert AccessRights.SEND.effective() == AccessRights.SEND


# --- entity paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audience", "path"),
    [
        ("sb://localhost:5672/q1", "q1"),
        ("amqps://127.0.0.1:5672/q1/", "q1"),
        ("sb://h/t/Subscriptions/s", "t/Subscriptions/s"),
        ("sb://h:1/t/Subscriptions/s/$DeadLetterQueue", "t/Subscriptions/s/$DeadLetterQueue"),
        ("sb://h:1/q/$management", "q/$management"),
        ("https://h:5300/orders/eu?api-version=2024-05", "orders/eu"),
        ("sb://localhost:5672", ""),
        ("sb://localhost:5672/", ""),
        ("localhost:5672/q1", "q1"),
    ],
)
def test_entity_path_from_audience(audience: str, path: str) -> None:
    assert entity_path_from_audience(audience) == path
