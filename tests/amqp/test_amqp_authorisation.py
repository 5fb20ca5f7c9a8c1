"""Link authorisation: token scopes and expiry, and each reason an attach is refused."""

from __future__ import annotations

import pytest

from emulator.servicebus.amqp import conditions
from emulator.servicebus.amqp.authorisation import (
    Admitted,
    Refusal,
    TokenRights,
    authorise_link,
)
from emulator.servicebus.amqp.links import LinkKind
from emulator.servicebus.core.broker import Broker
from emulator.servicebus.core.clock import ManualClock
from emulator.servicebus.topology import (
    AccessRights,
    NamespaceTopology,
    QueueDescription,
    SubscriptionDescription,
    TopicDescription,
    default_rules,
)

NOW = 1_000.0


def _broker() -> Broker:
    topology = NamespaceTopology(
        queues=[QueueDescription(name="q")],
        topics=[
            TopicDescription(
                name="t", subscriptions=[SubscriptionDescription(name="s", rules=default_rules())]
            )
        ],
    )
    return Broker(topology, ManualClock())


def _tokens(scope: str, rights: AccessRights, expires: float = NOW + 60) -> TokenRights:
    tokens = TokenRights(now=lambda: NOW)
    tokens.grant(scope, rights, expires)
    return tokens


def test_rights_cover_the_scope_and_what_lies_beneath_it_only() -> None:
    tokens = _tokens("T", AccessRights.LISTEN)
    assert tokens.rights_for("t/Subscriptions/s") == AccessRights.LISTEN
    assert tokens.rights_for("t") == AccessRights.LISTEN
    assert tokens.rights_for("tx") is None
    assert tokens.rights_for("q") is None


def test_namespace_token_covers_everything_and_rights_add_up() -> None:
    tokens = _tokens("", AccessRights.SEND)
    tokens.grant("q", AccessRights.LISTEN, NOW + 60)
    assert tokens.rights_for("q") == AccessRights.SEND | AccessRights.LISTEN
    assert tokens.rights_for("t") == AccessRights.SEND


def test_expired_token_grants_nothing() -> None:
    assert _tokens("", AccessRights.MANAGE, expires=NOW).rights_for("q") is None


def _decide(tokens: TokenRights, kind: LinkKind, path: str, *, receiver: bool) -> object:
    return authorise_link(_broker(), tokens, kind, path, emulator_sends=receiver)


def test_receiver_is_admitted_with_its_store_and_sender_without() -> None:
    tokens = _tokens("", AccessRights.SEND | AccessRights.LISTEN)
    received = _decide(tokens, LinkKind.ENTITY, "t/Subscriptions/s", receiver=True)
    assert isinstance(received, Admitted) and received.store is not None
    assert _decide(tokens, LinkKind.ENTITY, "t", receiver=False) == Admitted()


def test_cbs_needs_no_token_and_management_needs_only_a_valid_one() -> None:
    nothing = TokenRights(now=lambda: NOW)
    assert _decide(nothing, LinkKind.CBS, "$cbs", receiver=True) == Admitted()
    assert _decide(_tokens("q", AccessRights.SEND), LinkKind.MANAGEMENT, "q", receiver=True) == (
        Admitted()
    )
    refused = _decide(nothing, LinkKind.MANAGEMENT, "q", receiver=True)
    assert isinstance(refused, Refusal) and refused.condition == conditions.UNAUTHORIZED


@pytest.mark.parametrize(
    ("rights", "path", "receiver", "condition", "text"),
    [
        (AccessRights.MANAGE, "nope", False, conditions.NOT_FOUND, "nope"),
        (None, "q", False, conditions.UNAUTHORIZED, "No valid token for 'q'"),
        (AccessRights.LISTEN, "q", False, conditions.UNAUTHORIZED, "'Send' claim(s)"),
        (AccessRights.SEND, "q", True, conditions.UNAUTHORIZED, "'Listen' claim(s)"),
        (AccessRights.LISTEN, "t", True, conditions.NOT_ALLOWED, "Cannot receive from topic"),
        (AccessRights.SEND, "t/Subscriptions/s", False, conditions.NOT_ALLOWED, "Cannot send"),
        (AccessRights.SEND, "q/$DeadLetterQueue", False, conditions.NOT_ALLOWED, "Cannot send"),
    ],
)
def test_each_refusal_names_its_reason(
    rights: AccessRights | None, path: str, receiver: bool, condition: str, text: str
) -> None:
    tokens = TokenRights(now=lambda: NOW) if rights is None else _tokens("", rights)
    refused = _decide(tokens, LinkKind.ENTITY, path, receiver=receiver)
    assert isinstance(refused, Refusal)
    assert refused.condition == condition
    assert text in refused.description
