"""IKE_INTERMEDIATE (RFC 9242) carrying one additional key exchange each (RFC 9370 2.2.2),
and the PPK of RFC 9867 with the last one (or alone when there is none).

    HDR, SK{KEi(n), [N(PPK_IDENTITY_KEY)+]}  -->
                <--  HDR, SK{KEr(n), [N(PPK_IDENTITY)]}

After each round both sides update SKEYSEED from SK_d and the new shared secret; the
next message is protected with the new keys. In the exchange that carries the PPK the
PPK is mixed after that (``ppk_intermediate``, RFC 9867 3). Every message is folded into
IntAuth with the keys that protected it (RFC 9242 3.3.2), which IKE_AUTH then signs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ...constants import ExchangeType
from ...crypto import auth as crypto_auth
from ...errors import InvalidSyntax, ProtocolError
from ..context import Inbound
from ..events import IntAuthComputed, KeyExchangeCompleted
from ..protection import ProtectedMessage, UnprotectedMessage
from ..states import Outcome
from . import ike_auth
from . import ppk_intermediate as ppk
from .common import answer_round, impaired_ke, joined_ke, ke_payloads, raise_peer_error

if TYPE_CHECKING:
    from ..sa import IkeSa


def send_next(sa: IkeSa, now: float) -> Outcome:
    """The initiator's next step: the next round's KEi (with PPK_IDENTITY_KEY in the
    last), the PPK exchange alone, or IKE_AUTH when nothing is left."""
    rounds = sa.hs.rounds
    if rounds.finished and not sa.hs.ppk_int_pending:
        ike_auth.send_request(sa, now)
        return Outcome.AUTH
    payloads = []
    if not rounds.finished:
        _, method = rounds.current
        kex, sa.hs.next_kex = sa.hs.next_kex, None
        rounds.kex = kex if kex is not None and kex.method == method else sa.new_kex(method)
        public = rounds.kex.public_data()
        sent, data = impaired_ke(sa.config.impairments, method, public, request=True)
        payloads += ke_payloads(sent, data)
    if ppk.carries_ppk(sa):
        payloads += ppk.identity_key_notifies(sa)
    sa.send_request(ExchangeType.IKE_INTERMEDIATE, payloads, now=now)
    if rounds.done + 1 < len(rounds.pending):
        _, method = rounds.pending[rounds.done + 1]
        sa.defer(functools.partial(prepare_round, sa, method))
    return Outcome.ROUNDS


def prepare_round(sa: IkeSa, method: int) -> None:
    """The initiator, once a request has left: make the key pair of its next ADDKE
    round (of ``method``) while it waits for the response, which then needs only the
    round's key exchange to answer (``send_next``). A fresh key pair for each round,
    used once (draft-ietf-ipsecme-ikev2-mlkem 2.2)."""
    if sa.is_closed or sa.hs.next_kex is not None:
        return
    kex = sa.new_kex(method)
    kex.public_data()
    sa.hs.next_kex = kex


def chain_int_auth(sa: IkeSa, message: ProtectedMessage | UnprotectedMessage, *, initiator: bool):
    """RFC 9242 3.3.2: IntAuth_N = prf(SK_p, IntAuth_(N-1) | A | P), per direction, with
    the SK_p in force when the message was protected."""
    hs = sa.hs
    crypto = sa.gen.crypto
    assert crypto is not None
    if isinstance(message, UnprotectedMessage):
        header, unprotected = message.header_bytes, message.unprotected
    else:
        header, unprotected = message.header, message.unprotected
    octets = crypto_auth.int_auth_octets(
        header, unprotected, message.first_inner, message.plaintext
    )
    sk_p = crypto.keys.sk_pi if initiator else crypto.keys.sk_pr
    previous = hs.int_auth_i if initiator else hs.int_auth_r
    value = crypto_auth.int_auth(crypto.prf, sk_p, previous, octets)
    if initiator:
        hs.int_auth_i = value
    else:
        hs.int_auth_r = value
    # A ends with the 4-byte SK generic header; P (the inner payloads) follows it.
    split = len(octets) - len(message.plaintext)
    sa.emit(
        IntAuthComputed(
            spi_i=sa.gen.spi_i,
            spi_r=sa.gen.spi_r,
            message_id=int.from_bytes(octets[20:24], "big"),
            is_response=bool(octets[19] & 0x20),
            initiator=initiator,
            epoch=hs.epoch,
            sk_p=sk_p,
            previous=previous,
            a=octets[:split],
            p=octets[split:],
            value=value,
        )
    )


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: answer KEi(n) with KEr(n) and PPK_IDENTITY_KEY with the PPK it
    chose, then move to the new keys.

    Only the key exchange's answer comes before the response (its KEr is in it). The
    IntAuth of both messages is read only by IKE_AUTH (RFC 9242 3.3), and the new keys
    protect only the next message (RFC 9370 2.2.2: the response goes out under the old
    ones), so both are deferred until the response has left (``IkeSa.defer``), in the
    order they were made: request's IntAuth, response's IntAuth, key update, PPK.
    """
    assert msg.plain is not None
    sa.defer(functools.partial(chain_int_auth, sa, msg.plain, initiator=True))
    hs = sa.hs
    rounds = hs.rounds
    payloads = []
    completed = None
    if not rounds.finished:
        rnd, method = rounds.current
        data, secret = answer_round(sa, msg.payloads, rnd, method)
        sent, data = impaired_ke(sa.config.impairments, method, data, request=False)
        payloads += ke_payloads(sent, data)
        completed = (rnd, method, secret)
    with_ppk = ppk.carries_ppk(sa)
    chosen = ppk.choose(sa, msg.payloads) if with_ppk else None
    if chosen is not None:
        payloads.append(ppk.identity(chosen[0]))
    sa.send_response(
        ExchangeType.IKE_INTERMEDIATE,
        payloads,
        message_id=msg.header.message_id,
        now=now,
    )
    # The response went out under the old keys; the next request uses the new ones:
    # those of this round's key exchange, then with the PPK mixed in (RFC 9867 3).
    # The state moves now (it decides what comes next); the keys once it has left.
    if completed is not None:
        rounds.done += 1
        sa.defer(functools.partial(_next_keys, sa, *completed))
    else:
        hs.intermediate_exchanges += 1  # the PPK's own exchange, in IntAuth all the same
    if with_ppk:
        hs.ppk_int_pending = False
        if chosen is not None:
            sa.defer(functools.partial(sa.mix_ppk, *chosen))
    return Outcome.AUTH if rounds.finished and not hs.ppk_int_pending else Outcome.ROUNDS


def _next_keys(sa: IkeSa, rnd: int, method: int, secret: bytes) -> None:
    """The responder, once its answer to round ``rnd`` has left: report the round and
    move to its keys."""
    sa.emit(KeyExchangeCompleted(method=method, round=rnd, shared_secret=secret))
    sa.update_first_keys(secret, method)


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: finish round n with KEr(n), move to the new keys, mix the PPK the
    responder chose if this exchange carried ours, go on."""
    assert msg.plain is not None
    rounds = sa.hs.rounds
    with_ppk = ppk.carries_ppk(sa)
    if rounds.finished:
        # The exchange of RFC 9867 3 alone: PPK_IDENTITY_KEY, no key exchange.
        raise_peer_error(msg.payloads, "PPK exchange: ")
        chain_int_auth(sa, msg.plain, initiator=False)
        sa.hs.intermediate_exchanges += 1
        _finish_ppk(sa, msg)
        return send_next(sa, now)
    rnd, method = rounds.current
    raise_peer_error(msg.payloads, f"round {rnd}: ", round=rnd)
    chain_int_auth(sa, msg.plain, initiator=False)
    try:
        ke = joined_ke(msg.payloads)
    except InvalidSyntax:
        ke = None
    if ke is None or ke.method != method:
        raise InvalidSyntax(f"round {rnd}: KEr missing or of the wrong method", round=rnd)
    assert rounds.kex is not None
    try:
        secret = rounds.kex.complete(ke.data)
    except ProtocolError as exc:
        # draft-ietf-ipsecme-ikev2-mlkem 2.2: end the exchange, no IKE_AUTH.
        raise InvalidSyntax(f"round {rnd}: bad KEr: {exc}", round=rnd) from exc
    sa.emit(KeyExchangeCompleted(method=method, round=rnd, shared_secret=secret))
    sa.update_first_keys(secret)
    rounds.done += 1
    rounds.kex = None
    if with_ppk:
        _finish_ppk(sa, msg)
    return send_next(sa, now)


def _finish_ppk(sa: IkeSa, msg: Inbound) -> None:
    """The initiator: the PPK exchange is over; mix the PPK the responder named."""
    chosen = ppk.accepted(sa, msg.payloads)
    sa.hs.ppk_int_pending = False
    if chosen is not None:
        sa.mix_ppk(*chosen)
