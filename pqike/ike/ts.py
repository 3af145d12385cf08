"""Traffic selector narrowing (RFC 7296 2.9): the intersection of what was asked and
allowed; and the selectors an IKE SA proposes when none are configured."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..wire.payloads import TrafficSelector

if TYPE_CHECKING:
    from .sa import IkeSa


def intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    """The selector covering what both ``a`` and ``b`` cover, or ``None``."""
    if a.ts_type != b.ts_type or len(a.start_address) != len(b.start_address):
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    proto = a.ip_protocol or b.ip_protocol
    lo_port, hi_port = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    lo = max(a.start_address, b.start_address)  # equal-length big-endian bytes compare as numbers
    hi = min(a.end_address, b.end_address)
    if lo_port > hi_port or lo > hi:
        return None
    # Usually one side contains the other: share that frozen selector instead of a copy
    # that every Child SA would keep.
    for whole in (a, b):
        if (whole.ip_protocol, whole.start_port, whole.end_port) == (proto, lo_port, hi_port) and (
            whole.start_address,
            whole.end_address,
        ) == (lo, hi):
            return whole
    return TrafficSelector(a.ts_type, proto, lo_port, hi_port, lo, hi)


def narrow(
    proposed: Iterable[TrafficSelector], allowed: Iterable[TrafficSelector]
) -> tuple[TrafficSelector, ...]:
    """Narrow the peer's ``proposed`` selectors to our ``allowed`` ones, keeping the order.

    RFC 7296 2.9: the responder may answer with a subset; duplicates are removed.
    """
    proposed, allowed = tuple(proposed), tuple(allowed)
    key = (proposed, allowed)
    hit = _NARROWED.get(key)
    if hit is not None:
        return hit
    out: list[TrafficSelector] = []
    for p in proposed:
        for a in allowed:
            ts = intersect(p, a)
            if ts is not None and ts not in out:
                out.append(ts)
    result = tuple(out)
    if len(_NARROWED) >= 256:
        _NARROWED.clear()
    _NARROWED[key] = result
    return result


_NARROWED: dict[tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]], tuple] = {}
"""``narrow``'s answers: a pure function of frozen selectors that a responder asks with
the same arguments in every handshake (bounded; the shared result is also less memory)."""


def host_selector(address: str) -> TrafficSelector:
    """One address alone (/32 or /128): strongSwan's ``dynamic`` selector."""
    ip = ipaddress.ip_address(address)
    return TrafficSelector.from_network(f"{ip}/{ip.max_prefixlen}")


def local_selectors(sa: IkeSa) -> tuple[TrafficSelector, ...]:
    """Our side's configured selectors, or our own address when none are configured
    (the ``strongswan`` and ``minimal`` presets; the ``pqike`` preset always has some)."""
    return sa.config.local_ts or (host_selector(sa.local[0]),)


def remote_selectors(sa: IkeSa) -> tuple[TrafficSelector, ...]:
    """The peer's side: configured, or the peer's address as we see it."""
    return sa.config.remote_ts or (host_selector(sa.remote[0]),)
