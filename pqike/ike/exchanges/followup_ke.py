"""IKE_FOLLOWUP_KE (RFC 9370 2.2.4): the additional key exchanges of a CREATE_CHILD_SA.

    HDR(IKE_FOLLOWUP_KE), SK{KEi(n), N(ADDITIONAL_KEY_EXCHANGE)(link n)}  -->
                     <--  HDR(IKE_FOLLOWUP_KE), SK{KEr(n), [N(ADDITIONAL_KEY_EXCHANGE)(link n+1)]}

Each request echoes the link data of the previous response; the response of the last
round carries none (libreswan's interop bug #2926 was sending it there). A round the
responder selected as NONE is not run at all (bug #2446). A responder that knows no
exchange by that link answers STATE_NOT_FOUND.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType
from ...errors import InvalidSyntax, ProtocolError, StateNotFound
from ...wire.payloads import NotifyPayload, Payload
from ..context import ChildExchange, Inbound
from ..events import KeyExchangeCompleted
from ..states import Outcome
from . import create_child_sa
from .common import answer_round, impaired_ke, joined_ke, ke_payloads, notify, raise_peer_error

if TYPE_CHECKING:
    from ..sa import IkeSa


def send_next(sa: IkeSa, ctx: ChildExchange, now: float) -> None:
    """The initiator's KEi of the next round, linked to the exchange it belongs to."""
    _, method = ctx.rounds.current
    ctx.rounds.kex = sa.new_kex(method)
    sent, data = impaired_ke(
        sa.config.impairments, method, ctx.rounds.kex.public_data(), request=True
    )
    payloads: list[Payload] = ke_payloads(sent, data)
    payloads.append(NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, ctx.link))
    sa.send_request(ExchangeType.IKE_FOLLOWUP_KE, payloads, now=now)


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: finish this round; send the next one or install the new SA."""
    ctx = sa.child_out
    assert ctx is not None and not ctx.rounds.finished
    rnd, method = ctx.rounds.current
    inner = msg.payloads
    raise_peer_error(inner, f"{ctx.purpose.value} round {rnd}: ", round=rnd)
    try:
        ke = joined_ke(inner)
    except InvalidSyntax:
        ke = None
    if ke is None or ke.method != method:
        raise InvalidSyntax(f"round {rnd}: KEr missing or of the wrong method", round=rnd)
    assert ctx.rounds.kex is not None
    try:
        secret = ctx.rounds.kex.complete(ke.data)
    except ProtocolError as exc:
        return create_child_sa.kem_failure(sa, ctx, f"bad KEr: {exc}", rnd, now)
    ctx.secrets.append(secret)
    sa.emit(
        KeyExchangeCompleted(method=method, round=rnd, shared_secret=secret, purpose=ctx.purpose)
    )
    ctx.rounds.done += 1
    ctx.rounds.kex = None
    if ctx.rounds.finished:
        create_child_sa.complete(sa, ctx, now)
        return Outcome.DONE
    link = notify(inner, NotifyType.ADDITIONAL_KEY_EXCHANGE)
    if link is None:
        raise InvalidSyntax(
            f"round {rnd}: more rounds follow but ADDITIONAL_KEY_EXCHANGE is missing", round=rnd
        )
    ctx.link = link.data
    send_next(sa, ctx, now)
    return Outcome.DONE


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: answer KEi(n) of the exchange the link names."""
    inner = msg.payloads
    link = notify(inner, NotifyType.ADDITIONAL_KEY_EXCHANGE)
    ctx = sa.child_in.pop(link.data, None) if link is not None else None
    if ctx is None:
        raise StateNotFound("IKE_FOLLOWUP_KE for no exchange we wait for")
    sa.child_in_current = ctx
    rnd, method = ctx.rounds.current
    data, secret = answer_round(sa, inner, rnd, method)
    ctx.secrets.append(secret)
    sa.emit(
        KeyExchangeCompleted(method=method, round=rnd, shared_secret=secret, purpose=ctx.purpose)
    )
    ctx.rounds.done += 1
    imp = sa.config.impairments
    out = ke_payloads(*impaired_ke(imp, method, data, request=False))
    if not ctx.rounds.finished:
        ctx.link = os.urandom(create_child_sa.LINK_SIZE)
        if "omit-addke-notify" not in imp:
            out.append(NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, ctx.link))
    elif "addke-notify-on-last" in imp:
        # libreswan #2926: RFC 9370 2.2.4 wants no notify after the last round.
        out.append(NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, os.urandom(8)))
    sa.send_response(ExchangeType.IKE_FOLLOWUP_KE, out, message_id=msg.header.message_id, now=now)
    sa.child_in_current = None
    if ctx.rounds.finished:
        create_child_sa.complete(sa, ctx, now)
    else:
        sa.child_in[ctx.link] = ctx
    return Outcome.DONE
