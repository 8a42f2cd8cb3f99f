"""Named errors of the transport layer and the reasons a message can be rejected."""

from enum import StrEnum


class RejectReason(StrEnum):
    """Why an inbound message was refused; each reason has its own counter."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    UNKNOWN_TYPE = "unknown_type"
    WRONG_VERSION = "wrong_version"
    INVALID_FIELD = "invalid_field"
    CHECKSUM = "checksum"
    UNEXPECTED = "unexpected"
    UNAUTHENTICATED = "unauthenticated"
    """A weight manifest without a valid MAC under the run's key, or a chunk that fails its signed digest."""
    WRONG_RUN = "wrong_run"
    """A correctly MACed weight manifest that names another run (a replay from an earlier run)."""


class TransportError(Exception):
    """Base of every error raised by rollspec.transport."""


class SchemaError(TransportError, ValueError):
    """A schema field holds a value of the wrong type, length or range."""

    def __init__(self, where: str, value: object, expected: str):
        # The message is formatted lazily: union fields raise and catch this while trying alternatives.
        super().__init__(where, expected)
        self.where = where
        self.value = value
        self.expected = expected

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{self.where}: got {shown} ({type(self.value).__name__}), expected {self.expected}"


class MessageRejected(TransportError):
    """An inbound message failed decoding or validation; the receiver counts it and carries on."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(f"message rejected ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail


class BackPressureTimeout(TransportError, TimeoutError):
    """A send waited longer than its timeout for credit: the consumers are not keeping up."""


class VersionError(TransportError, ValueError):
    """A weight version was not strictly newer than the last one published."""


class ChannelClosed(TransportError):
    """The endpoint is closed, or its I/O thread stopped on an unexpected error (the cause is chained)."""


class ConfigError(TransportError, ValueError):
    """A transport config value is out of its allowed range."""

    def __init__(self, field: str, value: object, expected: str):
        super().__init__(f"{field}={value!r}: expected {expected}")
