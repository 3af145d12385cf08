"""The IKE SA state machine as data (h11 style): states and which message each expects.

``EXPECTED`` maps a state to the exchange type and direction it accepts. The handler
for a message is found in ``IkeSa`` by (state, exchange); anything else is dropped and
counted. Reading this table top to bottom is reading RFC 7296 1.2 with RFC 9242's
IKE_INTERMEDIATE exchanges in the middle.
"""

from __future__ import annotations

from enum import Enum, auto

from ..constants import ExchangeType


class IkeSaState(Enum):
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


S = IkeSaState
X = ExchangeType

EXPECTED: dict[IkeSaState, tuple[tuple[ExchangeType, bool], ...]] = {
    # state: ((exchange, is_response), ...) accepted in that state
    S.INITIAL: (),
    S.INITIATOR_EXPECT_SA_INIT_RESPONSE: ((X.IKE_SA_INIT, True),),
    S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE: ((X.IKE_INTERMEDIATE, True),),
    S.INITIATOR_EXPECT_AUTH_RESPONSE: ((X.IKE_AUTH, True),),
    S.RESPONDER_EXPECT_SA_INIT_REQUEST: ((X.IKE_SA_INIT, False),),
    # RFC 9242 3: IKE_AUTH follows once every negotiated round is done; the responder
    # checks the count before it accepts IKE_AUTH.
    S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST: ((X.IKE_INTERMEDIATE, False),),
    S.RESPONDER_EXPECT_AUTH_REQUEST: ((X.IKE_AUTH, False),),
    S.ESTABLISHED: ((X.INFORMATIONAL, False), (X.INFORMATIONAL, True)),
    S.DELETING: ((X.INFORMATIONAL, True), (X.INFORMATIONAL, False)),
    S.DELETED: (),
    S.FAILED: ((X.INFORMATIONAL, False),),
}

TERMINAL = frozenset({S.DELETED, S.FAILED})
