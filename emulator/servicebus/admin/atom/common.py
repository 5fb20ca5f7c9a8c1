"""What both directions of the Atom API share: namespaces, the service's defaults and limits,
the request's dialect, the error a bad body raises, and the parsed forms the API stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ...topology import NamespaceTier, RuleDescription

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNTS_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"

# .NET TimeSpan.MaxValue: what the service reports for "never" (TTL, AutoDeleteOnIdle).
TIMESPAN_MAX_TEXT = "P10675199DT2H48M5.4775807S"
TIMESPAN_MAX = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580)

# What the service gives an entity created without a value (not the emulator's config
# defaults): code written against a real namespace sees the same entity here.
SERVICE_MAX_DELIVERY_COUNT = 10
SERVICE_DUPLICATE_WINDOW = timedelta(minutes=10)
MAX_LOCK_DURATION = timedelta(minutes=5)

DESCRIPTION_KINDS = (
    "QueueDescription",
    "TopicDescription",
    "SubscriptionDescription",
    "RuleDescription",
)


class AtomError(ValueError):
    """A request body the API refuses (answered 400 with this message)."""


MESSAGE_SIZE_API_VERSION = "2021-05"
MIN_AUTO_DELETE_ON_IDLE = timedelta(minutes=5)
PREMIUM_MESSAGE_SIZE_KB = (1024, 102400)


@dataclass(frozen=True)
class Dialect:
    """What one request may say and hear: the namespace's tier and the request's api-version.

    ``MaxMessageSizeInKilobytes`` exists from api-version 2021-05 on (older versions neither
    accept nor report it); a Standard namespace refuses any value but its fixed 256.
    """

    tier: NamespaceTier = NamespaceTier.STANDARD
    api_version: str = "2024-05"

    @property
    def has_message_size(self) -> bool:
        return self.api_version >= MESSAGE_SIZE_API_VERSION

    def message_size(self, text: str) -> int:
        """``MaxMessageSizeInKilobytes`` in bytes, or AtomError as the service refuses it."""
        where = "MaxMessageSizeInKilobytes"
        if not self.has_message_size:
            raise AtomError(
                f"{where} is not supported in api-version {self.api_version}; it needs "
                f"{MESSAGE_SIZE_API_VERSION} or later."
            )
        if self.tier is NamespaceTier.STANDARD:
            standard = self.tier.default_max_message_size_bytes // 1024
            value = parse_int(where, text, 1, PREMIUM_MESSAGE_SIZE_KB[1])
            if value != standard:
                raise AtomError(
                    f"SubCode=40000. {where} cannot be set to {value} because the namespace is "
                    f"using the 'Standard' tier (fixed at {standard}). This operation is only "
                    "supported in the 'Premium' tier."
                )
            return value * 1024
        return parse_int(where, text, *PREMIUM_MESSAGE_SIZE_KB) * 1024

    def reported_message_size(self, size_bytes: int) -> int | None:
        return size_bytes // 1024 if self.has_message_size else None


def parse_int(name: str, text: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AtomError(f"{name}: '{text}' is not an integer.") from None
    if not minimum <= value <= maximum:
        raise AtomError(f"{name}: {value} is out of range [{minimum}, {maximum}].")
    return value


@dataclass
class Extras:
    """Settings the broker does not model but the API stores and returns as given."""

    user_metadata: str | None = None


@dataclass
class ParsedRule:
    """A rule from the API with the ``@name`` parameters its filter and action bind."""

    description: RuleDescription
    filter_parameters: dict[str, object] = field(default_factory=dict)
    action_parameters: dict[str, object] = field(default_factory=dict)
