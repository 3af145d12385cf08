"""IKE_AUTH (RFC 7296 1.2, 2.15): identities, AUTH, and the first Child SA.

    HDR, SK{IDi, [CERT+], [CERTREQ], [IDr], AUTH, [N(PPK_IDENTITY), [N(NO_PPK_AUTH)]],
            [N(SUPPORTED_AUTH_METHODS)], [N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr}  -->
       <--  HDR, SK{IDr, [CERT+], AUTH, [N(PPK_IDENTITY)], [N(USE_TRANSPORT_MODE)],
                    SAr2, TSi, TSr}

AUTH signs the sender's IKE_SA_INIT message, the peer's nonce and prf(SK_p, ID), with
the IntAuth chain of any IKE_INTERMEDIATE exchanges appended (RFC 9242 3.3.2): a PSK MAC
or a signature with a certificate (``authentication``). With a PPK (RFC 8784 3) both
AUTH payloads use SK_p' and, once both sides authenticated, SK_d' replaces SK_d. A
refused Child SA does not fail the IKE SA: the response carries the error Notify instead
of SAr2 and the traffic selectors (RFC 7296 1.2). The ``strongswan`` preset adds the
notifies strongSwan 6 sends by default (``_strongswan_trailer``, INITIAL_CONTACT,
ESP_TFC_PADDING_NOT_SUPPORTED); the ``minimal`` preset leaves out the optional IDr.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType, ProtocolId, name_of
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
from ..ts import local_selectors, narrow, remote_selectors
from . import authentication as authn
from .common import error_notify, first, notify

if TYPE_CHECKING:
    from ..sa import IkeSa

PSK = authn.PSK


def _ppk_in_use(sa: IkeSa) -> bool:
    """RFC 8784 3: the initiator uses its PPK when both sent USE_PPK."""
    return bool(sa.config.ppk) and sa.hs.use_ppk


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
    if cfg.ppk_required and not sa.hs.use_ppk and sa.hs.ppk_int_used is None:
        # RFC 8784 3, RFC 9867 3: a mandatory PPK and a responder that answered neither
        # USE_PPK nor USE_PPK_INT: give up.
        wanted = "USE_PPK_INT or USE_PPK" if cfg.ppk_mode == "rfc9867" else "USE_PPK"
        raise AuthenticationFailed(f"a PPK is required but the responder did not send {wanted}")
    how = authn.choose_auth(sa)
    idi = IdiPayload(cfg.local_id.id_type, cfg.local_id.data)
    payloads: list[Payload] = [idi]
    if cfg.preset == "strongswan":
        # strongSwan's order: INITIAL_CONTACT right after IDi (RFC 7296 2.4: we hold
        # no other IKE SA with this peer).
        payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
    payloads += [*authn.cert_payloads(sa), *authn.certreq_payloads(sa)]
    if cfg.remote_id is not None and cfg.preset != "minimal":
        # RFC 7296 2.15: IDr in the request is optional (the responder may have several
        # identities); the minimal preset checks the responder's IDr without naming it.
        payloads.append(IdrPayload(cfg.remote_id.id_type, cfg.remote_id.data))
    plain = authn.current_keys(sa)
    use_ppk = _ppk_in_use(sa)
    keys = authn.mixed_keys(sa) if use_ppk else plain
    signed = authn.octets(sa, ours=True, id_body=idi.body, auth_mid=mid, keys=keys)
    payloads.append(AuthPayload(how.method, authn.auth_data(sa, how, signed)))
    if use_ppk:
        payloads.append(authn.ppk_identity(sa))
        if not cfg.ppk_required:
            # RFC 8784 3: the same AUTH with the original SK_pi, for a responder
            # that has no PPK for us.
            unmixed = authn.octets(sa, ours=True, id_body=idi.body, auth_mid=mid, keys=plain)
            payloads.append(
                NotifyPayload(NotifyType.NO_PPK_AUTH, authn.auth_data(sa, how, unmixed))
            )
    if sa.hs.peer_announces_methods and authn.uses_certificates(sa):
        # RFC 9593 3.1: the initiator's list goes in the IKE_AUTH request.
        payloads.append(
            NotifyPayload(
                NotifyType.SUPPORTED_AUTH_METHODS,
                authn.encode_auth_methods(authn.accepted_methods(sa)),
            )
        )
    if cfg.transport_mode:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    if cfg.preset == "strongswan":
        payloads.append(NotifyPayload(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
    payloads += [
        SaPayload(esp_proposals(sa, sa.first_child_spi)),
        TsiPayload(local_selectors(sa)),
        TsrPayload(remote_selectors(sa)),
    ]
    if cfg.preset == "strongswan":
        payloads += _strongswan_trailer(sa, initiator=True)
    sa.send_request(ExchangeType.IKE_AUTH, payloads, now=now)


def _strongswan_trailer(sa: IkeSa, *, initiator: bool) -> list[Payload]:
    """The notifies strongSwan 6 appends to IKE_AUTH with its defaults, in its order:
    MOBIKE_SUPPORTED and our other addresses (RFC 4555 3.4), then, from the initiator,
    MULTIPLE_AUTH_SUPPORTED (RFC 4739 3.1), EAP_ONLY_AUTHENTICATION (RFC 5998 4) and
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED (RFC 6311 4). Announcements only (``preset``)."""
    out: list[Payload] = [NotifyPayload(NotifyType.MOBIKE_SUPPORTED)]
    for address in sa.config.additional_addresses:
        ip = ipaddress.ip_address(address)
        kind = (
            NotifyType.ADDITIONAL_IP4_ADDRESS
            if ip.version == 4
            else NotifyType.ADDITIONAL_IP6_ADDRESS
        )
        out.append(NotifyPayload(kind, ip.packed))
    if initiator:
        out += [
            NotifyPayload(NotifyType.MULTIPLE_AUTH_SUPPORTED),
            NotifyPayload(NotifyType.EAP_ONLY_AUTHENTICATION),
            NotifyPayload(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED),
        ]
    return out


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: verify the initiator, answer with our AUTH and the Child SA."""
    mid = msg.header.message_id
    inner = msg.payloads
    cfg = sa.config
    if not sa.hs.rounds.finished:
        raise InvalidSyntax("IKE_AUTH before every additional key exchange")
    idi = first(inner, IdiPayload)
    auth = first(inner, AuthPayload)
    if idi is None or auth is None:
        raise InvalidSyntax("IKE_AUTH without IDi or AUTH")
    peer = Identity(idi.id_type, idi.data)
    remote_id = cfg.remote_id
    if remote_id is not None and peer != remote_id:
        raise AuthenticationFailed(f"peer identity {peer} is not the configured {remote_id}")
    authn.note_certreqs(sa, inner)
    methods = notify(inner, NotifyType.SUPPORTED_AUTH_METHODS)
    if methods is not None and methods.data:
        sa.hs.peer_auth_methods = authn.decode_auth_methods(methods.data)
    plain = authn.current_keys(sa)
    # RFC 8784 3: with the PPK the initiator names, AUTH is made with SK_pi'; without
    # it (and only if we do not require one) NO_PPK_AUTH holds AUTH with SK_pi.
    use_ppk = False
    auth_data = auth.data
    if cfg.ppk and sa.hs.use_ppk:
        their_id = authn.peer_ppk_id(notify(inner, NotifyType.PPK_IDENTITY))
        if their_id == cfg.ppk_id:
            use_ppk = True
        else:
            no_ppk = notify(inner, NotifyType.NO_PPK_AUTH)
            if cfg.ppk_required or no_ppk is None:
                named = "no PPK_IDENTITY" if their_id is None else f"PPK_ID {their_id!r}"
                raise AuthenticationFailed(f"a PPK is required and the initiator sent {named}")
            auth_data = no_ppk.data
    elif cfg.ppk_required and sa.hs.ppk_int_used is None:
        # With RFC 9867 the PPK was already mixed into these keys in IKE_INTERMEDIATE.
        wanted = "USE_PPK_INT or USE_PPK" if cfg.ppk_mode == "rfc9867" else "USE_PPK"
        raise AuthenticationFailed(f"a PPK is required but the initiator did not send {wanted}")
    keys = authn.mixed_keys(sa) if use_ppk else plain
    signed = authn.octets(sa, ours=False, id_body=idi.body, auth_mid=mid, keys=keys)
    authn.verify_peer(sa, inner, peer, auth.method, auth_data, signed, "initiator")
    how = authn.choose_auth(sa)
    idr = IdrPayload(cfg.local_id.id_type, cfg.local_id.data)
    ours = authn.octets(sa, ours=True, id_body=idr.body, auth_mid=mid, keys=keys)
    out: list[Payload] = [
        idr,
        *authn.cert_payloads(sa),
        AuthPayload(how.method, authn.auth_data(sa, how, ours)),
    ]
    if use_ppk:
        # RFC 8784 3: an empty PPK_IDENTITY tells the initiator the PPK was used.
        out.append(NotifyPayload(NotifyType.PPK_IDENTITY))
        sa.gen.crypto.keys = keys  # type: ignore[union-attr]
    child = None
    refused: ProtocolError | None = None
    try:
        child_payloads, child = _respond_child(sa, inner)
        out += child_payloads
    except ProtocolError as exc:
        assert exc.notify_type is not None
        out.append(NotifyPayload(exc.notify_type))
        refused = exc
    if cfg.preset == "strongswan":
        out += _strongswan_trailer(sa, initiator=False)
    sa.send_response(ExchangeType.IKE_AUTH, out, message_id=mid, now=now)
    sa.established(now, peer)
    if child is not None:
        sa.install_first_child(child, now)
    elif refused is not None:
        _child_failed(sa, refused.notify_type, f"refused the first Child SA: {refused}", now)
    return Outcome.DONE


def _child_failed(sa: IkeSa, notify_type: int | None, reason: str, now: float) -> None:
    sa.bump("child_sa_failed")
    sa.emit(
        CreateChildSaFailed(time=now, purpose=Purpose.IKE_AUTH, notify=notify_type, reason=reason)
    )


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
    ts_i = narrow(tsi.selectors, remote_selectors(sa))
    ts_r = narrow(tsr.selectors, local_selectors(sa))
    if not ts_i or not ts_r:
        raise TsUnacceptable("no traffic selectors in common")
    transport = (
        notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None and sa.config.transport_mode
    )
    mine = Proposal(selected.number, ProtocolId.ESP, selected.transforms, sa.first_child_spi)
    payloads: list[Payload] = []
    if transport:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    if sa.config.preset == "strongswan":
        payloads.append(NotifyPayload(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
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
    cfg = sa.config
    remote_id = cfg.remote_id
    try:
        if remote_id is not None and peer != remote_id:
            raise AuthenticationFailed(f"responder identity {peer} is not {remote_id}")
        # RFC 8784 3: an empty PPK_IDENTITY says the responder used our PPK; without it
        # the responder went on without (allowed only when the PPK is optional).
        used_ppk = _ppk_in_use(sa) and notify(inner, NotifyType.PPK_IDENTITY) is not None
        if _ppk_in_use(sa) and not used_ppk and cfg.ppk_required:
            raise AuthenticationFailed("a PPK is required but the responder did not use it")
        keys = authn.mixed_keys(sa) if used_ppk else authn.current_keys(sa)
        signed = authn.octets(sa, ours=False, id_body=idr.body, auth_mid=mid, keys=keys)
        authn.verify_peer(sa, inner, peer, auth.method, auth.data, signed, "responder")
    except AuthenticationFailed:
        # RFC 7296 2.21.2: tell the responder in a new INFORMATIONAL exchange.
        sa.send_request(
            ExchangeType.INFORMATIONAL, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)], now=now
        )
        raise
    if used_ppk:
        sa.gen.crypto.keys = keys  # type: ignore[union-attr]
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
