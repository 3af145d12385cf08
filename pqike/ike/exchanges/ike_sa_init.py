"""IKE_SA_INIT (RFC 7296 1.2): algorithms, the first key exchange, nonces, NAT detection.

    HDR, [N(COOKIE)], SAi1, KEi, Ni, [N(NATD_S), N(NATD_D)], [N(FRAG_SUP)], [N(INT_SUP)] -->
                <--  HDR, SAr1, KEr, Nr, [N(NATD_S), N(NATD_D)], [N(FRAG_SUP)], [N(INT_SUP)]

The ``minimal`` preset leaves out NAT detection; the ``strongswan`` preset adds the
announcements strongSwan 6 makes by default (REDIRECT_SUPPORTED, CHILDLESS_IKEV2_SUPPORTED,
MULTIPLE_AUTH_SUPPORTED, SIGNATURE_HASH_ALGORITHMS).

Errors here are answered without keeping state (RFC 7296 2.6): a COOKIE request,
INVALID_KE_PAYLOAD naming the method we want, INVALID_SYNTAX or NO_PROPOSAL_CHOSEN.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from ...constants import ADDKE_TYPES, ExchangeType, NotifyType, TransformType, name_of
from ...crypto.prf import get_prf
from ...errors import InvalidSyntax, NoProposalChosen, PeerError, ProtocolError
from ...proposal import NegotiatedSuite, check_selected, select_proposal
from ...wire.codec import encode_message
from ...wire.payloads import (
    IkeHeader,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
)
from ..context import Inbound
from ..events import KeyExchangeCompleted
from ..states import Ignore, Outcome
from . import authentication as authn
from . import intermediate
from .common import check_nonce, error_notify, first, notify

if TYPE_CHECKING:
    from ..sa import IkeSa

ZERO_SPI = b"\x00" * 8


def send_request(sa: IkeSa, now: float) -> None:
    """Queue the IKE_SA_INIT request (again, after a COOKIE or INVALID_KE_PAYLOAD)."""
    hs = sa.hs
    assert hs.kex is not None and hs.ke_method is not None
    payloads: list[Payload] = []
    if hs.cookie:
        # RFC 7296 2.6: the COOKIE notify comes first.
        payloads.append(NotifyPayload(NotifyType.COOKIE, hs.cookie))
    payloads += [
        SaPayload(sa.config.ike_proposals),
        KePayload(hs.ke_method, hs.kex.public_data()),
        NoncePayload(hs.nonce_i),
    ]
    if sa.config.preset != "minimal":
        # RFC 7296 2.23: NAT detection is optional; without it no NAT is ever found.
        payloads += sa.nat_notifies(ZERO_SPI)
    if sa.config.fragmentation:
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    payloads += _auth_notifies(sa, initiator=True)
    if sa.config.preset == "strongswan":
        # strongSwan announces it accepts redirection (RFC 5685 3) unless told not to;
        # an announcement only, pqike does not follow a REDIRECT.
        payloads.append(NotifyPayload(NotifyType.REDIRECT_SUPPORTED))
    if any(t.type in ADDKE_TYPES for p in sa.config.ike_proposals for t in p.transforms) or (
        _offers_ppk_int(sa)
    ):
        # RFC 9370 2.2.1 / RFC 9242 3.1: additional key exchanges need IKE_INTERMEDIATE,
        # and so does a PPK agreed there (RFC 9867 3).
        payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
    sa.gen.my_mid = 0  # a retried IKE_SA_INIT is still message 0
    hs.sa_init_request = sa.send_request(
        ExchangeType.IKE_SA_INIT, payloads, now=now, protected=False
    )
    first_round = _first_addke(sa)
    if first_round is not None:
        # While the response is on its way: the key pair of the first ADDKE round, for
        # the method we prefer (unused if the responder picks another).
        sa.defer(functools.partial(intermediate.prepare_round, sa, first_round))
    if "retransmit-changed-nonce" in sa.config.impairments:
        # RFC 7296 2.1 wants a retransmission to be the same bytes; this one is not.
        other = [
            NoncePayload(os.urandom(len(hs.nonce_i))) if isinstance(p, NoncePayload) else p
            for p in payloads
        ]
        header = IkeHeader(sa.gen.spi_i, ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, 0x08, 0)
        sa.emit_raw(encode_message(header, other))


def _first_addke(sa: IkeSa) -> int | None:
    """The method of our first proposal's first ADDKE1 transform, ``None`` when there is
    none or it is NONE (RFC 9370 2.2.1: an optional round)."""
    for proposal in sa.config.ike_proposals[:1]:
        for t in proposal.transforms:
            if t.type == TransformType.ADDKE1:
                return t.id or None
    return None


def _auth_notifies(sa: IkeSa, *, initiator: bool) -> list[Payload]:
    """SIGNATURE_HASH_ALGORITHMS (RFC 7427 4), SUPPORTED_AUTH_METHODS (RFC 9593 3.1: empty
    from the initiator, the responder's list in reply) and USE_PPK (RFC 8784 3).

    Hashes and methods only when we sign or accept signatures, so that a PSK-only
    IKE_SA_INIT keeps its size (the ``strongswan`` preset sends the hashes always, as
    strongSwan does); a responder answers only what the initiator sent.
    """
    hs = sa.hs
    out: list[Payload] = []
    if authn.uses_certificates(sa) or sa.config.preset == "strongswan":
        # strongSwan announces its hashes whatever the authentication method; a
        # responder only in reply to the initiator's list (RFC 7427 4).
        if initiator or hs.peer_hashes:
            out.append(authn.hash_notify())
    if authn.uses_certificates(sa):
        if initiator:
            out.append(NotifyPayload(NotifyType.SUPPORTED_AUTH_METHODS))
        elif hs.peer_announces_methods:
            data = authn.encode_auth_methods(authn.accepted_methods(sa))
            out.append(NotifyPayload(NotifyType.SUPPORTED_AUTH_METHODS, data))
    if _offers_ppk_int(sa) and (initiator or hs.ppk_int):
        # RFC 9867 3: USE_PPK_INT; a responder answers it or USE_PPK, never both.
        out.append(NotifyPayload(NotifyType.USE_PPK_INT))
    if sa.config.ppk and (initiator or hs.use_ppk):
        # RFC 8784 3 (an rfc9867 initiator offers it too, for an RFC 8784-only peer).
        out.append(NotifyPayload(NotifyType.USE_PPK))
    return out


def _offers_ppk_int(sa: IkeSa) -> bool:
    return bool(sa.config.ppk) and sa.config.ppk_mode == "rfc9867"


def _note_auth_notifies(sa: IkeSa, payloads: tuple[Payload, ...], *, initiator: bool) -> None:
    """What the peer's IKE_SA_INIT message says about authentication."""
    hs = sa.hs
    hashes = notify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if hashes is not None:
        hs.peer_hashes = authn.parse_hashes(hashes.data)
    methods = notify(payloads, NotifyType.SUPPORTED_AUTH_METHODS)
    if methods is not None:
        if initiator and methods.data:
            hs.peer_auth_methods = authn.decode_auth_methods(methods.data)
        elif not initiator:
            hs.peer_announces_methods = True
    if sa.config.ppk:
        # RFC 9867 3: USE_PPK_INT counts only with IKE_INTERMEDIATE support, and wins
        # over USE_PPK (a responder offered both answers USE_PPK_INT alone).
        hs.ppk_int = (
            _offers_ppk_int(sa)
            and notify(payloads, NotifyType.USE_PPK_INT) is not None
            and notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
        )
        hs.ppk_int_pending = hs.ppk_int
        hs.use_ppk = not hs.ppk_int and notify(payloads, NotifyType.USE_PPK) is not None
    if initiator:
        authn.note_certreqs(sa, payloads)


def start(sa: IkeSa, now: float) -> None:
    """The initiator's first step: a nonce, the first proposal's KE method, the request."""
    hs = sa.hs
    hs.nonce_i = os.urandom(sa.config.nonce_size)
    proposal = sa.config.ike_proposals[0]
    method = next((t.id for t in proposal.transforms if t.type == TransformType.KE), None)
    assert method is not None  # IkeSa.initiate checked it
    hs.ke_method = method
    hs.kex = sa.new_kex(method)
    send_request(sa, now)


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: select, answer and derive the first keys, or refuse statelessly."""
    payloads = msg.payloads
    hdr = msg.header
    hs = sa.hs
    sa.received(msg, now)
    if hdr.spi_r != ZERO_SPI:
        sa.drop(now, "IKE_SA_INIT request with a responder SPI", msg.udp_len)
        return Outcome.STATELESS
    sa.remote = msg.source
    sa.gen.spi_i = hdr.spi_i  # so even a refusal below is reported under the peer's SPI
    nonce = first(payloads, NoncePayload)
    if sa.config.require_cookie:
        # RFC 7296 2.6: no state until the initiator returns a cookie we made.
        jar = sa.cookie_jar
        nonce_i = nonce.data if nonce is not None else b""
        got = payloads[0] if payloads else None
        if not (
            isinstance(got, NotifyPayload)
            and got.notify_type == NotifyType.COOKIE
            and jar.verify(got.data, nonce_i=nonce_i, ip=msg.source[0], spi_i=hdr.spi_i, now=now)
        ):
            cookie = jar.make(nonce_i=nonce_i, ip=msg.source[0], spi_i=hdr.spi_i, now=now)
            sa.stateless_reply(hdr, [NotifyPayload(NotifyType.COOKIE, cookie)], now)
            return Outcome.STATELESS
    sa_payload = first(payloads, SaPayload)
    ke = first(payloads, KePayload)
    if sa_payload is None or ke is None or nonce is None:
        sa.stateless_reply(hdr, [NotifyPayload(NotifyType.INVALID_SYNTAX)], now)
        sa.bump("bad_requests")
        return Outcome.STATELESS
    selected = select_proposal(sa_payload.proposals, sa.config.ike_proposals, prefer_ke=ke.method)
    if "strip-addke" in sa.config.impairments:
        # A downgrade: answer as if no ADDKE transform had been offered (RFC 9370 2.2.1).
        kept = tuple(t for t in selected.transforms if t.type not in ADDKE_TYPES)
        selected = Proposal(selected.number, selected.protocol_id, kept, selected.spi)
    suite = NegotiatedSuite.from_proposal(selected)
    if suite.ke != ke.method:
        # RFC 7296 1.2: tell the initiator which method we selected.
        assert suite.ke is not None
        wanted = suite.ke.to_bytes(2, "big")
        sa.stateless_reply(hdr, [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, wanted)], now)
        sa.bump("invalid_ke_sent")
        return Outcome.STATELESS
    if suite.prf is None:
        raise NoProposalChosen("the selected IKE proposal has no PRF")
    check_nonce(nonce.data, get_prf(suite.prf).key_size, "Ni")
    peer_intermediate = notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
    if suite.rounds and not peer_intermediate:
        # RFC 9370 2.2.1: ADDKE without IKE_INTERMEDIATE support cannot work.
        raise NoProposalChosen(
            "additional key exchanges offered without INTERMEDIATE_EXCHANGE_SUPPORTED"
        )
    hs.nonce_i = nonce.data
    hs.nonce_r = os.urandom(sa.config.nonce_size)
    sa.peer_fragmentation = notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    sa.check_nat(payloads, ZERO_SPI, msg.source)
    _note_auth_notifies(sa, payloads, initiator=False)
    hs.ke_method = ke.method
    kex = sa.first_responder_kex(ke.method)
    try:
        # The KE data is checked now; the shared secret can wait for the keys.
        ke_data, finish = kex.respond_later(ke.data)
    except ProtocolError as exc:
        raise InvalidSyntax(f"bad KEi: {exc}", round=0) from exc
    sa.gen.spi_r = sa.reserved_spi  # the SPI goes on the wire with this response
    out: list[Payload] = [
        SaPayload((selected,)),
        KePayload(ke.method, ke_data),
        NoncePayload(hs.nonce_r),
    ]
    if sa.config.preset != "minimal":
        out += sa.nat_notifies(sa.gen.spi_r)
    # RFC 7296 3.7 (as strongSwan): our CERTREQ comes with the IKE_SA_INIT response.
    out += authn.certreq_payloads(sa)
    if sa.config.fragmentation and sa.peer_fragmentation:
        out.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    out += _auth_notifies(sa, initiator=False)
    if sa.config.preset == "strongswan":
        # strongSwan (childless = allow) accepts an IKE_AUTH without a Child SA (RFC
        # 6023 2); announced only, as pqike answers such a request without a Child SA.
        out.append(NotifyPayload(NotifyType.CHILDLESS_IKEV2_SUPPORTED))
    if peer_intermediate and (suite.rounds or hs.ppk_int):
        out.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
    if sa.config.preset == "strongswan":
        # strongSwan's responder announces RFC 4739 last.
        out.append(NotifyPayload(NotifyType.MULTIPLE_AUTH_SUPPORTED))
    hs.rounds.pending = suite.rounds
    hs.sa_init_request = msg.message.raw
    hs.sa_init_response = sa.send_response(
        ExchangeType.IKE_SA_INIT,
        out,
        message_id=0,
        now=now,
        protected=False,
        request_raw=msg.message.raw,
    )
    # The shared secret, SKEYSEED and SK_* once the response has left
    # (IkeSa.defer_first_keys).
    sa.defer_first_keys(suite, finish, now)
    hs.half_open_deadline = now + sa.config.half_open_timeout
    return Outcome.ROUNDS if suite.rounds or hs.ppk_int_pending else Outcome.AUTH


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: retry on COOKIE / INVALID_KE_PAYLOAD, else derive the first keys."""
    payloads = msg.payloads
    hdr = msg.header
    hs = sa.hs
    cookie = notify(payloads, NotifyType.COOKIE)
    if cookie is not None:
        sa.received(msg, now)
        hs.cookie = cookie.data
        sa.bump("cookies_received")
        send_request(sa, now)
        return Outcome.RETRY
    invalid_ke = notify(payloads, NotifyType.INVALID_KE_PAYLOAD)
    if invalid_ke is not None:
        sa.received(msg, now)
        data = invalid_ke.data
        wanted = int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
        offered = {
            t.id
            for p in sa.config.ike_proposals
            for t in p.transforms
            if t.type == TransformType.KE
        }
        if wanted not in offered or wanted == hs.ke_method:
            raise PeerError(
                NotifyType.INVALID_KE_PAYLOAD,
                f"responder asked for key exchange method {wanted}, which we did not offer",
            )
        # RFC 7296 1.2: retry with the method the responder asked for.
        sa.bump("invalid_ke_received")
        hs.ke_method = wanted
        hs.kex = sa.new_kex(wanted)
        send_request(sa, now)
        return Outcome.RETRY
    err = error_notify(payloads)
    if err is not None:
        sa.received(msg, now)
        name = name_of(NotifyType, err.notify_type)
        raise PeerError(err.notify_type, f"responder answered {name}")
    sa_payload = first(payloads, SaPayload)
    ke = first(payloads, KePayload)
    nonce = first(payloads, NoncePayload)
    if (
        sa_payload is None
        or ke is None
        or nonce is None
        or len(sa_payload.proposals) != 1
        or hdr.spi_r == ZERO_SPI
    ):
        raise Ignore("IKE_SA_INIT response without SA, KE and Nonce")
    try:
        suite = check_selected(sa.config.ike_proposals, sa_payload.proposals[0])
    except NoProposalChosen as exc:
        sa.received(msg, now)
        raise NoProposalChosen(f"responder chose badly: {exc}") from exc
    if ke.method != hs.ke_method or suite.ke != hs.ke_method:
        raise Ignore("KEr method differs from KEi's")
    sa.received(msg, now)
    if suite.prf is None:
        raise NoProposalChosen("the responder chose no PRF")
    check_nonce(nonce.data, get_prf(suite.prf).key_size, "Nr")
    sa.gen.spi_r = hdr.spi_r
    assert hs.kex is not None
    try:
        secret = hs.kex.complete(ke.data)
    except ProtocolError as exc:
        raise InvalidSyntax(f"bad KEr in IKE_SA_INIT: {exc}", round=0) from exc
    sa.emit(KeyExchangeCompleted(method=ke.method, round=0, shared_secret=secret))
    hs.nonce_r = nonce.data
    hs.sa_init_response = msg.message.raw
    sa.peer_fragmentation = notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    peer_intermediate = notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
    if suite.rounds and not peer_intermediate:
        raise NoProposalChosen(
            "responder chose additional key exchanges without IKE_INTERMEDIATE support"
        )
    sa.check_nat(payloads, sa.gen.spi_r, msg.source)
    _note_auth_notifies(sa, payloads, initiator=True)
    sa.float_to_nat_t()
    sa.install_first_keys(suite, secret)
    hs.rounds.pending = suite.rounds
    if "run-none-round" in sa.config.impairments:
        hs.rounds.pending = _with_none_rounds(sa, suite)
    return intermediate.send_next(sa, now)


def _with_none_rounds(sa: IkeSa, suite: NegotiatedSuite) -> tuple[tuple[int, int], ...]:
    """The rounds an impaired initiator runs: also one for each ADDKE type it offered a
    method for that the responder selected as NONE or left out (libreswan #2446)."""
    chosen = {n for n, _ in suite.rounds}
    extra = []
    for t in sa.config.ike_proposals[0].transforms:
        n = t.type - TransformType.ADDKE1 + 1
        if t.type in ADDKE_TYPES and t.id != 0 and n not in chosen:
            chosen.add(n)
            extra.append((n, t.id))
    return tuple(sorted((*suite.rounds, *extra)))
