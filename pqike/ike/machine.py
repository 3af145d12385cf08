"""The IKE SA state machine as one table (h11 style).

``TRANSITIONS`` maps (state, exchange, request or response) to the handler of that
message and to the state each of the handler's outcomes leads to. ``COMMANDS`` does the
same for what the application asks (``initiate``, ``delete``). ``IkeSa`` applies both
and nothing else writes its state, so reading this file top to bottom is reading the
protocol: RFC 7296 1.2 (IKE_SA_INIT, IKE_AUTH) with RFC 9242's IKE_INTERMEDIATE
exchanges in the middle, then the established SA's life (RFC 7296 1.3, 1.4: CREATE_CHILD_SA
with RFC 9370's IKE_FOLLOWUP_KE, INFORMATIONAL) until it is deleted or fails.

A handler either returns an ``Outcome`` or raises ``ProtocolError``; ``IkeSa`` turns the
error into the error Notify (for a request) and into the failure of the SA or of just
the exchange, as the transition's ``failure`` says. An established SA stays
ESTABLISHED while it creates, rekeys and deletes Child SAs and rekeys itself: those
exchanges keep their own context (``pqike.ike.context``), not a state of the SA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..constants import ExchangeType
from .exchanges import (
    create_child_sa,
    followup_ke,
    ike_auth,
    ike_sa_init,
    informational,
    intermediate,
)
from .states import TERMINAL, Command, Failure, IkeSaState, Outcome

if TYPE_CHECKING:
    from .context import Inbound
    from .sa import IkeSa


Handler = Callable[["IkeSa", "Inbound", float], Outcome]


@dataclass(frozen=True)
class Transition:
    """One row of the table: who handles the message and where each outcome leads."""

    handler: Handler
    next: dict[Outcome, IkeSaState]
    failure: Failure = Failure.IKE_SA


S = IkeSaState
X = ExchangeType
O = Outcome  # noqa: E741

REQUEST = False
RESPONSE = True

TRANSITIONS: dict[tuple[IkeSaState, int, bool], Transition] = {
    # --- the first handshake, initiator (RFC 7296 1.2, RFC 9242 3) ------------------
    (S.INITIATOR_EXPECT_SA_INIT_RESPONSE, X.IKE_SA_INIT, RESPONSE): Transition(
        ike_sa_init.on_response,
        {
            O.RETRY: S.INITIATOR_EXPECT_SA_INIT_RESPONSE,
            O.ROUNDS: S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE,
            O.AUTH: S.INITIATOR_EXPECT_AUTH_RESPONSE,
        },
    ),
    (S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE, X.IKE_INTERMEDIATE, RESPONSE): Transition(
        intermediate.on_response,
        {
            O.ROUNDS: S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE,
            O.AUTH: S.INITIATOR_EXPECT_AUTH_RESPONSE,
        },
    ),
    (S.INITIATOR_EXPECT_AUTH_RESPONSE, X.IKE_AUTH, RESPONSE): Transition(
        ike_auth.on_response, {O.DONE: S.ESTABLISHED}
    ),
    # --- the first handshake, responder --------------------------------------------
    (S.RESPONDER_EXPECT_SA_INIT_REQUEST, X.IKE_SA_INIT, REQUEST): Transition(
        ike_sa_init.on_request,
        {
            O.STATELESS: S.RESPONDER_EXPECT_SA_INIT_REQUEST,
            O.ROUNDS: S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST,
            O.AUTH: S.RESPONDER_EXPECT_AUTH_REQUEST,
        },
    ),
    (S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST, X.IKE_INTERMEDIATE, REQUEST): Transition(
        intermediate.on_request,
        {
            O.ROUNDS: S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST,
            O.AUTH: S.RESPONDER_EXPECT_AUTH_REQUEST,
        },
    ),
    (S.RESPONDER_EXPECT_AUTH_REQUEST, X.IKE_AUTH, REQUEST): Transition(
        ike_auth.on_request, {O.DONE: S.ESTABLISHED}
    ),
    # --- the established SA (RFC 7296 1.3, 1.4; RFC 9370 2.2.4) ----------------------
    (S.ESTABLISHED, X.CREATE_CHILD_SA, REQUEST): Transition(
        create_child_sa.on_request, {O.DONE: S.ESTABLISHED}, Failure.EXCHANGE
    ),
    (S.ESTABLISHED, X.CREATE_CHILD_SA, RESPONSE): Transition(
        create_child_sa.on_response, {O.DONE: S.ESTABLISHED}, Failure.EXCHANGE
    ),
    (S.ESTABLISHED, X.IKE_FOLLOWUP_KE, REQUEST): Transition(
        followup_ke.on_request, {O.DONE: S.ESTABLISHED}, Failure.EXCHANGE
    ),
    (S.ESTABLISHED, X.IKE_FOLLOWUP_KE, RESPONSE): Transition(
        followup_ke.on_response, {O.DONE: S.ESTABLISHED}, Failure.EXCHANGE
    ),
    (S.ESTABLISHED, X.INFORMATIONAL, REQUEST): Transition(
        informational.on_request,
        {O.DONE: S.ESTABLISHED, O.DELETED: S.DELETED, O.FAILED: S.FAILED},
        Failure.NOTHING,
    ),
    (S.ESTABLISHED, X.INFORMATIONAL, RESPONSE): Transition(
        informational.on_response, {O.DONE: S.ESTABLISHED}
    ),
    # --- deleting (RFC 7296 1.4.1, 2.25.2) -------------------------------------------
    (S.DELETING, X.INFORMATIONAL, RESPONSE): Transition(
        informational.on_response, {O.DONE: S.DELETING, O.DELETED: S.DELETED}
    ),
    (S.DELETING, X.INFORMATIONAL, REQUEST): Transition(
        informational.on_request,
        {O.DONE: S.DELETING, O.DELETED: S.DELETED, O.FAILED: S.DELETED},
        Failure.NOTHING,
    ),
    (S.DELETING, X.CREATE_CHILD_SA, REQUEST): Transition(
        create_child_sa.refuse_while_deleting, {O.DONE: S.DELETING}, Failure.NOTHING
    ),
    # --- after a failure: still answer the peer's INFORMATIONAL (its Delete) ---------
    (S.FAILED, X.INFORMATIONAL, REQUEST): Transition(
        informational.on_request,
        {O.DONE: S.FAILED, O.DELETED: S.FAILED, O.FAILED: S.FAILED},
        Failure.NOTHING,
    ),
}

COMMANDS: dict[tuple[IkeSaState, Command], IkeSaState] = {
    (S.INITIAL, Command.INITIATE): S.INITIATOR_EXPECT_SA_INIT_RESPONSE,
    (S.ESTABLISHED, Command.DELETE): S.DELETING,
    # Any SA that is not over yet can fail.
    **{(state, Command.FAIL): S.FAILED for state in IkeSaState if state not in TERMINAL},
}
