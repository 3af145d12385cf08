"""Events an ``IkeSa`` reports through ``next_event()``. Names are past tense.

They carry what tests, traces and key logs need: negotiated algorithms, derived keys,
and for every message its exchange, payloads, sizes and time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .._fastinit import fast_init
from ..crypto.keys import ChildKeys, IkeKeys
from ..proposal import NegotiatedSuite
from ..wire.payloads import TrafficSelector
from .config import Identity


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, kw_only=True)
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


@fast_init
@dataclass(frozen=True, kw_only=True)
class MessageSent(MessageEvent):
    """A message left, whole or in fragments (one per datagram in ``datagram_sizes``)."""

    destination: tuple[str, int] | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class MessageReceived(MessageEvent):
    """A whole message arrived and was accepted (after reassembly and decryption)."""

    source: tuple[str, int] | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class DatagramDropped(Event):
    """A datagram was ignored; ``reason`` says why (also counted in ``IkeSa.stats``)."""

    time: float
    reason: str
    size: int


class Purpose(Enum):
    """What a CREATE_CHILD_SA exchange (with its IKE_FOLLOWUP_KE exchanges) is for
    (RFC 7296 1.3); ``IKE_AUTH`` names the first Child SA, created in IKE_AUTH."""

    IKE_AUTH = "ike_auth"
    NEW_CHILD = "new_child"
    REKEY_CHILD = "rekey_child"
    REKEY_IKE = "rekey_ike"


@fast_init
@dataclass(frozen=True, kw_only=True)
class KeyExchangeCompleted(Event):
    """A key exchange finished: round 0 is the KE payload of IKE_SA_INIT (or of a
    CREATE_CHILD_SA), n the ADDKEn round of IKE_INTERMEDIATE (or IKE_FOLLOWUP_KE),
    RFC 9370 2.2.2 and 2.2.4. ``purpose`` is ``None`` in the first handshake. A
    responder reports round 0 after the ``MessageSent`` of its IKE_SA_INIT response,
    whose secret it computes once the response has left (``IkeSa.defer_first_keys``),
    and each round n of IKE_INTERMEDIATE after that of its answer (``IkeSa.defer``)."""

    method: int
    round: int
    shared_secret: bytes
    purpose: Purpose | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class IkeKeysDerived(Event):
    """SKEYSEED and the seven SK_* keys were computed: after IKE_SA_INIT (epoch 0,
    RFC 7296 2.14), after the n-th additional key exchange in IKE_INTERMEDIATE (epoch n,
    RFC 9370 2.2.2), or for the new IKE SA of a rekey (RFC 7296 2.18, RFC 9370 2.2.4).

    Everything the derivation used is here, so a transcript can be checked without
    the implementation: ``key_exchanges`` are the ``(method, shared secret)`` pairs fed
    into this SKEYSEED in order, ``previous_sk_d`` the SK_d that keyed it (empty for
    IKE_SA_INIT), the nonces and SPIs those of the prf+ input.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    """IKE_SA_INIT, IKE_INTERMEDIATE or CREATE_CHILD_SA (an IKE SA rekey)."""
    epoch: int
    nonce_i: bytes
    nonce_r: bytes
    key_exchanges: tuple[tuple[int, bytes], ...]
    keys: IkeKeys
    """The new keys; ``keys.skeyseed`` is SKEYSEED."""
    prf: int
    previous_sk_d: bytes = b""
    old_spi_i: bytes = b""
    """For a rekey: the SPIs of the IKE SA that was rekeyed."""
    old_spi_r: bytes = b""
    ppk_id: bytes = b""
    """RFC 9867 3: this epoch mixed in the PPK of this PPK_ID (``SKEYSEED' = prf+(PPK,
    SK_d)`` with ``previous_sk_d``); no key exchange then. Empty for the other epochs."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class IntAuthComputed(Event):
    """One IKE_INTERMEDIATE message was folded into its sender's IntAuth chain
    (RFC 9242 3.3.2): ``value = prf(sk_p, previous | a | p)``.

    ``a`` is the header (SKF turned into SK, Length recomputed), the unprotected
    payloads and the SK generic header; ``p`` the inner payloads in clear. The sender
    computes it over what it protected, the receiver over what it decrypted. A
    responder computes both of an exchange's (request and answer) once its answer has
    left, an initiator its request's once the request has left (``IkeSa.defer``): they
    follow that message's ``MessageSent``; an initiator's for a response comes at once.
    """

    spi_i: bytes
    spi_r: bytes
    message_id: int
    is_response: bool
    initiator: bool
    """The chain is the original initiator's (IntAuth_i) or the responder's (IntAuth_r)."""
    epoch: int
    """The key epoch whose SK_p keyed the prf (the one that protected the message)."""
    sk_p: bytes
    previous: bytes
    a: bytes
    p: bytes
    value: bytes


@fast_init
@dataclass(frozen=True, kw_only=True)
class AuthComputed(Event):
    """An AUTH value was computed (RFC 7296 2.15, RFC 9242 3.3.2): ours to send, or the
    one we expect from the peer. ``int_auth`` is the tail appended to the signed octets
    (``IntAuth_i | IntAuth_r | IKE_AUTH message ID``, empty without IKE_INTERMEDIATE)."""

    spi_i: bytes
    spi_r: bytes
    message_id: int
    initiator: bool
    """The AUTH of the original initiator (in the request) or of the responder."""
    ours: bool
    int_auth: bytes
    octets: bytes
    value: bytes


@fast_init
@dataclass(frozen=True, kw_only=True)
class ChildKeysDerived(Event):
    """KEYMAT of a Child SA was computed (RFC 7296 2.17, RFC 9370 2.2.4):
    ``prf+(sk_d, SK(0) | Ni | Nr | SK(1) | ... )``; "i" and "r" are the roles in the
    exchange that created it, ``spi_i``/``spi_r`` the IKE SA's SPIs."""

    spi_i: bytes
    spi_r: bytes
    child_spi_i: bytes
    child_spi_r: bytes
    purpose: Purpose
    nonce_i: bytes
    nonce_r: bytes
    key_exchanges: tuple[tuple[int, bytes], ...]
    sk_d: bytes
    keys: ChildKeys


@fast_init
@dataclass(frozen=True, kw_only=True)
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


@fast_init
@dataclass(frozen=True, kw_only=True)
class ChildSaEstablished(Event):
    """A Child SA is ready: the first one, created in IKE_AUTH, or one created or
    rekeyed by CREATE_CHILD_SA (RFC 7296 1.3).

    "Initiator" here is the initiator of the exchange that created the Child SA, which
    is also the order of ``keys`` (RFC 7296 2.17: KEYMAT gives the initiator-to-responder
    keys first).
    """

    spi_i: bytes
    """ESP SPI chosen by the exchange initiator (inbound for it)."""
    spi_r: bytes
    suite: NegotiatedSuite
    keys: ChildKeys
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    transport_mode: bool
    time: float = 0.0
    purpose: Purpose = Purpose.IKE_AUTH
    initiated: bool = True
    """We started the exchange that created it."""
    rekeyed_spi: bytes | None = None
    """For a rekey: our inbound SPI of the Child SA this one replaces."""
    key_exchanges: int = 0
    """Key exchanges that went into its keys: the KE payload and each ADDKE round."""
    nonce_i: bytes = b""
    """The nonces KEYMAT was made from (RFC 7296 2.17): IKE_SA_INIT's for the first
    Child SA, the CREATE_CHILD_SA exchange's otherwise."""
    nonce_r: bytes = b""


@fast_init
@dataclass(frozen=True, kw_only=True)
class ChildSaDeleted(Event):
    """A Child SA was deleted by an INFORMATIONAL exchange (RFC 7296 1.4.1), after its
    rekey, on request, as a redundant result of a rekey collision (RFC 7296 2.8.1), or
    because its hard lifetime ran out."""

    time: float
    spi_in: bytes
    """Our inbound SPI."""
    spi_out: bytes
    by_peer: bool
    reason: str


@fast_init
@dataclass(frozen=True, kw_only=True)
class CreateChildSaFailed(Event):
    """A CREATE_CHILD_SA exchange (with its IKE_FOLLOWUP_KE exchanges) failed, or the
    Child SA of IKE_AUTH was refused; the IKE SA itself stays up.

    ``notify`` is the error Notify that ended it (sent or received), ``None`` for a
    local reason; ``round`` the ADDKE round it failed in (RFC 9370), if any.
    """

    time: float
    purpose: Purpose
    notify: int | None
    reason: str
    round: int | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class IkeSaRekeyed(Event):
    """The IKE SA was rekeyed by CREATE_CHILD_SA (RFC 7296 2.18, RFC 9370 2.2.4): the
    new SPIs and keys are in force; the old SA is deleted next."""

    time: float
    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes
    suite: NegotiatedSuite
    keys: IkeKeys
    nonce_i: bytes
    nonce_r: bytes
    initiated: bool
    """We started the rekey (and so are the original initiator of the new SA)."""
    key_exchanges: int
    """The KE payload and each ADDKE round that went into SKEYSEED."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class LivenessChecked(Event):
    """An empty INFORMATIONAL request (a liveness check, RFC 7296 1.4) was answered."""

    time: float
    round_trip: float


@fast_init
@dataclass(frozen=True, kw_only=True)
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
    spi_i: bytes = b""
    spi_r: bytes = b""
    """The SPIs as they went on the wire: all zero for SPIr when the IKE SA was refused
    in IKE_SA_INIT (RFC 7296 2.6 keeps no state, so no SPI was ever sent)."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class IkeSaDeleted(Event):
    """The IKE SA was deleted by an INFORMATIONAL exchange (RFC 7296 1.4.1)."""

    time: float
    by_peer: bool
