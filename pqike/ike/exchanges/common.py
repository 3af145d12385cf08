"""Payload helpers shared by the exchange modules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from ...constants import NotifyType, is_error_notify, name_of
from ...errors import InvalidSyntax, PeerError
from ...wire.payloads import KePayload, NotifyPayload, Payload

P = TypeVar("P")

MAX_KE_DATA = 0xFFFF - 8
"""Most KE data one payload holds: a 16-bit Payload Length less 8 header bytes (RFC 7296 3.4)."""


def first(payloads: Iterable[Payload], cls: type[P]) -> P | None:
    """The first payload of class ``cls``, or ``None``."""
    for p in payloads:
        if isinstance(p, cls):
            return p
    return None


def notify(payloads: Iterable[Payload], kind: int) -> NotifyPayload | None:
    """The first Notify of type ``kind``, or ``None``."""
    for p in payloads:
        if isinstance(p, NotifyPayload) and p.notify_type == kind:
            return p
    return None


def error_notify(payloads: Iterable[Payload]) -> NotifyPayload | None:
    """The first error Notify (types below 16384, RFC 7296 3.10.1), or ``None``."""
    for p in payloads:
        if isinstance(p, NotifyPayload) and is_error_notify(p.notify_type):
            return p
    return None


def raise_peer_error(payloads: Iterable[Payload], context: str, *, round: int | None = None):
    """Raise ``PeerError`` when the peer's response carries an error Notify."""
    err = error_notify(payloads)
    if err is not None:
        name = name_of(NotifyType, err.notify_type)
        raise PeerError(err.notify_type, f"{context}responder answered {name}", round=round)


def check_nonce(nonce: bytes, prf_key_size: int, who: str) -> None:
    """RFC 7296 2.10: a nonce is at least half the negotiated PRF's key size (and at
    least 16 bytes, which the codec checks)."""
    if 2 * len(nonce) < prf_key_size:
        raise InvalidSyntax(
            f"{who} has {len(nonce)} bytes, less than half the PRF key size "
            f"({prf_key_size} bytes, RFC 7296 2.10)"
        )


def ke_payloads(method: int, data: bytes) -> list[Payload]:
    """One KE payload, or several in a row when ``data`` does not fit in one.

    pqike's convention for keys over 64 KB (Classic McEliece), which IKEv2 itself cannot
    carry: consecutive KE payloads of the same method, each but the last full. Only used in
    IKE_INTERMEDIATE and IKE_FOLLOWUP_KE, whose messages RFC 7383 can fragment. See
    docs/protocol-notes.md.
    """
    if len(data) <= MAX_KE_DATA:
        return [KePayload(method, data)]
    return [KePayload(method, data[i : i + MAX_KE_DATA]) for i in range(0, len(data), MAX_KE_DATA)]


def joined_ke(payloads: Iterable[Payload]) -> KePayload | None:
    """The KE payload of a message, rejoined when ``ke_payloads`` split it."""
    kes = [p for p in payloads if isinstance(p, KePayload)]
    if len(kes) <= 1:
        return kes[0] if kes else None
    if any(k.method != kes[0].method for k in kes) or any(
        len(k.data) != MAX_KE_DATA for k in kes[:-1]
    ):
        raise InvalidSyntax("several KE payloads that are not one split key exchange value")
    return KePayload(kes[0].method, b"".join(k.data for k in kes))


_ML_KEM = (35, 36, 37)
"""ML-KEM-512/768/1024 (IANA Transform Type 4 IDs 35-37)."""


def impaired_ke(
    impairments: frozenset[str], method: int, data: bytes, *, request: bool
) -> tuple[int, bytes]:
    """The (method, data) of an additional key exchange's KE payload as an impaired
    peer sends it (``pqike.ike.impair``); unchanged without impairments."""
    if not impairments:
        return method, data
    if request and "bad-mlkem-key" in impairments and method in _ML_KEM and len(data) > 2:
        # FIPS 203 7.2: ByteEncode12 of the first coefficient is 4095, not below q = 3329.
        data = b"\xff" + bytes([data[1] | 0x0F]) + data[2:]
    if not request and "short-ciphertext" in impairments and data:
        data = data[:-1]
    if "wrong-ke-method" in impairments:
        method = 37 if method != 37 else 36
    return method, data
