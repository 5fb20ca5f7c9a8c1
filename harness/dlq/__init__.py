"""Dead-letter export and replay through the real SDK (``harness dlq list|export|replay``).

Why a tool: the seed's DLQ monitor *received* dead letters to look at them, which locks them
and bumps their delivery counts, and re-sending them by hand drops properties. Here:

* export only peeks (no lock, no delivery count) and writes one JSON object per dead letter,
  lossless for everything the SDK exposes (typed values are tagged, binary bodies base64);
* replay sends a copy first and completes the dead letter only after that send succeeded; a
  failed send abandons it. An interrupted replay can at worst send a message twice, never lose
  one;
* replay works on a peeked snapshot: it locks only up to the last selected dead letter, and
  dead letters that arrive meanwhile (a replayed job that fails again) wait for the next run.

Replaying to a topic re-applies its subscriptions' rules: the copy reaches *every* subscription
whose filter matches, not only the one it died in. Copies keep their message id (re-runs stay
idempotent where duplicate detection is on); a target that requires duplicate detection drops,
silently, a copy whose id it saw within its window, so such dead letters are skipped unless
``new_message_id`` is set.

SDK limits worth knowing: it decodes AMQP strings and binaries both as bytes and timestamps as
integers (milliseconds), so an exported property is a string when its bytes are UTF-8 and a
timestamp property comes back as an integer; it can only send binary application properties
that are UTF-8 (as strings), so a dead letter with another binary property fails to replay and
stays where it is.
"""

from __future__ import annotations

from .clients import DeadLetterSource, admin_client, client, emulator_ca_bundle
from .errors import BadRecordsError, DlqError, describe_error
from .export import DeadLetterCount, dead_letter_counts, export_dead_letters, peek_dead_letters
from .records import (
    ORIGINAL_MESSAGE_ID,
    REPLAY_COUNT,
    REPLAY_OF,
    REPLAYED_AT,
    REPLAYED_FROM,
    DeadLetterRecord,
    make_selector,
    read_records,
)
from .replay import ReplayOutcome, ReplayReport, replay_dead_letters, replay_records
from .values import decode_value, encode_value

__all__ = [
    "ORIGINAL_MESSAGE_ID",
    "REPLAYED_AT",
    "REPLAYED_FROM",
    "REPLAY_COUNT",
    "REPLAY_OF",
    "BadRecordsError",
    "DeadLetterCount",
    "DeadLetterRecord",
    "DeadLetterSource",
    "DlqError",
    "ReplayOutcome",
    "ReplayReport",
    "admin_client",
    "client",
    "dead_letter_counts",
    "decode_value",
    "describe_error",
    "emulator_ca_bundle",
    "encode_value",
    "export_dead_letters",
    "make_selector",
    "peek_dead_letters",
    "read_records",
    "replay_dead_letters",
    "replay_records",
]
