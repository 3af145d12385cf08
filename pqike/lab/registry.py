"""The runner's default peer pairs: every kind in ``PAIR_KINDS`` with its implementation.

It sits above the pair modules: ``peers`` (the base and ``memory``), ``udp_pair`` and
``strongswan_pairs`` import ``peers``, and this module imports all of them, so the base
never imports what is built on it.
"""

from __future__ import annotations

from .peers import MemoryPair, PeerPair, UnavailablePair
from .spec import PAIR_KINDS
from .strongswan_pairs import strongswan_pairs
from .udp_pair import UdpPair


def default_pairs() -> dict[str, PeerPair]:
    """A fresh mapping from every kind in ``PAIR_KINDS`` to its implementation."""
    pairs: dict[str, PeerPair] = {"memory": MemoryPair(), "udp": UdpPair()}
    pairs.update(strongswan_pairs())
    for name in PAIR_KINDS:
        if name not in pairs:  # pragma: no cover - every kind has an implementation
            pairs[name] = UnavailablePair(name, "no implementation")
    return pairs


__all__ = ["default_pairs"]
