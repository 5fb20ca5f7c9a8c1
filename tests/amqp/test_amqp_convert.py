"""The send path's fast decoders give what the general ones give, errors included.

``to_broker_message`` and ``batch_messages`` take a fast path for messages as SDKs encode them
and fall back to the general decoding for anything else; these tests build messages of every
shape (and break them) and check both ways agree, so the fast path changes no behaviour.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import message as sdk_message
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.servicebus.amqp.codec import DecodeError
from emulator.servicebus.amqp.convert import (
    WirePayload,
    _broker_message,
    _fast_broker_message,
    to_broker_message,
)
from emulator.servicebus.amqp.message import (
    Header,
    Properties,
    _fast_batch,
    batch_messages,
    encode_application_properties,
    encode_data_section,
    encode_delivery_annotations,
    encode_footer,
    encode_header,
    encode_message_annotations,
    encode_properties,
    encode_sequence_section,
    encode_value_section,
    split_batch,
    split_sections,
)
from emulator.servicebus.amqp.types import Long, Symbol, ULong
from emulator.servicebus.core.message import BrokerMessage

_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
_ids = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.uuids(),
    st.integers(0, 2**64 - 1).map(ULong),
    st.binary(max_size=20),
)
_text = st.one_of(st.none(), st.text(max_size=300))
_properties = st.builds(
    Properties,
    message_id=_ids,
    user_id=st.one_of(st.none(), st.binary(max_size=10)),
    to=_text,
    subject=_text,
    reply_to=_text,
    correlation_id=_ids,
    content_type=st.one_of(st.none(), st.text(max_size=20).map(Symbol)),
    content_encoding=st.one_of(st.none(), st.text(max_size=20).map(Symbol)),
    absolute_expiry_time=st.one_of(st.none(), _times),
    creation_time=st.one_of(st.none(), _times),
    group_id=_text,
    group_sequence=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    reply_to_group_id=_text,
)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Long),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.uuids(),
    _times,
    st.binary(max_size=300),
)
_annotations = st.dictionaries(
    st.sampled_from(
        [
            Symbol("x-opt-partition-key"),
            Symbol("x-opt-scheduled-enqueue-time"),
            Symbol("x-opt-sequence-number"),
            Symbol("x-custom"),
        ]
    ),
    st.one_of(st.text(max_size=10), _times, st.integers(0, 2**31)),
    max_size=4,
)
_bodies = st.one_of(
    st.lists(st.binary(max_size=400), min_size=1, max_size=3).map(
        lambda parts: b"".join(encode_data_section(p) for p in parts)
    ),
    st.lists(st.integers(0, 100), max_size=3).map(encode_sequence_section),
    _values.map(encode_value_section),
    st.just(b""),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """An encoded message: any sections, in spec order or shuffled (the SDK moves some)."""
    sections: list[bytes] = []
    if draw(st.booleans()):
        header = Header(
            durable=draw(st.booleans()),
            priority=draw(st.integers(0, 9)),
            ttl=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
        )
        sections.append(encode_header(header))
    if draw(st.booleans()):
        sections.append(encode_delivery_annotations({Symbol("x-da"): 1}))
    if draw(st.booleans()):
        sections.append(encode_message_annotations(draw(_annotations)))
    if draw(st.booleans()):
        sections.append(encode_properties(draw(_properties)))
    if draw(st.booleans()):
        user = draw(st.dictionaries(st.text(max_size=20), _values, max_size=5))
        sections.append(encode_application_properties(user))
    sections.append(draw(_bodies))
    if draw(st.booleans()):
        sections.append(encode_footer({Symbol("x-f"): "f"}))
    if draw(st.booleans()):
        sections = draw(st.permutations(sections))
    return b"".join(sections)


def _fields(message: BrokerMessage) -> dict[str, Any]:
    return {
        "payload": tuple(message.payload),  # type: ignore[arg-type]
        "properties": message.payload.properties,  # type: ignore[attr-defined]
        # in order (the JSON views list them so) and with their types (Symbol is a str)
        "system": [(k, type(v), v) for k, v in message.system.items()],
        "user": message.user,
        "size": message.size,
        "ttl": message.time_to_live,
        "scheduled": message.scheduled_enqueue_time,
        "annotations": message.annotations,
    }


def _outcome(decoder: Any, raw: bytes) -> Any:
    try:
        result = decoder(raw)
    except DecodeError as exc:
        return ("DecodeError", str(exc))
    if isinstance(result, BrokerMessage):
        return _fields(result)
    return result


@settings(max_examples=400, deadline=None)
@given(messages())
def test_fast_path_decodes_as_the_general_one(raw: bytes) -> None:
    assert _outcome(to_broker_message, raw) == _outcome(_broker_message, raw)


@settings(max_examples=400, deadline=None)
@given(messages(), st.data())
def test_broken_messages_fail_or_pass_alike(raw: bytes, data: st.DataObject) -> None:
    """Flipped or cut bytes: the same DecodeError both ways, or the same message."""
    broken = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        if not broken:
            break
        at = data.draw(st.integers(0, len(broken) - 1))
        broken[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        broken = broken[: data.draw(st.integers(0, len(broken)))]
    assert _outcome(to_broker_message, bytes(broken)) == _outcome(_broker_message, bytes(broken))


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    inner = draw(st.lists(messages(), max_size=5))
    sections = [encode_data_section(m) for m in inner]
    if draw(st.booleans()):
        sections.insert(0, encode_properties(draw(_properties)))
    if draw(st.booleans()):
        sections.insert(0, encode_message_annotations(draw(_annotations)))
    if draw(st.booleans()):
        sections = draw(st.permutations(sections))
    if draw(st.booleans()):
        sections.append(draw(_bodies))
    return b"".join(sections)


def _general_batch(raw: bytes) -> list[bytes]:
    return split_batch(split_sections(raw).body or b"")


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_batch_split_as_the_general_one(raw: bytes, data: st.DataObject) -> None:
    assert _outcome(batch_messages, raw) == _outcome(_general_batch, raw)
    broken = bytearray(raw)
    if broken:
        broken[data.draw(st.integers(0, len(broken) - 1))] = data.draw(st.integers(0, 255))
        broken = broken[: data.draw(st.integers(0, len(broken)))]
    assert _outcome(batch_messages, bytes(broken)) == _outcome(_general_batch, bytes(broken))


def test_an_sdk_batch_takes_the_fast_path() -> None:
    """A batch the way ServiceBusSender.send_messages(batch) encodes it: fast all the way."""
    batch = ServiceBusMessageBatch(max_size_in_bytes=262144, amqp_transport=PyamqpTransport)
    for i in range(3):
        batch.add_message(
            ServiceBusMessage(
                b"x" * 100,
                application_properties={"jobType": "chat.suggest"},
                message_id=str(uuid.UUID(int=i)),
                session_id="s",
            )
        )
    out = bytearray()
    sdk_encode.encode_payload(out, sdk_message.BatchMessage(*batch._message))
    raws = _fast_batch(bytes(out))
    assert raws is not None and len(raws) == 3
    message = _fast_broker_message(raws[2])
    assert message is not None
    assert message.system == {"MessageId": str(uuid.UUID(int=2)), "SessionId": "s"}
    assert message.user == {"jobType": "chat.suggest"}
    assert isinstance(message.payload, WirePayload)
    assert message.payload.properties is not None
    assert message.payload.properties.group_id == "s"


def test_copies_share_properties_until_one_changes() -> None:
    """Fan-out copies share their dicts; changing one copy's leaves the others' alone."""
    original = BrokerMessage(payload=None, system={"MessageId": "m"}, user={"a": 1}, size=1)
    first, second = original.copy(), original.copy()
    first.set_user_properties({"DeadLetterReason": "r"})
    assert first.user == {"a": 1, "DeadLetterReason": "r"} and first.modified
    assert second.user == {"a": 1} and original.user == {"a": 1} and not second.modified


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x53", b"\x00\x53\x75\xa0\x05ab"])
def test_short_input(raw: bytes) -> None:
    assert _outcome(to_broker_message, raw) == _outcome(_broker_message, raw)
