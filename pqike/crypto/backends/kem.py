"""What every library-backed KEM exchange shares: roles, length checks, error mapping.

A library (pqcrypto, liboqs) gives three functions - key generation, Encaps, Decaps -
and :class:`KemExchange` turns them into a :class:`~pqike.crypto.kex.KeyExchange`:
the initiator sends the encapsulation key and decapsulates, the responder encapsulates
(draft-ietf-ipsecme-ikev2-mlkem 2, RFC 9370 2.2.2 for KEMs in general). Peer data is
checked for its exact length first, ML-KEM keys also for FIPS 203 7.2's modulus check
(:func:`mlkem_key_is_valid`), and whatever a library raises about a peer value becomes
``InvalidSyntax``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from ...errors import ConfigurationError, InvalidSyntax, LocalProtocolError
from ..kex import KeyExchange
from .ids import kem_ids

__all__ = ["KemExchange", "LazyKemBackend", "check_mlkem_key", "mlkem_key_is_valid"]

KeyGen = Callable[[], tuple[bytes, bytes]]
"""``() -> (encapsulation key, decapsulation key)``."""
Encaps = Callable[[bytes], tuple[bytes, bytes]]
"""``(encapsulation key) -> (ciphertext, shared secret)``."""
Decaps = Callable[[bytes, bytes], bytes]
"""``(decapsulation key, ciphertext) -> shared secret``."""

MLKEM_Q = 3329
"""The ML-KEM modulus q (FIPS 203 2.4)."""


def _modulus_masks(k: int) -> tuple[int, int, int]:
    # ByteEncode12 packs two 12-bit coefficients in three bytes, little-endian, so the
    # 384k-byte key read as one little-endian integer is sum(c_j << 12j). Every other
    # coefficient sits in the low 12 bits of a 24-bit lane. Adding 4096 - q to such a
    # lane carries into its bit 12 exactly when the coefficient is >= q, and never into
    # the next lane (4095 + 767 < 2^24): one addition tests half the coefficients at once.
    lanes = 128 * k
    low12 = int.from_bytes(b"\xff\x0f\x00" * lanes, "little")
    bias = int.from_bytes((4096 - MLKEM_Q).to_bytes(3, "little") * lanes, "little")
    bit12 = int.from_bytes(b"\x00\x10\x00" * lanes, "little")
    return low12, bias, bit12


# Precomputed per ML-KEM size, keyed by the encapsulation key length 384k + 32.
_MASKS = MappingProxyType({384 * k + 32: (k, *_modulus_masks(k)) for k in (2, 3, 4)})


def mlkem_key_is_valid(key: bytes) -> bool:
    """FIPS 203 7.2 input check of an ML-KEM-512/768/1024 encapsulation key.

    True when the length is 800, 1184 or 1568 bytes and every 12-bit coefficient of
    the 384k-byte vector part is below q = 3329 (the modulus check: ByteEncode12 of
    ByteDecode12 gives the key back). The trailing 32-byte seed rho is not checked.
    About 2 us for ML-KEM-768 here, against 45 us for a loop over the coefficients.
    """
    entry = _MASKS.get(len(key))
    if entry is None:
        return False
    k, low12, bias, bit12 = entry
    vector = int.from_bytes(key[: 384 * k], "little")
    even = (vector & low12) + bias
    odd = ((vector >> 12) & low12) + bias
    return not ((even | odd) & bit12)


def check_mlkem_key(key: bytes, label: str) -> None:
    """Raise ``InvalidSyntax`` unless ``key`` passes :func:`mlkem_key_is_valid`."""
    if not mlkem_key_is_valid(key):
        raise InvalidSyntax(f"{label} encapsulation key fails the modulus check")


_FRESH, _INITIATOR, _RESPONDER = 0, 1, 2

# What a library raises about a value it refuses: pqcrypto raises ValueError, liboqs-python
# RuntimeError (a failed C call), ctypes ValueError/TypeError for a buffer it cannot make.
_LIBRARY_REFUSALS = (ValueError, RuntimeError, TypeError)


class KemExchange(KeyExchange):
    """One side of a KEM exchange over a library's keygen / Encaps / Decaps.

    ``label`` names the algorithm in error messages (``HQC-128``), ``backend`` the
    library. The sizes are the exact KE data lengths to accept; ``check_key`` runs extra
    checks on the initiator's key before Encaps (ML-KEM: :func:`check_mlkem_key`).
    """

    __slots__ = (
        "_check_key",
        "_ct_size",
        "_decaps",
        "_decaps_key",
        "_ek_size",
        "_encaps",
        "_keygen",
        "_public",
        "_role",
        "_secret_size",
        "backend",
        "label",
        "method",
    )

    def __init__(
        self,
        method: int,
        label: str,
        backend: str,
        *,
        ek_size: int,
        ct_size: int,
        secret_size: int,
        keygen: KeyGen,
        encaps: Encaps,
        decaps: Decaps,
        check_key: Callable[[bytes, str], None] | None = None,
    ) -> None:
        self.method = method
        self.label = label
        self.backend = backend
        self._ek_size = ek_size
        self._ct_size = ct_size
        self._secret_size = secret_size
        self._keygen = keygen
        self._encaps = encaps
        self._decaps = decaps
        self._check_key = check_key
        self._public: bytes | None = None
        self._decaps_key: bytes | None = None
        self._role = _FRESH

    def public_data(self) -> bytes:
        """Initiator: generate the key pair once and return the encapsulation key."""
        if self._role == _RESPONDER:
            raise LocalProtocolError("public_data() is for the initiator; respond() was used")
        self._role = _INITIATOR
        if self._public is None:
            public, self._decaps_key = self._keygen()
            self._public = self._own_output(public, self._ek_size, "encapsulation key")
        return self._public

    def respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
        """Responder: check the initiator's key, return ``(ciphertext, shared secret)``."""
        if self._role != _FRESH:
            raise LocalProtocolError("respond() needs a fresh key exchange object")
        self._role = _RESPONDER
        key = self._peer_value(peer_data, self._ek_size, "encapsulation key")
        if self._check_key is not None:
            self._check_key(key, self.label)
        try:
            ciphertext, secret = self._encaps(key)
        except _LIBRARY_REFUSALS:
            raise InvalidSyntax(
                f"{self.label} encapsulation key was refused by {self.backend}"
            ) from None
        ciphertext = self._own_output(ciphertext, self._ct_size, "ciphertext")
        return ciphertext, self._own_output(secret, self._secret_size, "shared secret")

    def complete(self, peer_data: bytes) -> bytes:
        """Initiator: check the ciphertext's length and return Decaps of it."""
        if self._role != _INITIATOR or self._decaps_key is None:
            raise LocalProtocolError("complete() needs public_data() to have been sent first")
        ciphertext = self._peer_value(peer_data, self._ct_size, "ciphertext")
        try:
            secret = self._decaps(self._decaps_key, ciphertext)
        except _LIBRARY_REFUSALS:
            raise InvalidSyntax(f"{self.label} ciphertext was refused by {self.backend}") from None
        return self._own_output(secret, self._secret_size, "shared secret")

    def _peer_value(self, peer_data: bytes, expected: int, what: str) -> bytes:
        if len(peer_data) != expected:
            raise InvalidSyntax(
                f"{self.label} {what} must be {expected} bytes, not {len(peer_data)}"
            )
        # Some libraries accept exactly ``bytes``; the codec may hand over a memoryview.
        return bytes(peer_data)

    def _own_output(self, value: bytes, expected: int, what: str) -> bytes:
        # A library whose output sizes differ from the registry's is a local fault (a
        # different version of the algorithm), never the peer's.
        if len(value) != expected:
            raise LocalProtocolError(
                f"{self.backend} produced a {len(value)}-byte {self.label} {what}, "
                f"not {expected} bytes"
            )
        return bytes(value)


class Probe(Protocol):
    """What a library probe found: its KEM implementations by keyword, or why none."""

    @property
    def reason(self) -> str | None: ...

    @property
    def impls(self) -> Mapping[str, Any]: ...


P = TypeVar("P", bound=Probe)


class LazyKemBackend(Generic[P]):
    """A backend on an optional library that is probed (imported) on first use only.

    Subclasses name themselves, list their KEM keywords and implement ``_probe``; this
    class answers the registry's questions the same way for all of them. ``id_overrides``
    changes private-use transform IDs as :func:`~pqike.crypto.backends.ids.private_use_ids`.
    """

    name: str = ""

    __slots__ = ("_keywords", "_loaded")

    def __init__(self, keywords: Iterable[str], id_overrides: Mapping[str, int] | None) -> None:
        ids = kem_ids(id_overrides)
        self._keywords: Mapping[int, str] = MappingProxyType({ids[k]: k for k in keywords})
        self._loaded: P | None = None

    def _probe(self) -> P:
        raise NotImplementedError

    def _load(self) -> P:
        # Probed once per backend object: a library does not come or go mid-process.
        if self._loaded is None:
            self._loaded = self._probe()
        return self._loaded

    def available(self) -> bool:
        """Whether the library loads here (the first call probes it)."""
        return self._load().reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """Why the backend cannot be used here, or ``None`` if it can."""
        return self._load().reason

    def supports(self, method: int) -> bool:
        """Whether ``method`` is one of this backend's KEMs (and, once loaded, its sizes
        are the ones pqike expects)."""
        keyword = self._keywords.get(method)
        if keyword is None:
            return False
        loaded = self._load()
        return loaded.reason is not None or keyword in loaded.impls

    def _implementation(self, method: int) -> tuple[str, Any | None, P]:
        """``(keyword, implementation or None, probe)`` for ``create``; raises
        ``ConfigurationError`` for a method this backend never offers or an absent library."""
        keyword = self._keywords.get(method)
        if keyword is None:
            raise ConfigurationError(
                f"backend {self.name!r} does not implement key exchange method {method}",
                field="key_exchange",
            )
        loaded = self._load()
        if loaded.reason is not None:
            raise ConfigurationError(loaded.reason, field="backend")
        return keyword, loaded.impls.get(keyword), loaded
