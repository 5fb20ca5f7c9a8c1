"""AMQP error conditions the SDK maps to its exception types."""

NOT_FOUND = "amqp:not-found"
UNAUTHORIZED = "amqp:unauthorized-access"
NOT_ALLOWED = "amqp:not-allowed"
DECODE_ERROR = "amqp:decode-error"
SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
INTERNAL = "amqp:internal-error"
MESSAGE_LOCK_LOST = "com.microsoft:message-lock-lost"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
SERVER_BUSY = "com.microsoft:server-busy"
TIMEOUT = "com.microsoft:timeout"
ARGUMENT_ERROR = "com.microsoft:argument-error"
INVALID_OPERATION = "com.microsoft:argument-error"
ENTITY_DISABLED = "com.microsoft:entity-disabled"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"


class ProtocolViolation(Exception):
    """The peer broke the protocol: the connection is closed with this condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
