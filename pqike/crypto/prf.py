"""The IKE pseudorandom functions and prf+ (RFC 7296 2.13, RFC 4868 2.1).

Only the HMAC-SHA2 PRFs are provided. ``hmac.digest`` is OpenSSL's one-shot HMAC, which
is the cheapest HMAC call Python offers, and every key derivation runs through it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from types import MappingProxyType

from ..constants import PrfTransform
from ..errors import ConfigurationError, LocalProtocolError

PRF_PLUS_MAX_BLOCKS = 255
"""RFC 7296 2.13: the prf+ counter is one octet, so at most 255 blocks can be produced."""


class Prf:
    """One PRF transform: ``prf(key, data)`` and ``prf.plus(key, seed, length)``.

    Instances are immutable and shared; get one with :func:`get_prf`.
    ``key_size`` is the preferred key length (RFC 7296 2.14: the length of SK_d, SK_pi and
    SK_pr), which for the HMAC-SHA2 PRFs equals ``output_size`` (RFC 4868 2.1.2).
    """

    __slots__ = ("_hash", "id", "key_size", "name", "output_size")

    id: int
    key_size: int
    output_size: int
    name: str

    def __init__(self, prf_id: int, name: str, hash_name: str, size: int) -> None:
        self.id = int(prf_id)
        self.name = name
        self.key_size = size
        self.output_size = size
        self._hash = hash_name

    def __repr__(self) -> str:
        return f"Prf({self.name})"

    def __call__(self, key: bytes, data: bytes) -> bytes:
        """Return ``prf(key, data)``: HMAC with any key length (RFC 4868 2.1.2)."""
        return hmac.digest(key, data, self._hash)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """Return the first ``length`` bytes of ``prf+(key, seed)`` (RFC 7296 2.13).

        ``T1 = prf(K, S | 0x01)``, ``Tn = prf(K, T(n-1) | S | n)``. Asking for more than
        255 blocks is a programming error (no IKE suite needs that much keying material)
        and raises ``LocalProtocolError``.
        """
        size = self.output_size
        blocks = -(-length // size)
        if length < 0 or blocks > PRF_PLUS_MAX_BLOCKS:
            raise LocalProtocolError(
                f"prf+ can produce 0 to {PRF_PLUS_MAX_BLOCKS * size} bytes with {self.name}, "
                f"not {length}"
            )
        digest = hmac.digest
        hash_name = self._hash
        out = bytearray()
        block = b""
        for counter in range(1, blocks + 1):
            block = digest(key, block + seed + bytes((counter,)), hash_name)
            out += block
        del out[length:]
        return bytes(out)


# Keyed by plain int: look-ups take the Transform ID as it came off the wire.
_PRFS: Mapping[int, Prf] = MappingProxyType(
    {
        PrfTransform.HMAC_SHA2_256: Prf(PrfTransform.HMAC_SHA2_256, "prfsha256", "sha256", 32),
        PrfTransform.HMAC_SHA2_384: Prf(PrfTransform.HMAC_SHA2_384, "prfsha384", "sha384", 48),
        PrfTransform.HMAC_SHA2_512: Prf(PrfTransform.HMAC_SHA2_512, "prfsha512", "sha512", 64),
    }
)


PRF_KEY_SIZES: Mapping[int, int] = MappingProxyType({i: p.key_size for i, p in _PRFS.items()})
"""Key size of each supported PRF, by transform ID (RFC 7296 2.14)."""


def get_prf(prf_id: int) -> Prf:
    """Return the shared :class:`Prf` for a PRF transform ID (HMAC_SHA2_256/384/512).

    Raises ``ConfigurationError`` for any other ID.
    """
    prf = _PRFS.get(prf_id)
    if prf is None:
        raise ConfigurationError(f"PRF transform {prf_id} is not supported", field="prf")
    return prf
