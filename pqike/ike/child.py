"""A Child SA as the IKE SA keeps it: SPIs, keys, selectors and lifetimes (RFC 7296 1.3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from ..crypto.keys import ChildKeys
from ..proposal import NegotiatedSuite
from ..wire.payloads import TrafficSelector


class ChildState(Enum):
    INSTALLED = auto()
    REKEYING = auto()
    """Our CREATE_CHILD_SA with REKEY_SA for it is in flight."""
    REKEYED = auto()
    """A newer Child SA replaces it; its Delete is under way (RFC 7296 2.8)."""
    DELETING = auto()


@dataclass(slots=True)
class ChildSa:
    """One Child SA: a pair of ESP SAs. Named by ``spi_in``, the SPI we chose."""

    spi_in: bytes
    spi_out: bytes
    suite: NegotiatedSuite
    keys: ChildKeys
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    transport: bool
    initiated: bool
    """We started the exchange that created it (so ``keys.encr_i`` is our outbound key)."""
    created: float
    rekey_at: float | None
    expire_at: float | None
    state: ChildState = ChildState.INSTALLED
    collision_nonce: bytes | None = None
    """RFC 7296 2.8.1: the lowest nonce of the peer's rekey of this SA, while ours runs."""
