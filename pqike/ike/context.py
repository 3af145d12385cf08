"""Per-exchange state: one context object per exchange in flight.

The first handshake (IKE_SA_INIT, IKE_INTERMEDIATE rounds, IKE_AUTH) keeps its nonces,
key exchange objects, ADDKE rounds, IntAuth chains and the IKE_SA_INIT messages that
AUTH signs in a ``HandshakeContext``, dropped once the SA is established. Each
CREATE_CHILD_SA exchange with its IKE_FOLLOWUP_KE exchanges (RFC 9370 2.2.4) keeps a
``ChildExchange``, so a rekey runs beside an established SA and one can run in each
direction at once (RFC 7296 2.3: the windows of the two directions are independent).
``Inbound`` is one received message as the handlers see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._fastinit import fast_init
from ..crypto.kex import KeyExchange
from ..proposal import NegotiatedSuite
from ..wire.payloads import IkeHeader, Message, Payload, Proposal, TrafficSelector
from .events import Purpose
from .protection import UnprotectedMessage

Address = tuple[str, int]


@fast_init
@dataclass(frozen=True, slots=True)
class Inbound:
    """A message that passed the SA's checks, as handed to an exchange handler."""

    header: IkeHeader
    payloads: tuple[Payload, ...]
    """The inner (decrypted) payloads, or the plain payloads of IKE_SA_INIT."""
    message: Message
    plain: UnprotectedMessage | None
    """The decrypted message (``None`` for IKE_SA_INIT): IntAuth is computed over it."""
    source: Address
    udp_len: int


@fast_init
@dataclass(frozen=True, slots=True)
class NewChild:
    """A Child SA as one exchange agreed it; "i" and "r" are that exchange's roles."""

    proposal: Proposal
    """The selected proposal (its SPI is the responder's)."""
    spi_i: bytes
    spi_r: bytes
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    transport: bool


@dataclass
class Rounds:
    """The ADDKE rounds of one exchange (RFC 9370 2.2.2): ``((n, method), ...)`` and how
    far they got. ``kex`` is the initiator's key exchange of the round in flight."""

    pending: tuple[tuple[int, int], ...] = ()
    done: int = 0
    kex: KeyExchange | None = None

    @property
    def finished(self) -> bool:
        return self.done >= len(self.pending)

    @property
    def current(self) -> tuple[int, int]:
        """``(n, method)`` of the round in flight."""
        return self.pending[self.done]


@dataclass
class HandshakeContext:
    """What IKE_SA_INIT, IKE_INTERMEDIATE and IKE_AUTH need and nothing after."""

    nonce_i: bytes = b""
    nonce_r: bytes = b""
    ke_method: int | None = None
    kex: KeyExchange | None = None
    cookie: bytes = b""
    sa_init_request: bytes = b""
    """The IKE_SA_INIT request as sent (RealMessage1 of RFC 7296 2.15)."""
    sa_init_response: bytes = b""
    rounds: Rounds = field(default_factory=Rounds)
    next_kex: KeyExchange | None = None
    """An initiator's key exchange for its next ADDKE round, its key pair made while it
    waited for a response (``intermediate.prepare_round``); used once, if the round's
    method is its method."""
    int_auth_i: bytes = b""
    """RFC 9242 3.3.2: the chained IntAuth of the initiator's IKE_INTERMEDIATE messages."""
    int_auth_r: bytes = b""
    intermediate_exchanges: int = 0
    """IKE_INTERMEDIATE exchanges completed (each one is in IntAuth, RFC 9242 3.3.2)."""
    epoch: int = 0
    """Key updates so far: one per additional key exchange, one for an RFC 9867 PPK (which
    may share the last ADDKE round's exchange), so it can run ahead of the exchanges."""
    half_open_deadline: float | None = None
    peer_hashes: frozenset[int] = frozenset()
    """RFC 7427 4: the hash algorithms the peer announced in SIGNATURE_HASH_ALGORITHMS."""
    peer_certreq: bytes | None = None
    """The Certification Authority data of the peer's CERTREQ payloads, ``None``: none."""
    peer_auth_methods: tuple[tuple[int, bytes], ...] | None = None
    """RFC 9593: the peer's SUPPORTED_AUTH_METHODS as ``(method, AlgorithmIdentifier)``;
    ``None`` when it announced nothing."""
    peer_announces_methods: bool = False
    """The initiator sent an empty SUPPORTED_AUTH_METHODS in IKE_SA_INIT (RFC 9593 3.1)."""
    use_ppk: bool = False
    """RFC 8784 3: both peers sent USE_PPK in IKE_SA_INIT."""
    ppk_int: bool = False
    """RFC 9867 3: USE_PPK_INT (with INTERMEDIATE_EXCHANGE_SUPPORTED) both ways: the PPK
    is agreed in IKE_INTERMEDIATE, not at IKE_AUTH."""
    ppk_int_pending: bool = False
    """The IKE_INTERMEDIATE exchange carrying PPK_IDENTITY_KEY has not completed yet."""
    ppk_int_used: bytes | None = None
    """The PPK_ID mixed into the keys in IKE_INTERMEDIATE; ``None``: no PPK so far."""
    psk_values: dict[bytes, bytes] = field(default_factory=dict)
    """PSK AUTH values by signed octets: the transcript event, our AUTH payload and the
    check of the peer's each need one, and each is computed once."""


@dataclass
class ChildExchange:
    """One CREATE_CHILD_SA exchange and the IKE_FOLLOWUP_KE exchanges it leads to.

    "i" and "r" are the roles in this exchange, not in the IKE SA. ``secrets`` collects
    SK(0) of the KE payload and SK(1)..SK(n) of the ADDKE rounds, the order in which
    RFC 9370 2.2.4 feeds them to the key derivation.
    """

    purpose: Purpose
    initiated: bool
    """We sent the CREATE_CHILD_SA request."""
    started: float
    proposals: tuple[Proposal, ...] = ()
    """What the initiator offered (with its new SPI)."""
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    ke_method: int | None = None
    kex: KeyExchange | None = None
    suite: NegotiatedSuite | None = None
    selected: Proposal | None = None
    secrets: list[bytes] = field(default_factory=list)
    rounds: Rounds = field(default_factory=Rounds)
    link: bytes = b""
    """ADDITIONAL_KEY_EXCHANGE data to echo in the next IKE_FOLLOWUP_KE (RFC 9370 2.2.4)."""
    spi: bytes = b""
    """Our new SPI: 4 bytes (ESP) for a Child SA, 8 for a rekeyed IKE SA."""
    peer_spi: bytes = b""
    rekeyed_spi: bytes | None = None
    """The Child SA being rekeyed, by our inbound SPI."""
    ts_i: tuple[TrafficSelector, ...] = ()
    ts_r: tuple[TrafficSelector, ...] = ()
    transport: bool = False
    retried_ke: bool = False
    """An INVALID_KE_PAYLOAD already made us retry with the method the peer wants."""
    message_id: int = 0

    @property
    def lowest_nonce(self) -> bytes:
        """RFC 7296 2.8.1/2.8.2 compare the lowest nonce of colliding exchanges."""
        return min(self.nonce_i, self.nonce_r)
