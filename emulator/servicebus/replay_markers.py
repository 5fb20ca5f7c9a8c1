"""The application properties a replayed dead letter carries, shared by every way to replay.

`harness dlq replay` sends its copies through the SDK and the console resubmits inside the
broker; both mark the copy the same way, because the workers read the markers (their processor
restarts a failed job once for a copy that names the dead letter it replays).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .core.message import DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON

REPLAYED_FROM = "x-replayed-from"
REPLAY_COUNT = "x-replay-count"
REPLAY_OF = "x-replay-of"
"""Which dead letter a copy replays (``<DLQ path>:<sequence number>``): the workers' processor
restarts a failed job for it once (``workers.common.processor.REPLAY_MARKER``)."""
REPLAYED_AT = "x-replayed-at"
ORIGINAL_MESSAGE_ID = "x-original-message-id"
"""Set only when a copy gets a new message id, so it can still be traced to the original."""
DEAD_LETTER_PROPERTIES = (DEAD_LETTER_REASON, DEAD_LETTER_DESCRIPTION)
"""The broker stores why a message died as application properties; a replayed copy is alive."""


def replay_id(dead_letter_path: str, sequence_number: int | None, message_id: object) -> str:
    """One dead letter, named for ``x-replay-of``: its DLQ and sequence number (unique there),
    or its message id when the number is unknown (an export that lacks it)."""
    return f"{dead_letter_path}:{sequence_number or message_id}"


def replay_properties(
    properties: Mapping[str, object],
    *,
    dead_letter_path: str,
    replay_of: str,
    replayed_at: datetime,
) -> dict[str, object]:
    """A copy's application properties: the dead letter's, without the broker's reason and
    description, with the replay count raised and the markers set."""
    marked = {k: v for k, v in properties.items() if k not in DEAD_LETTER_PROPERTIES}
    previous = marked.get(REPLAY_COUNT)
    replays = previous if isinstance(previous, int) and not isinstance(previous, bool) else 0
    marked[REPLAY_COUNT] = replays + 1
    marked[REPLAYED_FROM] = dead_letter_path
    marked[REPLAY_OF] = replay_of
    marked[REPLAYED_AT] = replayed_at.isoformat()
    return marked
