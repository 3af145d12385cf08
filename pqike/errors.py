"""Exceptions: peer faults (``ProtocolError``), API misuse and bad configuration.

A ``ProtocolError`` carries the Notify type it maps to (RFC 7296 3.10.1), so the core can
turn any fault found while parsing or processing a request into the right error Notify in
one place. Its message is one sentence; ``offset`` says where in the message it was found.
"""

from __future__ import annotations

from .constants import NotifyType


class IkeError(Exception):
    """Base of every exception pqike raises on purpose."""


class LocalProtocolError(IkeError):
    """The caller used the API wrongly (for example, initiating twice)."""


class ConfigurationError(IkeError, ValueError):
    """A configuration value, proposal string or spec field is wrong.

    ``field`` names the offending field so the message can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProtocolError(IkeError):
    """Something the peer sent is wrong.

    ``notify_type`` is the error Notify a responder answers with (``None`` when the RFC
    says to drop silently, e.g. a bad ICV). ``notify_data`` is that Notify's data.
    """

    notify_type: NotifyType | None = NotifyType.INVALID_SYNTAX

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        notify_data: bytes = b"",
        round: int | None = None,
    ) -> None:
        if offset is not None:
            message = f"at offset {offset}: {message}"
        super().__init__(message)
        self.offset = offset
        self.notify_data = notify_data
        self.round = round
        """The key exchange round (RFC 9370) the error happened in, if any."""


class InvalidSyntax(ProtocolError):
    """Malformed message or value (INVALID_SYNTAX, RFC 7296 3.10.1)."""

    notify_type = NotifyType.INVALID_SYNTAX


class TruncatedMessage(InvalidSyntax):
    """The data ends before a field or payload it announces."""


class UnsupportedCriticalPayload(ProtocolError):
    """A payload type we do not know had the critical bit set (RFC 7296 2.5)."""

    notify_type = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int, *, offset: int | None = None) -> None:
        super().__init__(
            f"unsupported critical payload type {payload_type}",
            offset=offset,
            notify_data=bytes([payload_type & 0xFF]),
        )
        self.payload_type = payload_type


class InvalidMajorVersion(ProtocolError):
    """Major version is not 2 (RFC 7296 2.5)."""

    notify_type = NotifyType.INVALID_MAJOR_VERSION


class NoProposalChosen(ProtocolError):
    notify_type = NotifyType.NO_PROPOSAL_CHOSEN


class InvalidKePayload(ProtocolError):
    """The KE payload's method is not the one selected; data is the wanted method."""

    notify_type = NotifyType.INVALID_KE_PAYLOAD

    def __init__(self, method: int, message: str | None = None) -> None:
        super().__init__(
            message or f"key exchange method {method} is required",
            notify_data=method.to_bytes(2, "big"),
        )
        self.method = method


class AuthenticationFailed(ProtocolError):
    notify_type = NotifyType.AUTHENTICATION_FAILED


class TsUnacceptable(ProtocolError):
    notify_type = NotifyType.TS_UNACCEPTABLE


class TemporaryFailure(ProtocolError):
    """The request collides with something under way; try later (RFC 7296 2.25)."""

    notify_type = NotifyType.TEMPORARY_FAILURE


class ChildSaNotFound(ProtocolError):
    """A rekey names a Child SA we do not have (RFC 7296 2.25.1)."""

    notify_type = NotifyType.CHILD_SA_NOT_FOUND


class StateNotFound(ProtocolError):
    """An IKE_FOLLOWUP_KE names no exchange we wait for (RFC 9370 2.2.4)."""

    notify_type = NotifyType.STATE_NOT_FOUND


class PeerError(ProtocolError):
    """The peer answered our request with an error Notify (RFC 7296 3.10.1)."""

    def __init__(self, notify_type: int, message: str, *, round: int | None = None) -> None:
        super().__init__(message, round=round)
        self.notify_type = notify_type  # type: ignore[assignment]


class IntegrityCheckFailed(ProtocolError):
    """The ICV of an SK or SKF payload did not verify: RFC 7296 2.21.2 says drop silently."""

    notify_type = None
