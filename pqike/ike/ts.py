"""Traffic selector narrowing (RFC 7296 2.9): the intersection of what was asked and allowed."""

from __future__ import annotations

from collections.abc import Iterable

from ..wire.payloads import TrafficSelector


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
