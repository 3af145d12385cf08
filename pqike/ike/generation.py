"""One generation of an IKE SA: its SPIs, keys and message-ID windows.

An IKE SA rekey (RFC 7296 2.18) makes a new generation with new SPIs and keys whose
message IDs start again at 0; the old one lives on only until its Delete is exchanged.
Each generation has one request outstanding in each direction (window size 1) and the
two directions are independent (RFC 7296 2.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

from ..crypto.keys import IkeKeys
from ..crypto.prf import Prf
from ..crypto.protect import Cipher
from ..proposal import NegotiatedSuite
from .events import MessageSent
from .protection import Reassembler, ReassemblyBudget, ReassemblyLimits


@dataclass
class Crypto:
    """The negotiated suite of a generation and its current keys (replaced after each
    ADDKE round of the first handshake, RFC 9370 2.2.2)."""

    suite: NegotiatedSuite
    prf: Prf
    cipher: Cipher
    keys: IkeKeys


@dataclass
class Outgoing:
    """A request we sent and may have to retransmit (RFC 7296 2.1)."""

    message_id: int
    exchange_type: int
    datagrams: list[bytes]
    event: MessageSent
    sent_at: float
    tries: int = 0
    deadline: float = 0.0


@dataclass
class CachedResponse:
    """Our last response, resent verbatim when the request is retransmitted (RFC 7296 2.1)."""

    message_id: int
    exchange_type: int
    datagrams: list[bytes]
    event: MessageSent
    request_raw: bytes = b""


class Fate(Enum):
    """What a generation is for."""

    CURRENT = auto()
    REKEYED = auto()
    """Replaced by a rekey: only its Delete is still exchanged (RFC 7296 2.18)."""
    REDUNDANT = auto()
    """Made by the losing side of a rekey collision (RFC 7296 2.8.2): we delete it."""


@dataclass(slots=True)
class Generation:
    spi_i: bytes
    spi_r: bytes
    initiator: bool
    """We are the original initiator of this generation (the I flag, RFC 7296 2.18)."""
    limits: ReassemblyLimits
    """Bounds of the reassembler, which is made when the first fragment comes."""
    crypto: Crypto | None = None
    my_mid: int = 0
    """RFC 7296 2.2: the ID of the next request we send."""
    peer_mid: int = 0
    """The ID of the next request we expect from the peer."""
    request: Outgoing | None = None
    response: CachedResponse | None = None
    fate: Fate = Fate.CURRENT
    expires: float | None = None
    """A replaced generation is forgotten by then even if its Delete never came."""
    deleting: bool = False
    """We sent the Delete of this replaced generation."""
    budget: ReassemblyBudget | None = None
    """The endpoint's budget for partial messages, charged under ``peer`` (RFC 7383 2.6)."""
    peer: str | None = None
    authenticated: bool = False
    """The peer authenticated: the reassembler may take messages beyond the half-open
    allowance."""
    reassembly: Reassembler | None = field(default=None, init=False, repr=False)
    """The reassembler, once a fragment came (``None`` before: most SAs never see one,
    and an idle reassembler is a third of an established SA's memory)."""

    @property
    def reassembler(self) -> Reassembler:
        """The reassembler of this generation's fragments (RFC 7383), made on first use."""
        r = self.reassembly
        if r is None:
            r = self.reassembly = Reassembler(self.limits, budget=self.budget, peer=self.peer)
            if self.authenticated:
                r.established()
        return r

    def authenticate(self) -> None:
        """The SA is established: lift the half-open allowance."""
        self.authenticated = True
        if self.reassembly is not None:
            self.reassembly.established()

    def release(self) -> None:
        """Give any partial message back to the budget (the SA or generation is over)."""
        if self.reassembly is not None:
            self.reassembly.clear()

    @property
    def own_spi(self) -> bytes:
        """The SPI we chose, which the peer's messages carry for us (RFC 7296 2.6)."""
        return self.spi_i if self.initiator else self.spi_r
