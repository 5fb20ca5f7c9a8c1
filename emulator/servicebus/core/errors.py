"""Broker-level failures. The AMQP adapter maps each to the condition the real service sends."""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every failure the broker core reports to a client."""


class EntityNotFoundError(BrokerError):
    pass


class MessageLockLostError(BrokerError):
    pass


class MessageNotFoundError(BrokerError):
    pass


class MessageSizeExceededError(BrokerError):
    pass


class InvalidOperationError(BrokerError):
    """The request is well-formed but not allowed in the entity's current state."""

    condition = "amqp:not-allowed"


class NotSupportedError(BrokerError):
    """A Service Bus feature this emulator refuses rather than silently ignoring."""


class SessionLockLostError(BrokerError):
    pass


class SessionCannotBeLockedError(BrokerError):
    pass
