"""INFORMATIONAL (RFC 7296 1.4): Delete of IKE and Child SAs, liveness checks, errors.

    HDR, SK{[N], [D], ...}  -->
                       <--  HDR, SK{[N], [D], ...}

A Child SA Delete is answered with the Delete of the paired SAs in the other direction,
except for SAs we are deleting ourselves at the same moment (RFC 7296 1.4.1). An empty
request is a liveness check (dead peer detection). After an IKE SA rekey the old SA
only exchanges its Delete (RFC 7296 2.18).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType, ProtocolId
from ...wire.payloads import DeletePayload, NotifyPayload, Payload
from ..child import ChildSa, ChildState
from ..context import Inbound
from ..events import IkeSaDeleted, LivenessChecked
from ..generation import Generation
from ..states import Outcome
from .common import notify

if TYPE_CHECKING:
    from ..sa import IkeSa

ESP_SPI_SIZE = 4


class Asked(Enum):
    """What our INFORMATIONAL request asked, so its response can be acted on."""

    DELETE_IKE = auto()
    DELETE_CHILD = auto()
    LIVENESS = auto()
    NOTIFY = auto()


@dataclass
class InformationalRequest:
    asked: Asked
    sent_at: float
    spis: tuple[bytes, ...] = ()
    reason: str = ""


# --------------------------------------------------------------------------- requests we send


def send_delete_ike(sa: IkeSa, now: float, gen: Generation | None = None) -> None:
    """Delete the IKE SA (or a replaced generation of it) and with it its Child SAs."""
    sa.send_request(
        ExchangeType.INFORMATIONAL, [DeletePayload(ProtocolId.IKE, 0)], now=now, gen=gen
    )
    if gen is None or gen is sa.gen:
        sa.info_out = InformationalRequest(Asked.DELETE_IKE, now)
    else:
        gen.deleting = True


def send_delete_children(sa: IkeSa, children: list[ChildSa], reason: str, now: float) -> None:
    """Delete Child SAs; the Delete names the SPIs we receive on (RFC 7296 3.11)."""
    spis = tuple(c.spi_in for c in children)
    for child in children:
        child.state = ChildState.DELETING
    sa.send_request(
        ExchangeType.INFORMATIONAL,
        [DeletePayload(ProtocolId.ESP, ESP_SPI_SIZE, spis)],
        now=now,
    )
    sa.info_out = InformationalRequest(Asked.DELETE_CHILD, now, spis, reason)


def send_liveness_check(sa: IkeSa, now: float) -> None:
    """An empty INFORMATIONAL request: is the peer still there (RFC 7296 1.4)?"""
    sa.send_request(ExchangeType.INFORMATIONAL, [], now=now)
    sa.info_out = InformationalRequest(Asked.LIVENESS, now)


# --------------------------------------------------------------------------- handlers


def on_request(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """Answer the peer's INFORMATIONAL: Deletes, a liveness check, an error Notify."""
    out: list[Payload] = []
    ike_deleted = False
    for payload in msg.payloads:
        if not isinstance(payload, DeletePayload):
            continue
        if payload.protocol_id == ProtocolId.IKE:
            ike_deleted = True
            continue
        paired = []
        for spi in payload.spis:
            child = sa.child_by_outbound_spi(spi)
            if child is None:
                continue  # RFC 7296 1.4.1: unknown SPIs are ignored
            if child.state is not ChildState.DELETING:
                paired.append(child.spi_in)
            # else: both sides delete it at once; neither response names it (1.4.1).
            sa.remove_child(child, by_peer=True, reason="deleted by the peer", now=now)
        if paired:
            out.append(DeletePayload(payload.protocol_id, ESP_SPI_SIZE, tuple(paired)))
    failed = notify(msg.payloads, NotifyType.AUTHENTICATION_FAILED)
    sa.send_response(
        ExchangeType.INFORMATIONAL,
        [] if ike_deleted else out,
        message_id=msg.header.message_id,
        now=now,
    )
    if failed is not None:
        sa.note_failure(
            NotifyType.AUTHENTICATION_FAILED, "peer reported AUTHENTICATION_FAILED", now
        )
        return Outcome.FAILED
    if ike_deleted:
        sa.remove_all_children(by_peer=True, reason="the IKE SA was deleted", now=now)
        sa.emit(IkeSaDeleted(time=now, by_peer=True))
        return Outcome.DELETED
    return Outcome.DONE


def on_response(sa: IkeSa, msg: Inbound, now: float) -> Outcome:
    """Act on the answer to our INFORMATIONAL request."""
    asked, sa.info_out = sa.info_out, None
    if asked is None:
        return Outcome.DONE
    if asked.asked is Asked.DELETE_IKE:
        sa.remove_all_children(by_peer=False, reason="the IKE SA was deleted", now=now)
        sa.emit(IkeSaDeleted(time=now, by_peer=False))
        return Outcome.DELETED
    if asked.asked is Asked.DELETE_CHILD:
        for spi in asked.spis:
            child = sa.children.get(spi)
            if child is not None:
                sa.remove_child(child, by_peer=False, reason=asked.reason, now=now)
    elif asked.asked is Asked.LIVENESS:
        sa.emit(LivenessChecked(time=now, round_trip=now - asked.sent_at))
    return Outcome.DONE


def on_replaced_generation(sa: IkeSa, gen: Generation, msg: Inbound, now: float) -> None:
    """A message on an IKE SA that a rekey replaced: only its Delete still matters."""
    if msg.header.is_response:
        if gen.deleting:
            sa.forget_generation(gen)
        return
    if msg.header.exchange_type == ExchangeType.INFORMATIONAL:
        reply: list[Payload] = []
    else:
        # RFC 7296 2.25.2: nothing new on an IKE SA that is going away.
        reply = [NotifyPayload(NotifyType.TEMPORARY_FAILURE)]
    sa.send_response(
        msg.header.exchange_type, reply, message_id=msg.header.message_id, now=now, gen=gen
    )
    # Even once its Delete is answered, the old SA stays until it expires: a lost answer
    # brings the Delete again, and RFC 7296 2.1 wants the cached answer sent back.
