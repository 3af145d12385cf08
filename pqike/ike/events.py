"""Events an ``IkeSa`` reports through ``next_event()``. Names are past tense.

They carry what tests, traces and key logs need: negotiated algorithms, derived keys,
and for every message its exchange, payloads, sizes and time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.keys import ChildKeys, IkeKeys
from ..proposal import NegotiatedSuite
from ..wire.payloads import TrafficSelector
from .config import Identity


@dataclass(frozen=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True)
class MessageEvent(Event):
    """What ``MessageSent`` and ``MessageReceived`` both say about one IKE message."""

    time: float
    exchange_type: int
    message_id: int
    is_response: bool
    payload_types: tuple[int, ...]
    """Outer payload types, then the inner (encrypted) ones, in wire order."""
    ike_bytes: int
    """Length of the unfragmented IKE message."""
    fragment_ike_bytes: tuple[int, ...]
    """IKE length of each fragment; ``(ike_bytes,)`` when not fragmented."""
    datagram_sizes: tuple[int, ...]
    """UDP payload bytes of each datagram (non-ESP marker included)."""
    retransmission: bool = False

    @property
    def fragments(self) -> int:
        return len(self.fragment_ike_bytes) if len(self.fragment_ike_bytes) > 1 else 0


@dataclass(frozen=True)
class MessageSent(MessageEvent):
    """A message left, whole or in fragments (one per datagram in ``datagram_sizes``)."""

    destination: tuple[str, int] | None = None


@dataclass(frozen=True)
class MessageReceived(MessageEvent):
    """A whole message arrived and was accepted (after reassembly and decryption)."""

    source: tuple[str, int] | None = None


@dataclass(frozen=True)
class DatagramDropped(Event):
    """A datagram was ignored; ``reason`` says why (also counted in ``IkeSa.stats``)."""

    time: float
    reason: str
    size: int


@dataclass(frozen=True)
class KeyExchangeCompleted(Event):
    """A key exchange finished: round 0 in IKE_SA_INIT, n for ADDKEn (RFC 9370)."""

    method: int
    round: int
    shared_secret: bytes


@dataclass(frozen=True)
class IkeSaEstablished(Event):
    """Both peers authenticated: the IKE SA is ready."""

    time: float
    spi_i: bytes
    spi_r: bytes
    suite: NegotiatedSuite
    keys: IkeKeys
    """The final SK_* keys (after every additional key exchange)."""
    local_id: Identity
    remote_id: Identity
    nonce_i: bytes
    nonce_r: bytes
    intermediate_exchanges: int
    nat_local: bool
    """Our address is translated (our NAT_DETECTION_DESTINATION_IP did not match)."""
    nat_remote: bool


@dataclass(frozen=True)
class ChildSaEstablished(Event):
    """The first Child SA, created in IKE_AUTH (RFC 7296 1.3)."""

    spi_i: bytes
    """ESP SPI chosen by the initiator (inbound for it)."""
    spi_r: bytes
    suite: NegotiatedSuite
    keys: ChildKeys
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    transport_mode: bool


@dataclass(frozen=True)
class IkeSaFailed(Event):
    """The IKE SA could not be set up or was torn down after an error.

    ``notify`` is the error Notify that ended it (sent or received), ``None`` for a
    local reason such as a retransmission time-out. ``round`` names the key exchange
    round when the failure happened in one (RFC 9370).
    """

    time: float
    notify: int | None
    reason: str
    round: int | None = None


@dataclass(frozen=True)
class IkeSaDeleted(Event):
    """The IKE SA was deleted by an INFORMATIONAL exchange (RFC 7296 1.4.1)."""

    time: float
    by_peer: bool
