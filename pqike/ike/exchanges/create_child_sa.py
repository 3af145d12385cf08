"""CREATE_CHILD_SA (RFC 7296 1.3): a new Child SA, a Child SA rekey, an IKE SA rekey.

    HDR, SK{[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], [TSi, TSr]}  -->
              <--  HDR, SK{[N(USE_TRANSPORT_MODE)], SA, Nr, [KEr], [N(ADDITIONAL_KEY_EXCHANGE)],
                           [TSi, TSr]}

With additional key exchanges in the proposal (RFC 9370 2.2.4) the response names the
first IKE_FOLLOWUP_KE exchange (``pqike.ike.exchanges.followup_ke``) and the keys are
derived only after the last one, from every shared secret in round order:

    Child SA:  KEYMAT   = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    IKE SA:    SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))

Ni and Nr are this exchange's nonces, the SPIs of a rekeyed IKE SA the new ones (never
the old SA's, libreswan's interop bug #2958). A failure here fails the exchange, not
the IKE SA; two peers that rekey the same SA at once keep the SA created with the
higher of the four nonces (RFC 7296 2.8.1, 2.8.2), as strongSwan does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...constants import (
    ExchangeType,
    KeyExchangeMethod,
    NotifyType,
    ProtocolId,
    TransformType,
    name_of,
)
from ...crypto.keys import rekeyed_ike_keys
from ...crypto.prf import get_prf
from ...crypto.protect import get_cipher
from ...errors import (
    ChildSaNotFound,
    InvalidKePayload,
    InvalidSyntax,
    PeerError,
    ProtocolError,
    TemporaryFailure,
    TsUnacceptable,
)
from ...proposal import NegotiatedSuite, check_selected, select_proposal
from ...wire.payloads import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TsiPayload,
    TsrPayload,
)
from ..child import ChildSa, ChildState
from ..context import ChildExchange, Inbound, NewChild
from ..events import IkeKeysDerived, IkeSaRekeyed, KeyExchangeCompleted, Purpose
from ..generation import Crypto
from ..states import Outcome
from ..ts import local_selectors, narrow, remote_selectors
from . import followup_ke
from .common import check_nonce, error_notify, first, joined_ke, notify

if TYPE_CHECKING:
    from ..sa import IkeSa

LINK_SIZE = 8
"""Bytes of ADDITIONAL_KEY_EXCHANGE data we send: RFC 9370 2.2.4 leaves it opaque."""

RETRY_AFTER_TEMPORARY_FAILURE = 2.0
"""Seconds before a refused rekey is tried again (RFC 7296 2.25: the peer was busy)."""

IKE_SPI_SIZE = 8
ESP_SPI_SIZE = 4


def _spi_size(protocol: int) -> int:
    return IKE_SPI_SIZE if protocol == ProtocolId.IKE else ESP_SPI_SIZE


def _prf_key_size(sa: IkeSa, suite: NegotiatedSuite) -> int:
    """The PRF that nonce length is judged by (RFC 7296 2.10): the new IKE SA's for an
    IKE rekey, the IKE SA's own for a Child SA."""
    if suite.prf is not None:
        return get_prf(suite.prf).key_size
    assert sa.gen.crypto is not None
    return sa.gen.crypto.prf.key_size


def _first_ke(proposal: Proposal) -> int | None:
    method = next((t.id for t in proposal.transforms if t.type == TransformType.KE), None)
    return None if method in (None, KeyExchangeMethod.NONE) else method


# --------------------------------------------------------------------------- initiator


def start(
    sa: IkeSa,
    purpose: Purpose,
    now: float,
    *,
    rekeyed: ChildSa | None = None,
    ke_method: int | None = None,
) -> ChildExchange:
    """Send our CREATE_CHILD_SA request for ``purpose`` and remember its context."""
    cfg = sa.config
    ctx = ChildExchange(purpose, initiated=True, started=now)
    ctx.nonce_i = os.urandom(cfg.nonce_size)
    payloads: list[Payload] = []
    if purpose is Purpose.REKEY_IKE:
        ctx.spi = sa.new_ike_spi()
        ctx.proposals = tuple(
            Proposal(p.number, ProtocolId.IKE, p.transforms, ctx.spi) for p in cfg.ike_proposals
        )
        current = sa.gen.crypto.suite.ke if sa.gen.crypto is not None else None
        offered = {
            t.id for p in cfg.ike_proposals for t in p.transforms if t.type == TransformType.KE
        }
        # Like strongSwan, offer the method in use first: it saves an INVALID_KE_PAYLOAD.
        default = current if current in offered else _first_ke(ctx.proposals[0])
    else:
        ctx.spi = os.urandom(ESP_SPI_SIZE)
        ctx.proposals = tuple(
            Proposal(p.number, ProtocolId.ESP, p.transforms, ctx.spi) for p in cfg.esp_proposals
        )
        default = _first_ke(ctx.proposals[0])
    method = ke_method or default
    if rekeyed is not None:
        # RFC 7296 1.3.3: REKEY_SA names the SA by the SPI we receive it on.
        payloads.append(
            NotifyPayload(NotifyType.REKEY_SA, protocol_id=ProtocolId.ESP, spi=rekeyed.spi_in)
        )
        ctx.rekeyed_spi = rekeyed.spi_in
        rekeyed.state = ChildState.REKEYING
    if purpose is not Purpose.REKEY_IKE and cfg.transport_mode:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += [SaPayload(ctx.proposals), NoncePayload(ctx.nonce_i)]
    if method is not None:
        ctx.ke_method = method
        ctx.kex = sa.new_kex(method)
        payloads.append(KePayload(method, ctx.kex.public_data()))
    if purpose is not Purpose.REKEY_IKE:
        local_ts = rekeyed.ts_local if rekeyed is not None else local_selectors(sa)
        remote_ts = rekeyed.ts_remote if rekeyed is not None else remote_selectors(sa)
        payloads += [TsiPayload(tuple(local_ts)), TsrPayload(tuple(remote_ts))]
    ctx.message_id = sa.gen.my_mid
    sa.child_out = ctx
    sa.send_request(ExchangeType.CREATE_CHILD_SA, payloads, now=now)
    return ctx


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The initiator: check the answer, then run the ADDKE rounds or finish."""
    ctx = sa.child_out
    assert ctx is not None
    inner = msg.payloads
    err = error_notify(inner)
    if err is not None:
        return _refused(sa, ctx, err, now)
    sa_payload = first(inner, SaPayload)
    nonce = first(inner, NoncePayload)
    if sa_payload is None or nonce is None or len(sa_payload.proposals) != 1:
        raise InvalidSyntax("CREATE_CHILD_SA response without one SA proposal and a Nonce")
    selected = sa_payload.proposals[0]
    suite = check_selected(ctx.proposals, selected)
    if len(selected.spi) != _spi_size(selected.protocol_id):
        raise InvalidSyntax(f"the responder's SPI has {len(selected.spi)} bytes")
    check_nonce(nonce.data, _prf_key_size(sa, suite), "Nr")
    ctx.nonce_r = nonce.data
    ctx.peer_spi = selected.spi
    ctx.suite = suite
    ctx.selected = selected
    if suite.ke is not None:
        ke = first(inner, KePayload)
        if ke is None or ke.method != suite.ke or suite.ke != ctx.ke_method:
            raise InvalidSyntax("KEr missing or of another method than KEi")
        assert ctx.kex is not None
        try:
            secret = ctx.kex.complete(ke.data)
        except ProtocolError as exc:
            return kem_failure(sa, ctx, f"bad KEr: {exc}", 0, now)
        ctx.secrets.append(secret)
        sa.emit(
            KeyExchangeCompleted(
                method=ke.method, round=0, shared_secret=secret, purpose=ctx.purpose
            )
        )
    if ctx.purpose is not Purpose.REKEY_IKE:
        tsi = first(inner, TsiPayload)
        tsr = first(inner, TsrPayload)
        if tsi is None or tsr is None:
            raise InvalidSyntax("CREATE_CHILD_SA response without TSi and TSr")
        ctx.ts_i, ctx.ts_r = tuple(tsi.selectors), tuple(tsr.selectors)
        ctx.transport = notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None
    ctx.rounds.pending = suite.rounds
    if suite.rounds:
        link = notify(inner, NotifyType.ADDITIONAL_KEY_EXCHANGE)
        if link is None:
            raise InvalidSyntax("ADDKE rounds were selected but ADDITIONAL_KEY_EXCHANGE is missing")
        ctx.link = link.data
        if ctx.purpose is not Purpose.NEW_CHILD and sa.settle_multi_ke_collision(ctx, now):
            return Outcome.DONE  # we lost a rekey collision: no IKE_FOLLOWUP_KE of ours
        followup_ke.send_next(sa, ctx, now)
        return Outcome.DONE
    complete(sa, ctx, now)
    return Outcome.DONE


def _refused(sa: IkeSa, ctx: ChildExchange, err: NotifyPayload, now: float) -> Outcome:
    kind = err.notify_type
    if kind == NotifyType.INVALID_KE_PAYLOAD and not ctx.retried_ke and len(err.data) >= 2:
        wanted = int.from_bytes(err.data[:2], "big")
        offered = {
            t.id
            for p in ctx.proposals
            for t in p.transforms
            if t.type == TransformType.KE and t.id != KeyExchangeMethod.NONE
        }
        if wanted in offered and wanted != ctx.ke_method:
            # RFC 7296 1.3: retry with the method the responder asked for.
            sa.bump("invalid_ke_received")
            sa.abandon(ctx)
            rekeyed = sa.children.get(ctx.rekeyed_spi) if ctx.rekeyed_spi else None
            retry = start(sa, ctx.purpose, now, rekeyed=rekeyed, ke_method=wanted)
            retry.retried_ke = True
            return Outcome.DONE
    if kind == NotifyType.TEMPORARY_FAILURE:
        # RFC 7296 2.25: the peer is busy (a collision); try again shortly.
        sa.retry_later(ctx, now + RETRY_AFTER_TEMPORARY_FAILURE)
    raise PeerError(kind, f"{ctx.purpose.value}: responder answered {name_of(NotifyType, kind)}")


def kem_failure(sa: IkeSa, ctx: ChildExchange, reason: str, rnd: int, now: float) -> Outcome:
    """draft-ietf-ipsecme-ikev2-mlkem 2.2: a KEr that fails its check during
    CREATE_CHILD_SA or IKE_FOLLOWUP_KE ends the exchange and the IKE SA is deleted."""
    sa.exchange_failed(ctx, NotifyType.INVALID_SYNTAX, f"round {rnd}: {reason}", rnd, now)
    sa.delete(now=now)
    return Outcome.DONE


# --------------------------------------------------------------------------- responder


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """The responder: select, answer, and finish or wait for the IKE_FOLLOWUP_KE rounds."""
    inner = msg.payloads
    cfg = sa.config
    sa_payload = first(inner, SaPayload)
    rekey = notify(inner, NotifyType.REKEY_SA)
    if sa_payload is not None and any(
        p.protocol_id == ProtocolId.IKE for p in sa_payload.proposals
    ):
        purpose = Purpose.REKEY_IKE
    else:
        purpose = Purpose.REKEY_CHILD if rekey is not None else Purpose.NEW_CHILD
    ctx = ChildExchange(purpose, initiated=False, started=now, message_id=msg.header.message_id)
    sa.child_in_current = ctx
    nonce = first(inner, NoncePayload)
    if sa_payload is None or nonce is None:
        raise InvalidSyntax("CREATE_CHILD_SA request without SA and Nonce")
    ctx.nonce_i = nonce.data
    ours = sa.child_out
    old: ChildSa | None = None
    # Our rekey of the same SA is past its CREATE_CHILD_SA and into IKE_FOLLOWUP_KE: the
    # collision was settled when we read our response, so this one is refused (RFC 9370
    # 2.2.4; strongSwan answers TEMPORARY_FAILURE here too).
    in_rounds = ours is not None and ours.selected is not None and bool(ours.rounds.pending)
    if purpose is Purpose.REKEY_IKE:
        if (ours is not None and ours.purpose is not Purpose.REKEY_IKE) or sa.child_in:
            # RFC 7296 2.25.2: the IKE SA cannot move while a Child SA is being made.
            raise TemporaryFailure("a CREATE_CHILD_SA exchange is under way")
        if in_rounds:
            raise TemporaryFailure("our own IKE SA rekey is in its IKE_FOLLOWUP_KE rounds")
        configured = cfg.ike_proposals
    else:
        if ours is not None and ours.purpose is Purpose.REKEY_IKE:
            raise TemporaryFailure("the IKE SA is being rekeyed")
        configured = cfg.esp_proposals
    if purpose is Purpose.REKEY_CHILD:
        assert rekey is not None
        old = sa.child_by_outbound_spi(rekey.spi)
        if old is None:
            raise ChildSaNotFound(f"no Child SA with SPI {rekey.spi.hex()} to rekey")
        if old.state in (ChildState.DELETING, ChildState.REKEYED):
            # RFC 7296 2.25.1: a Child SA being closed is not rekeyed.
            raise TemporaryFailure(f"the Child SA {old.spi_in.hex()} is being deleted")
        if in_rounds and ours is not None and ours.rekeyed_spi == old.spi_in:
            raise TemporaryFailure(f"our rekey of {old.spi_in.hex()} is in IKE_FOLLOWUP_KE")
        ctx.rekeyed_spi = old.spi_in
    ke = joined_ke(inner)
    selected = select_proposal(
        sa_payload.proposals, configured, prefer_ke=ke.method if ke is not None else None
    )
    suite = NegotiatedSuite.from_proposal(selected)
    if len(selected.spi) != _spi_size(selected.protocol_id):
        raise InvalidSyntax(f"the initiator's SPI has {len(selected.spi)} bytes")
    check_nonce(nonce.data, _prf_key_size(sa, suite), "Ni")
    if purpose is Purpose.REKEY_IKE and suite.ke is None:
        raise InvalidSyntax("an IKE SA rekey without a key exchange")
    ke_data = b""
    if suite.ke is not None:
        if ke is None or ke.method != suite.ke:
            # RFC 7296 1.3: name the method we want; the initiator retries with it.
            raise InvalidKePayload(suite.ke)
        try:
            ke_data, secret = sa.new_kex(suite.ke).respond(ke.data)
        except ProtocolError as exc:
            raise InvalidSyntax(f"bad KEi: {exc}", round=0) from exc
        ctx.secrets.append(secret)
        sa.emit(
            KeyExchangeCompleted(method=suite.ke, round=0, shared_secret=secret, purpose=purpose)
        )
    ctx.nonce_r = os.urandom(cfg.nonce_size)
    out: list[Payload] = []
    if purpose is not Purpose.REKEY_IKE:
        tsi = first(inner, TsiPayload)
        tsr = first(inner, TsrPayload)
        if tsi is None or tsr is None:
            raise InvalidSyntax("CREATE_CHILD_SA request for a Child SA without TSi and TSr")
        ts_i = narrow(tsi.selectors, remote_selectors(sa))
        ts_r = narrow(tsr.selectors, local_selectors(sa))
        if not ts_i or not ts_r:
            raise TsUnacceptable("no traffic selectors in common")
        ctx.ts_i, ctx.ts_r = tuple(ts_i), tuple(ts_r)
        ctx.transport = (
            notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None and cfg.transport_mode
        )
        if ctx.transport:
            out.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    ctx.spi = sa.new_ike_spi() if purpose is Purpose.REKEY_IKE else os.urandom(ESP_SPI_SIZE)
    ctx.peer_spi = selected.spi
    mine = Proposal(selected.number, selected.protocol_id, selected.transforms, ctx.spi)
    ctx.suite, ctx.selected = suite, mine
    ctx.rounds.pending = suite.rounds
    out += [SaPayload((mine,)), NoncePayload(ctx.nonce_r)]
    if suite.ke is not None:
        out.append(KePayload(suite.ke, ke_data))
    if suite.rounds:
        ctx.link = os.urandom(LINK_SIZE)
        if "omit-addke-notify" not in cfg.impairments:
            out.append(NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, ctx.link))
    if purpose is not Purpose.REKEY_IKE:
        out += [TsiPayload(ctx.ts_i), TsrPayload(ctx.ts_r)]
    if old is not None and old.state is ChildState.REKEYING:
        # RFC 7296 2.8.1: we rekey this Child SA too; the nonces decide who keeps what.
        old.collision_nonce = ctx.lowest_nonce
        sa.bump("child_rekey_collisions")
    sa.send_response(ExchangeType.CREATE_CHILD_SA, out, message_id=msg.header.message_id, now=now)
    sa.child_in_current = None
    if suite.rounds:
        sa.child_in[ctx.link] = ctx
    else:
        complete(sa, ctx, now)
    return Outcome.DONE


def refuse_while_deleting(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """RFC 7296 2.25.2: no new or rekeyed SA on an IKE SA we are deleting."""
    raise TemporaryFailure("the IKE SA is being deleted")


# --------------------------------------------------------------------------- both sides


def complete(sa: IkeSa, ctx: ChildExchange, now: float) -> None:
    """Every round is done: derive the keys and install the new SA (RFC 9370 2.2.4)."""
    if ctx.initiated:
        sa.child_out = None
    if ctx.purpose is Purpose.REKEY_IKE:
        _finish_ike_rekey(sa, ctx, now)
        return
    assert ctx.suite is not None and ctx.selected is not None
    with_ke = ctx.suite.ke is not None
    shared = ctx.secrets[0] if with_ke else b""
    additional = ctx.secrets[1:] if with_ke else ctx.secrets
    spi_i, spi_r = (ctx.spi, ctx.peer_spi) if ctx.initiated else (ctx.peer_spi, ctx.spi)
    proposal = ctx.selected
    new = NewChild(proposal, spi_i, spi_r, ctx.ts_i, ctx.ts_r, ctx.transport)
    child = sa.install_child(
        new,
        initiated=ctx.initiated,
        purpose=ctx.purpose,
        nonce_i=ctx.nonce_i,
        nonce_r=ctx.nonce_r,
        shared_secret=shared,
        additional_secrets=tuple(additional),
        rekeyed_spi=ctx.rekeyed_spi,
        now=now,
    )
    if ctx.rekeyed_spi is None:
        return
    old = sa.children.get(ctx.rekeyed_spi)
    if old is None:
        return
    if not ctx.initiated:
        if old.state is ChildState.INSTALLED:
            old.state = ChildState.REKEYED  # the initiator deletes it (RFC 7296 2.8)
        return
    if old.collision_nonce is not None and ctx.lowest_nonce < old.collision_nonce:
        # RFC 7296 2.8.1: the SA made with the lowest nonce is deleted by its creator;
        # the peer, whose rekey won, deletes the old one.
        old.state = ChildState.REKEYED
        sa.delete_child_later(child.spi_in, "redundant after a rekey collision", now)
        return
    old.state = ChildState.REKEYED
    sa.delete_child_later(old.spi_in, "rekeyed", now)


def _finish_ike_rekey(sa: IkeSa, ctx: ChildExchange, now: float) -> None:
    old = sa.gen.crypto
    suite = ctx.suite
    assert old is not None and suite is not None and suite.prf is not None and ctx.secrets
    prf = get_prf(suite.prf)
    cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
    spi_i, spi_r = (ctx.spi, ctx.peer_spi) if ctx.initiated else (ctx.peer_spi, ctx.spi)
    # RFC 7296 2.18: SKEYSEED with the old SA's PRF, everything after with the new one.
    keys = rekeyed_ike_keys(
        old.prf,
        old.keys.sk_d,
        prf,
        ctx.secrets,
        ctx.nonce_i,
        ctx.nonce_r,
        spi_i,
        spi_r,
        encr_key_size=cipher.key_size,
        integ_key_size=cipher.integ_key_size,
    )
    methods = [m for m in (suite.ke, *(m for _, m in suite.rounds)) if m is not None]
    sa.emit(
        IkeKeysDerived(
            spi_i=spi_i,
            spi_r=spi_r,
            exchange=ExchangeType.CREATE_CHILD_SA,
            epoch=0,
            nonce_i=ctx.nonce_i,
            nonce_r=ctx.nonce_r,
            key_exchanges=tuple(zip(methods, ctx.secrets, strict=False)),
            keys=keys,
            prf=suite.prf,
            previous_sk_d=old.keys.sk_d,
            old_spi_i=sa.gen.spi_i,
            old_spi_r=sa.gen.spi_r,
        )
    )
    rekeyed = IkeSaRekeyed(
        time=now,
        old_spi_i=sa.gen.spi_i,
        old_spi_r=sa.gen.spi_r,
        spi_i=spi_i,
        spi_r=spi_r,
        suite=suite,
        keys=keys,
        nonce_i=ctx.nonce_i,
        nonce_r=ctx.nonce_r,
        initiated=ctx.initiated,
        key_exchanges=len(ctx.secrets),
    )
    sa.install_generation(ctx, spi_i, spi_r, Crypto(suite, prf, cipher, keys), rekeyed, now)
