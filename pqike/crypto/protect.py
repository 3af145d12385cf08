"""Protection of the SK and SKF payloads (RFC 7296 3.14, RFC 5282, RFC 7634, RFC 7383 2.5).

A :class:`Cipher` is one ENCR (+ INTEG) suite. It is stateless and shared: keys are passed
on every call, so one object serves every SA that negotiated the suite. ``encrypt``
returns ``IV | ciphertext | ICV``, where the ciphertext covers the inner payloads plus
Padding and Pad Length; ``decrypt`` undoes that and reports every failure as
``IntegrityCheckFailed``, which RFC 7296 2.21.2 says to drop silently.
"""

from __future__ import annotations

import hmac
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _BlockCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..constants import EncrTransform, IntegTransform
from ..errors import ConfigurationError, IntegrityCheckFailed, LocalProtocolError

Buffer = bytes | bytearray | memoryview

_AES_KEY_BITS = (128, 192, 256)

# RFC 4868 2.1 / 2.3: key length = full hash output, ICV = half of it.
_INTEG: Mapping[int, tuple[int, int, str]] = MappingProxyType(
    {
        IntegTransform.NONE: (0, 0, ""),
        IntegTransform.HMAC_SHA2_256_128: (32, 16, "sha256"),
        IntegTransform.HMAC_SHA2_384_192: (48, 24, "sha384"),
        IntegTransform.HMAC_SHA2_512_256: (64, 32, "sha512"),
    }
)

# Salt bytes appended to the cipher key in KEYMAT / SK_e for ENCR transforms that take one.
_SALTED: Mapping[int, int] = MappingProxyType(
    {
        EncrTransform.AES_CTR: 4,  # RFC 5930 2 / RFC 3686 5.1: nonce
        EncrTransform.AES_CCM_8: 3,  # RFC 4309 7.1 / RFC 5282 7.1
        EncrTransform.AES_CCM_12: 3,
        EncrTransform.AES_CCM_16: 3,
        EncrTransform.AES_GCM_8: 4,  # RFC 4106 8.1 / RFC 5282 7.1
        EncrTransform.AES_GCM_12: 4,
        EncrTransform.AES_GCM_16: 4,
        EncrTransform.NULL_AUTH_AES_GMAC: 4,  # RFC 4543 3.2
    }
)


def integ_key_size(integ_id: int) -> int:
    """Return the key length in bytes of an INTEG transform (0 for NONE).

    Used both for SK_a (RFC 7296 2.14) and for ESP KEYMAT (RFC 7296 2.17).
    Raises ``ConfigurationError`` for an unsupported transform.
    """
    entry = _INTEG.get(integ_id)
    if entry is None:
        raise ConfigurationError(f"integrity transform {integ_id} is not supported", field="integ")
    return entry[0]


def encr_key_size(encr_id: int, key_bits: int | None) -> int:
    """Return the key length in bytes of an ENCR transform, salt included.

    AES-GCM/CCM/CTR/GMAC add the salt of their RFCs; ChaCha20-Poly1305 is 32 + 4 bytes and
    takes no Key Length attribute (RFC 7634 2); NULL has no key. Used for SK_e and for
    ESP KEYMAT. Raises ``ConfigurationError`` for an unknown transform or key length.
    """
    if encr_id == EncrTransform.CHACHA20_POLY1305:
        if key_bits is not None:
            raise ConfigurationError(
                "ChaCha20-Poly1305 takes no key length attribute (RFC 7634 2)", field="encr"
            )
        return 36
    if encr_id == EncrTransform.NULL:
        return 0
    if encr_id == EncrTransform.AES_CBC or encr_id in _SALTED:
        if key_bits not in _AES_KEY_BITS:
            raise ConfigurationError(
                f"AES key length must be 128, 192 or 256 bits, not {key_bits}", field="encr"
            )
        return key_bits // 8 + _SALTED.get(encr_id, 0)
    raise ConfigurationError(f"encryption transform {encr_id} is not supported", field="encr")


class Cipher(ABC):
    """One SK payload protection suite: ENCR transform, key length and INTEG transform.

    ``key_size`` is the SK_e length (salt included), ``integ_key_size`` the SK_a length
    (0 for AEAD). ``block_size`` is the padding unit: 1 for the AEADs (only the Pad Length
    byte is added), 16 for AES-CBC.
    """

    __slots__ = (
        "block_size",
        "encr_id",
        "icv_size",
        "integ_id",
        "integ_key_size",
        "iv_size",
        "key_bits",
        "key_size",
        "name",
    )

    encr_id: int
    key_bits: int | None
    integ_id: int
    key_size: int
    integ_key_size: int
    iv_size: int
    icv_size: int
    block_size: int
    name: str

    def __repr__(self) -> str:
        return f"Cipher({self.name})"

    def encrypted_size(self, plaintext_len: int) -> int:
        """Return ``len(IV | ciphertext | ICV)`` for ``plaintext_len`` bytes of payloads.

        The ciphertext is the plaintext plus the Pad Length byte, rounded up to the block
        size. Callers need this to write final lengths into the AAD before encrypting.
        """
        block = self.block_size
        padded = -(-(plaintext_len + 1) // block) * block
        return self.iv_size + padded + self.icv_size

    def _pad(self, plaintext: bytes) -> bytes:
        # RFC 7296 3.14: Padding brings the ciphertext to a block multiple; its content is
        # arbitrary (zeros here), the last byte says how much there is.
        pad_len = -(len(plaintext) + 1) % self.block_size
        return b"".join((plaintext, bytes(pad_len), bytes((pad_len,))))

    def _check_keys(self, sk_e: Buffer, sk_a: Buffer) -> None:
        if len(sk_e) != self.key_size or len(sk_a) != self.integ_key_size:
            raise LocalProtocolError(
                f"{self.name} needs SK_e of {self.key_size} and SK_a of "
                f"{self.integ_key_size} bytes, got {len(sk_e)} and {len(sk_a)}"
            )

    def _check_iv(self, iv: bytes | None) -> bytes:
        if iv is None:
            return os.urandom(self.iv_size)
        if len(iv) != self.iv_size:
            raise LocalProtocolError(f"{self.name} needs an IV of {self.iv_size} bytes")
        return bytes(iv)

    @staticmethod
    def _unpad(plaintext: bytes) -> bytes:
        pad_len = plaintext[-1]
        if pad_len >= len(plaintext):
            raise IntegrityCheckFailed("the Pad Length is larger than the decrypted data")
        return plaintext[: len(plaintext) - 1 - pad_len]

    @abstractmethod
    def encrypt(
        self, sk_e: bytes, sk_a: bytes, aad: bytes, plaintext: bytes, *, iv: bytes | None = None
    ) -> bytes:
        """Return ``IV | ciphertext | ICV`` protecting ``plaintext`` (the inner payloads).

        ``aad`` is the message from the IKE header to the end of the SK/SKF generic header
        with final lengths. ``iv`` is random when omitted; pass it only for known answers.
        """

    @abstractmethod
    def decrypt(self, sk_e: bytes, sk_a: bytes, aad: bytes, encrypted: bytes) -> bytes:
        """Return the inner payloads of ``IV | ciphertext | ICV``.

        A bad ICV, a too short or misaligned input or an impossible Pad Length raise
        ``IntegrityCheckFailed`` and nothing else.
        """


class _AeadCipher(Cipher):
    """AES-GCM-16 (RFC 5282) and ChaCha20-Poly1305 (RFC 7634) in IKEv2.

    The nonce is ``salt | IV`` with the salt the last 4 bytes of SK_e and an 8-byte IV
    sent in the clear (RFC 5282 3.1, RFC 7634 3).
    """

    __slots__ = ("_aead",)

    def __init__(
        self,
        name: str,
        encr_id: int,
        key_bits: int | None,
        aead: Callable[[bytes], AESGCM | ChaCha20Poly1305],
    ) -> None:
        self.name = name
        self.encr_id = encr_id
        self.key_bits = key_bits
        self.integ_id = IntegTransform.NONE
        self.key_size = encr_key_size(encr_id, key_bits)
        self.integ_key_size = 0
        self.iv_size = 8
        self.icv_size = 16
        self.block_size = 1
        self._aead = aead

    def encrypt(
        self, sk_e: bytes, sk_a: bytes, aad: bytes, plaintext: bytes, *, iv: bytes | None = None
    ) -> bytes:
        self._check_keys(sk_e, sk_a)
        iv = self._check_iv(iv)
        sealed = self._aead(sk_e[:-4]).encrypt(sk_e[-4:] + iv, self._pad(plaintext), aad)
        return iv + sealed

    def decrypt(self, sk_e: bytes, sk_a: bytes, aad: bytes, encrypted: bytes) -> bytes:
        self._check_keys(sk_e, sk_a)
        if len(encrypted) < self.iv_size + 1 + self.icv_size:
            raise IntegrityCheckFailed(f"{len(encrypted)} bytes are too short for {self.name}")
        iv = bytes(encrypted[: self.iv_size])
        try:
            plaintext = self._aead(sk_e[:-4]).decrypt(
                sk_e[-4:] + iv, encrypted[self.iv_size :], aad
            )
        except InvalidTag:
            raise IntegrityCheckFailed("the ICV does not verify") from None
        return self._unpad(plaintext)


class _CbcHmacCipher(Cipher):
    """AES-CBC (RFC 3602) with an HMAC-SHA2 ICV (RFC 4868) over the whole message.

    RFC 7296 3.14: the ICV covers everything from the IKE header to the end of the
    ciphertext, i.e. ``aad | IV | ciphertext``, truncated to the INTEG output length.
    """

    __slots__ = ("_hash",)

    def __init__(self, name: str, key_bits: int, integ_id: int) -> None:
        self.name = name
        self.encr_id = EncrTransform.AES_CBC
        self.key_bits = key_bits
        self.integ_id = integ_id
        self.key_size = key_bits // 8
        self.integ_key_size, self.icv_size, self._hash = _INTEG[integ_id]
        self.iv_size = 16
        self.block_size = 16

    def _icv(self, sk_a: bytes, aad: bytes, protected: bytes) -> bytes:
        mac = hmac.new(sk_a, aad, self._hash)
        mac.update(protected)
        return mac.digest()[: self.icv_size]

    def encrypt(
        self, sk_e: bytes, sk_a: bytes, aad: bytes, plaintext: bytes, *, iv: bytes | None = None
    ) -> bytes:
        self._check_keys(sk_e, sk_a)
        iv = self._check_iv(iv)
        encryptor = _BlockCipher(algorithms.AES(sk_e), modes.CBC(iv)).encryptor()
        protected = iv + encryptor.update(self._pad(plaintext)) + encryptor.finalize()
        return protected + self._icv(sk_a, aad, protected)

    def decrypt(self, sk_e: bytes, sk_a: bytes, aad: bytes, encrypted: bytes) -> bytes:
        self._check_keys(sk_e, sk_a)
        body = len(encrypted) - self.iv_size - self.icv_size
        if body < self.block_size or body % self.block_size:
            raise IntegrityCheckFailed(
                f"{len(encrypted)} bytes are not IV, whole AES blocks and ICV for {self.name}"
            )
        split = len(encrypted) - self.icv_size
        protected = bytes(encrypted[:split])
        # Verify before decrypting: no padding oracle, and a forged message costs one HMAC.
        if not hmac.compare_digest(self._icv(sk_a, aad, protected), encrypted[split:]):
            raise IntegrityCheckFailed("the ICV does not verify")
        decryptor = _BlockCipher(
            algorithms.AES(sk_e), modes.CBC(protected[: self.iv_size])
        ).decryptor()
        plaintext = decryptor.update(protected[self.iv_size :]) + decryptor.finalize()
        return self._unpad(plaintext)


def _build_ciphers() -> MappingProxyType[tuple[int, int | None, int], Cipher]:
    ciphers: dict[tuple[int, int | None, int], Cipher] = {}
    none = IntegTransform.NONE
    for bits in _AES_KEY_BITS:
        ciphers[EncrTransform.AES_GCM_16, bits, none] = _AeadCipher(
            f"aes{bits}gcm16", EncrTransform.AES_GCM_16, bits, AESGCM
        )
        for integ, integ_name in (
            (IntegTransform.HMAC_SHA2_256_128, "sha256"),
            (IntegTransform.HMAC_SHA2_384_192, "sha384"),
            (IntegTransform.HMAC_SHA2_512_256, "sha512"),
        ):
            ciphers[EncrTransform.AES_CBC, bits, integ] = _CbcHmacCipher(
                f"aes{bits}-{integ_name}", bits, integ
            )
    ciphers[EncrTransform.CHACHA20_POLY1305, None, none] = _AeadCipher(
        "chacha20poly1305", EncrTransform.CHACHA20_POLY1305, None, ChaCha20Poly1305
    )
    return MappingProxyType(ciphers)


_CIPHERS = _build_ciphers()
_AEAD_IDS = (EncrTransform.AES_GCM_16, EncrTransform.CHACHA20_POLY1305)


def get_cipher(encr_id: int, key_bits: int | None, integ_id: int) -> Cipher:
    """Return the shared :class:`Cipher` for an ENCR transform, key length and INTEG.

    Supported: AES_GCM_16 with 128/192/256-bit keys and ChaCha20-Poly1305 (no key length),
    both with INTEG NONE; AES_CBC with 128/192/256-bit keys and HMAC_SHA2_256_128,
    HMAC_SHA2_384_192 or HMAC_SHA2_512_256. Anything else raises ``ConfigurationError``.
    """
    cipher = _CIPHERS.get((encr_id, key_bits, integ_id))
    if cipher is not None:
        return cipher
    if encr_id in _AEAD_IDS:
        if integ_id != IntegTransform.NONE:
            raise ConfigurationError(
                f"AEAD encryption transform {encr_id} must not be combined with integrity "
                f"transform {integ_id}",
                field="integ",
            )
        encr_key_size(encr_id, key_bits)  # raises the precise key length error
    elif encr_id == EncrTransform.AES_CBC:
        encr_key_size(encr_id, key_bits)
        if integ_id == IntegTransform.NONE:
            raise ConfigurationError("AES-CBC needs an integrity transform", field="integ")
        raise ConfigurationError(f"integrity transform {integ_id} is not supported", field="integ")
    raise ConfigurationError(
        f"encryption transform {encr_id} is not supported for IKE", field="encr"
    )
