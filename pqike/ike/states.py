"""The states of an IKE SA and the words its state machine speaks (h11 style).

``pqike.ike.machine`` holds the transition table that uses them; the exchange modules
return an ``Outcome`` or raise ``Ignore`` (a message to drop) or a ``ProtocolError``.
"""

from __future__ import annotations

from enum import Enum, auto


class IkeSaState(Enum):
    """Where an IKE SA is in its life; named for what it waits for."""

    # Members are singletons that compare by identity, so the identity hash agrees with
    # equality; Enum's own hashes the name in Python, on every table look-up.
    __hash__ = object.__hash__

    INITIAL = auto()
    INITIATOR_EXPECT_SA_INIT_RESPONSE = auto()
    INITIATOR_EXPECT_INTERMEDIATE_RESPONSE = auto()
    INITIATOR_EXPECT_AUTH_RESPONSE = auto()
    RESPONDER_EXPECT_SA_INIT_REQUEST = auto()
    RESPONDER_EXPECT_INTERMEDIATE_REQUEST = auto()
    RESPONDER_EXPECT_AUTH_REQUEST = auto()
    ESTABLISHED = auto()
    DELETING = auto()
    DELETED = auto()
    FAILED = auto()


class Outcome(Enum):
    """What a handler reports; the table turns it into the next state."""

    __hash__ = object.__hash__  # see IkeSaState

    DONE = auto()
    """The step finished as planned."""
    ROUNDS = auto()
    """Another IKE_INTERMEDIATE round follows (RFC 9370 2.2.2)."""
    AUTH = auto()
    """Every round is done: IKE_AUTH is next."""
    RETRY = auto()
    """IKE_SA_INIT goes out again, with a COOKIE or another KE method (RFC 7296 1.2, 2.6)."""
    STATELESS = auto()
    """An IKE_SA_INIT request was answered without keeping state (RFC 7296 2.6)."""
    DELETED = auto()
    """The IKE SA is gone (its Delete was sent or answered)."""
    FAILED = auto()
    """The peer told us the SA failed (an error Notify in an INFORMATIONAL request)."""


class Command(Enum):
    """What the application asks of an ``IkeSa``."""

    __hash__ = object.__hash__  # see IkeSaState

    INITIATE = auto()
    DELETE = auto()
    FAIL = auto()
    """Any local end: a retransmission time-out, the half-open timer, a dead peer."""


class Failure(Enum):
    """What a ``ProtocolError`` from the handler ends (aioquic's error-to-close path)."""

    IKE_SA = auto()
    EXCHANGE = auto()
    """Only the CREATE_CHILD_SA or IKE_FOLLOWUP_KE exchange: the IKE SA stays."""
    NOTHING = auto()
    """Nothing: the error Notify answers the request and the SA goes on."""


class Ignore(Exception):
    """Raised by a handler for a message that is not acceptable here: it is dropped and
    counted, and whatever we wait for is still awaited (RFC 7296 2.21: an unprotected or
    malformed response must not end the SA)."""


S = IkeSaState

TERMINAL = frozenset({S.DELETED, S.FAILED})

HANDSHAKE_STATES = frozenset(
    {
        S.INITIATOR_EXPECT_SA_INIT_RESPONSE,
        S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE,
        S.INITIATOR_EXPECT_AUTH_RESPONSE,
        S.RESPONDER_EXPECT_SA_INIT_REQUEST,
        S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST,
        S.RESPONDER_EXPECT_AUTH_REQUEST,
    }
)
"""States before IKE_AUTH completed: the half-open timer runs, and CREATE_CHILD_SA is
refused (strongSwan 6.1.0 fixed a Child SA created on an unauthenticated IKE SA)."""
