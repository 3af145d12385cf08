"""IKE_INTERMEDIATE (RFC 9242) carrying one additional key exchange each (RFC 9370 2.2.2).

    HDR, SK{KEi(n)}  -->
                <--  HDR, SK{KEr(n)}

After each round both sides update SKEYSEED from SK_d and the new shared secret; the
next message is protected with the new keys. Every message is folded into IntAuth with
the keys that protected it (RFC 9242 3.3.2), which IKE_AUTH then signs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...constants import ExchangeType
from ...crypto import auth as crypto_auth
from ...errors import InvalidSyntax, ProtocolError
from ..context import Inbound
from ..events import IntAuthComputed, KeyExchangeCompleted
from ..protection import ProtectedMessage, UnprotectedMessage
from ..states import Outcome
from . import ike_auth
from .common import answer_round, impaired_ke, joined_ke, ke_payloads, raise_peer_error

if TYPE_CHECKING:
    from ..sa import IkeSa


def send_next(sa: IkeSa, now: float) -> Outcome:
    """The initiator's next step: the next round's KEi, or IKE_AUTH when none is left."""
    rounds = sa.hs.rounds
    if rounds.finished:
        ike_auth.send_request(sa, now)
        return Outcome.AUTH
    _, method = rounds.current
    rounds.kex = sa.new_kex(method)
    sent, data = impaired_ke(sa.config.impairments, method, rounds.kex.public_data(), request=True)
    sa.send_request(ExchangeType.IKE_INTERMEDIATE, ke_payloads(sent, data), now=now)
    return Outcome.ROUNDS


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
            epoch=hs.intermediate_exchanges,
            sk_p=sk_p,
            previous=previous,
            a=octets[:split],
            p=octets[split:],
            value=value,
        )
    )


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: answer KEi(n) with KEr(n), then move to the new keys."""
    assert msg.plain is not None
    chain_int_auth(sa, msg.plain, initiator=True)
    rounds = sa.hs.rounds
    rnd, method = rounds.current
    data, secret = answer_round(sa, msg.payloads, rnd, method)
    sent, data = impaired_ke(sa.config.impairments, method, data, request=False)
    sa.send_response(
        ExchangeType.IKE_INTERMEDIATE,
        ke_payloads(sent, data),
        message_id=msg.header.message_id,
        now=now,
    )
    sa.emit(KeyExchangeCompleted(method=method, round=rnd, shared_secret=secret))
    # The response went out under the old keys; the next request uses the new ones.
    sa.update_first_keys(secret)
    rounds.done += 1
    return Outcome.AUTH if rounds.finished else Outcome.ROUNDS


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: finish round n with KEr(n), move to the new keys, go on."""
    assert msg.plain is not None
    rounds = sa.hs.rounds
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
    return send_next(sa, now)
