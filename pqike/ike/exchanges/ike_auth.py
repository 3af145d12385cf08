"""IKE_AUTH (RFC 7296 1.2, 2.15): identities, AUTH, and the first Child SA.

    HDR, SK{IDi, [IDr], AUTH, [N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr}  -->
                                   <--  HDR, SK{IDr, AUTH, [N(USE_TRANSPORT_MODE)], SAr2, TSi, TSr}

AUTH signs the sender's IKE_SA_INIT message, the peer's nonce and prf(SK_p, ID), with
the IntAuth chain of any IKE_INTERMEDIATE exchanges appended (RFC 9242 3.3.2). A refused
Child SA does not fail the IKE SA: the response carries the error Notify instead of
SAr2 and the traffic selectors (RFC 7296 1.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...constants import AuthMethod, ExchangeType, NotifyType, ProtocolId, name_of
from ...crypto import auth as crypto_auth
from ...errors import (
    AuthenticationFailed,
    InvalidSyntax,
    NoProposalChosen,
    PeerError,
    ProtocolError,
    TsUnacceptable,
)
from ...proposal import check_selected, select_proposal, without_key_exchanges
from ...wire.payloads import (
    AuthPayload,
    IdiPayload,
    IdrPayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TsiPayload,
    TsrPayload,
)
from ..config import Identity
from ..context import Inbound, NewChild
from ..events import CreateChildSaFailed, Purpose
from ..states import Outcome
from ..ts import narrow
from .common import error_notify, first, notify

if TYPE_CHECKING:
    from ..sa import IkeSa

PSK = AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE


def _int_auth_tail(sa: IkeSa, auth_mid: int) -> bytes:
    hs = sa.hs
    if hs.intermediate_exchanges == 0:
        return b""
    # RFC 9242 3.3.2: IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH message ID.
    return hs.int_auth_i + hs.int_auth_r + auth_mid.to_bytes(4, "big")


def auth_value(sa: IkeSa, *, ours: bool, id_body: bytes, auth_mid: int) -> bytes:
    """The PSK AUTH value (RFC 7296 2.15) of our side (``ours``) or the peer's."""
    hs = sa.hs
    crypto = sa.gen.crypto
    assert crypto is not None
    i_side = sa.is_initiator == ours
    real = hs.sa_init_request if i_side else hs.sa_init_response
    nonce = hs.nonce_r if i_side else hs.nonce_i
    sk_p = crypto.keys.sk_pi if i_side else crypto.keys.sk_pr
    octets = crypto_auth.signed_octets(
        real, nonce, crypto.prf, sk_p, id_body, _int_auth_tail(sa, auth_mid)
    )
    return crypto_auth.psk_auth(crypto.prf, sa.config.psk, octets)


def esp_proposals(sa: IkeSa, spi: bytes) -> tuple[Proposal, ...]:
    """Our ESP proposals for the first Child SA, which has no key exchange of its own
    (RFC 7296 1.2; strongSwan drops KE and ADDKE there too)."""
    return tuple(
        Proposal(p.number, ProtocolId.ESP, p.transforms, spi)
        for p in map(without_key_exchanges, sa.config.esp_proposals)
    )


def send_request(sa: IkeSa, now: float) -> None:
    """The initiator's IKE_AUTH request."""
    cfg = sa.config
    mid = sa.gen.my_mid
    idi = IdiPayload(cfg.local_id.id_type, cfg.local_id.data)
    payloads: list[Payload] = [idi]
    if cfg.remote_id is not None:
        payloads.append(IdrPayload(cfg.remote_id.id_type, cfg.remote_id.data))
    payloads.append(AuthPayload(PSK, auth_value(sa, ours=True, id_body=idi.body, auth_mid=mid)))
    if cfg.transport_mode:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [
        SaPayload(esp_proposals(sa, sa.first_child_spi)),
        TsiPayload(cfg.local_ts),
        TsrPayload(cfg.remote_ts),
    ]
    sa.send_request(ExchangeType.IKE_AUTH, payloads, now=now)


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: verify the initiator, answer with our AUTH and the Child SA."""
    mid = msg.header.message_id
    inner = msg.payloads
    if not sa.hs.rounds.finished:
        raise InvalidSyntax("IKE_AUTH before every additional key exchange")
    idi = first(inner, IdiPayload)
    auth = first(inner, AuthPayload)
    if idi is None or auth is None:
        raise InvalidSyntax("IKE_AUTH without IDi or AUTH")
    peer = Identity(idi.id_type, idi.data)
    remote_id = sa.config.remote_id
    if remote_id is not None and peer != remote_id:
        raise AuthenticationFailed(f"peer identity {peer} is not the configured {remote_id}")
    expected = auth_value(sa, ours=False, id_body=idi.body, auth_mid=mid)
    if auth.method != PSK or auth.data != expected:
        raise AuthenticationFailed("the initiator's AUTH payload does not verify")
    idr = IdrPayload(sa.config.local_id.id_type, sa.config.local_id.data)
    out: list[Payload] = [
        idr,
        AuthPayload(PSK, auth_value(sa, ours=True, id_body=idr.body, auth_mid=mid)),
    ]
    child = None
    refused: ProtocolError | None = None
    try:
        child_payloads, child = _respond_child(sa, inner)
        out += child_payloads
    except ProtocolError as exc:
        assert exc.notify_type is not None
        out.append(NotifyPayload(exc.notify_type))
        refused = exc
    sa.send_response(ExchangeType.IKE_AUTH, out, message_id=mid, now=now)
    sa.established(now, peer)
    if child is not None:
        sa.install_first_child(child, now)
    elif refused is not None:
        _child_failed(sa, refused.notify_type, f"refused the first Child SA: {refused}", now)
    return Outcome.DONE


def _child_failed(sa: IkeSa, notify_type: int | None, reason: str, now: float) -> None:
    sa.bump("child_sa_failed")
    sa.emit(CreateChildSaFailed(now, Purpose.IKE_AUTH, notify_type, reason))


def _respond_child(sa: IkeSa, inner: tuple[Payload, ...]) -> tuple[list[Payload], NewChild]:
    sa_payload = first(inner, SaPayload)
    tsi = first(inner, TsiPayload)
    tsr = first(inner, TsrPayload)
    if sa_payload is None or tsi is None or tsr is None:
        raise InvalidSyntax("IKE_AUTH request without SA, TSi and TSr")
    # RFC 7296 1.2: the Child SA created in IKE_AUTH has no key exchange of its own.
    offered = tuple(map(without_key_exchanges, sa_payload.proposals))
    configured = tuple(map(without_key_exchanges, sa.config.esp_proposals))
    selected = select_proposal(offered, configured)
    if len(selected.spi) != 4:
        raise InvalidSyntax("ESP proposal without a 4-byte SPI")
    ts_i = narrow(tsi.selectors, sa.config.remote_ts)
    ts_r = narrow(tsr.selectors, sa.config.local_ts)
    if not ts_i or not ts_r:
        raise TsUnacceptable("no traffic selectors in common")
    transport = (
        notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None and sa.config.transport_mode
    )
    mine = Proposal(selected.number, ProtocolId.ESP, selected.transforms, sa.first_child_spi)
    payloads: list[Payload] = []
    if transport:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [SaPayload((mine,)), TsiPayload(ts_i), TsrPayload(ts_r)]
    return payloads, NewChild(
        selected, selected.spi, sa.first_child_spi, tuple(ts_i), tuple(ts_r), transport
    )


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: verify the responder; the IKE SA is up, then the Child SA."""
    mid = msg.header.message_id
    inner = msg.payloads
    idr = first(inner, IdrPayload)
    auth = first(inner, AuthPayload)
    if idr is None or auth is None:
        err = error_notify(inner)
        kind = err.notify_type if err is not None else NotifyType.INVALID_SYNTAX
        raise PeerError(kind, f"responder answered {name_of(NotifyType, kind)}")
    peer = Identity(idr.id_type, idr.data)
    expected = auth_value(sa, ours=False, id_body=idr.body, auth_mid=mid)
    remote_id = sa.config.remote_id
    bad_id = remote_id is not None and peer != remote_id
    if bad_id or auth.method != PSK or auth.data != expected:
        reason = (
            f"responder identity {peer} is not {remote_id}"
            if bad_id
            else "the responder's AUTH payload does not verify"
        )
        # RFC 7296 2.21.2: tell the responder in a new INFORMATIONAL exchange.
        sa.send_request(
            ExchangeType.INFORMATIONAL, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)], now=now
        )
        raise AuthenticationFailed(reason)
    sa.established(now, peer)
    err = error_notify(inner)
    sa_payload = first(inner, SaPayload)
    tsi = first(inner, TsiPayload)
    tsr = first(inner, TsrPayload)
    if sa_payload is None or tsi is None or tsr is None or len(sa_payload.proposals) != 1:
        if err is not None:
            name = name_of(NotifyType, err.notify_type)
            _child_failed(sa, err.notify_type, f"responder refused the Child SA: {name}", now)
        else:
            _child_failed(sa, None, "IKE_AUTH response without SA, TSi and TSr", now)
        return Outcome.DONE
    proposal = sa_payload.proposals[0]
    try:
        check_selected(esp_proposals(sa, sa.first_child_spi), proposal)
    except NoProposalChosen as exc:
        _child_failed(sa, NotifyType.NO_PROPOSAL_CHOSEN, f"responder chose badly: {exc}", now)
        return Outcome.DONE
    transport = notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None
    sa.install_first_child(
        NewChild(
            proposal,
            sa.first_child_spi,
            proposal.spi,
            tuple(tsi.selectors),
            tuple(tsr.selectors),
            transport,
        ),
        now,
    )
    return Outcome.DONE
