"""IKE SA and Child SA key derivation (RFC 7296 2.13, 2.14, 2.17, 2.18; RFC 9370 2.2.2).

Everything here is a pure function of its inputs: the caller decides which nonces, SPIs
and shared secrets apply (for example the IKE_SA_INIT nonces for every IKE_INTERMEDIATE
update, RFC 9370 2.2.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .prf import Prf


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """The seven IKE SA keys, in the order prf+ produces them (RFC 7296 2.14)."""

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes
    skeyseed: bytes = field(default=b"", compare=False, repr=False)
    """The SKEYSEED these keys were expanded from (RFC 7296 2.14), kept for the secrets
    transcript; not part of the keys' identity."""


@dataclass(frozen=True, slots=True)
class ChildKeys:
    """Child SA keying material, in KEYMAT order (RFC 7296 2.17).

    ``encr_*`` include the salt where the ESP transform takes one; ``integ_*`` are empty
    for AEAD transforms.
    """

    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes


def skeyseed(prf: Prf, ni: bytes, nr: bytes, shared_secret: bytes) -> bytes:
    """Return ``SKEYSEED = prf(Ni | Nr, g^ir)`` for IKE_SA_INIT (RFC 7296 2.14).

    The whole nonces are used: the 8-byte truncation of 2.14 applies only to the
    AES-XCBC/CMAC PRFs, which this package does not offer.
    """
    return prf(ni + nr, shared_secret)


def skeyseed_additional(
    prf: Prf,
    sk_d: bytes,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    *,
    additional_secrets: Sequence[bytes] = (),
) -> bytes:
    """Return ``prf(SK_d, SK | Ni | Nr [| SK(1) | ... | SK(n)])``.

    With no ``additional_secrets`` this is the IKE_INTERMEDIATE key update of RFC 9370
    2.2.2 (``SK_d`` of the previous round, ``SK(n)`` of this round, IKE_SA_INIT nonces)
    and the IKE SA rekey of RFC 7296 2.18 (old SA's ``SK_d``, the new ``g^ir``).
    ``additional_secrets`` are the ADDKE results of a rekey with multiple key exchanges,
    which RFC 9370 2.2.4 appends after the nonces.
    """
    return prf(sk_d, b"".join((shared_secret, ni, nr, *additional_secrets)))


def derive_ike_keys(
    prf: Prf,
    skeyseed: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> IkeKeys:
    """Expand SKEYSEED into the seven IKE SA keys (RFC 7296 2.14).

    ``{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)``
    with SK_d and SK_p* of ``prf.key_size`` bytes, SK_a* of ``integ_key_size`` (0 for AEAD)
    and SK_e* of ``encr_key_size`` (including the salt of AES-GCM and ChaCha20-Poly1305).
    """
    d = prf.key_size
    a = integ_key_size
    e = encr_key_size
    stream = prf.plus(skeyseed, b"".join((ni, nr, spi_i, spi_r)), 3 * d + 2 * a + 2 * e)
    i = d
    sk_ai = stream[i : i + a]
    i += a
    sk_ar = stream[i : i + a]
    i += a
    sk_ei = stream[i : i + e]
    i += e
    sk_er = stream[i : i + e]
    i += e
    return IkeKeys(
        sk_d=stream[:d],
        sk_ai=sk_ai,
        sk_ar=sk_ar,
        sk_ei=sk_ei,
        sk_er=sk_er,
        sk_pi=stream[i : i + d],
        sk_pr=stream[i + d : i + 2 * d],
        skeyseed=skeyseed,
    )


def initial_ike_keys(
    prf: Prf,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> IkeKeys:
    """The IKE SA keys after IKE_SA_INIT: :func:`skeyseed` then :func:`derive_ike_keys`
    (RFC 7296 2.14)."""
    return derive_ike_keys(
        prf,
        skeyseed(prf, ni, nr, shared_secret),
        ni,
        nr,
        spi_i,
        spi_r,
        encr_key_size=encr_key_size,
        integ_key_size=integ_key_size,
    )


def updated_ike_keys(
    prf: Prf,
    previous: IkeKeys,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> IkeKeys:
    """The IKE SA keys after one more key exchange in IKE_INTERMEDIATE (RFC 9370 2.2.2).

    ``SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)`` with the IKE_SA_INIT nonces and
    SPIs, then prf+ as in RFC 7296 2.14.
    """
    return derive_ike_keys(
        prf,
        skeyseed_additional(prf, previous.sk_d, shared_secret, ni, nr),
        ni,
        nr,
        spi_i,
        spi_r,
        encr_key_size=encr_key_size,
        integ_key_size=integ_key_size,
    )


def ike_key_schedule(
    prf: Prf,
    shared_secrets: Sequence[bytes],
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> list[IkeKeys]:
    """The keys of every epoch of an IKE SA's handshake, one per shared secret.

    ``shared_secrets`` are the results of the IKE_SA_INIT key exchange, then of each
    additional one in IKE_INTERMEDIATE, in order (RFC 9370 2.2.2); the last keys protect
    IKE_AUTH and the IKE SA.
    """
    sizes = {"encr_key_size": encr_key_size, "integ_key_size": integ_key_size}
    if not shared_secrets:
        return []
    keys = initial_ike_keys(prf, shared_secrets[0], ni, nr, spi_i, spi_r, **sizes)
    epochs = [keys]
    for secret in shared_secrets[1:]:
        keys = updated_ike_keys(prf, keys, secret, ni, nr, spi_i, spi_r, **sizes)
        epochs.append(keys)
    return epochs


def rekeyed_ike_keys(
    old_prf: Prf,
    old_sk_d: bytes,
    prf: Prf,
    shared_secrets: Sequence[bytes],
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> IkeKeys:
    """The keys of an IKE SA made by rekeying (RFC 7296 2.18, RFC 9370 2.2.4).

    ``SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))`` with the old SA's
    PRF, then prf+ with the new SA's ``prf`` over the rekey's nonces and the *new* SPIs.
    ``shared_secrets`` are SK(0) of the KE payload and those of the ADDKE rounds in order.
    """
    seed = skeyseed_additional(
        old_prf, old_sk_d, shared_secrets[0], ni, nr, additional_secrets=shared_secrets[1:]
    )
    return derive_ike_keys(
        prf,
        seed,
        ni,
        nr,
        spi_i,
        spi_r,
        encr_key_size=encr_key_size,
        integ_key_size=integ_key_size,
    )


def derive_child_keys(
    prf: Prf,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
    shared_secret: bytes = b"",
    additional_secrets: Sequence[bytes] = (),
) -> ChildKeys:
    """Derive Child SA keys: ``KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr)`` (RFC 7296 2.17).

    ``shared_secret`` is the CREATE_CHILD_SA key exchange result (empty without PFS);
    ``additional_secrets`` are ADDKE results, appended after the nonces (RFC 9370 2.2.4).
    KEYMAT is taken as encr_i, integ_i, encr_r, integ_r: the initiator-to-responder keys
    first (RFC 7296 2.17).
    """
    e = encr_key_size
    a = integ_key_size
    seed = b"".join((shared_secret, ni, nr, *additional_secrets))
    keymat = prf.plus(sk_d, seed, 2 * (e + a))
    return ChildKeys(
        encr_i=keymat[:e],
        integ_i=keymat[e : e + a],
        encr_r=keymat[e + a : 2 * e + a],
        integ_r=keymat[2 * e + a :],
    )


def ppk_keys(prf: Prf, keys: IkeKeys, ppk: bytes) -> IkeKeys:
    """RFC 8784 3: mix a post-quantum preshared key into SK_d, SK_pi and SK_pr.

    ``SK_d' = prf+(PPK, SK_d)``, ``SK_pi' = prf+(PPK, SK_pi)``, ``SK_pr' = prf+(PPK,
    SK_pr)``, each as long as the key it replaces; SK_a and SK_e stay as they are.
    """
    return IkeKeys(
        sk_d=prf.plus(ppk, keys.sk_d, len(keys.sk_d)),
        sk_ai=keys.sk_ai,
        sk_ar=keys.sk_ar,
        sk_ei=keys.sk_ei,
        sk_er=keys.sk_er,
        sk_pi=prf.plus(ppk, keys.sk_pi, len(keys.sk_pi)),
        sk_pr=prf.plus(ppk, keys.sk_pr, len(keys.sk_pr)),
    )


PPK_CONFIRMATION_SIZE = 8
"""RFC 9867 (PPK_IDENTITY_KEY): the PPK Confirmation is the first 8 octets of the prf
output (libreswan's ``PPK_CONFIRMATION_LEN``)."""


def ppk_confirmation(
    prf: Prf, ppk: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> bytes:
    """RFC 9867 (PPK_IDENTITY_KEY): ``prf(PPK, Ni | Nr | SPIi | SPIr)``, first 8 octets.

    It proves to the responder, before any key is changed, that the initiator holds the
    PPK it names: a responder with the same PPK_ID but another key sees a mismatch and
    treats the PPK as unknown instead of failing later at IKE_AUTH. The input binds it to
    this IKE SA (IKE_SA_INIT nonces and SPIs), so a captured value is useless elsewhere.
    """
    return prf(ppk, b"".join((ni, nr, spi_i, spi_r)))[:PPK_CONFIRMATION_SIZE]


def ppk_intermediate_keys(
    prf: Prf,
    keys: IkeKeys,
    ppk: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    encr_key_size: int,
    integ_key_size: int,
) -> IkeKeys:
    """RFC 9867: mix a PPK into *every* IKE SA key in IKE_INTERMEDIATE.

    ``SKEYSEED' = prf+(PPK, SK_d)`` (as long as the PRF's key, i.e. its first block), then
    ``{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED', Ni | Nr |
    SPIi | SPIr)`` with the IKE_SA_INIT nonces and SPIs, exactly as RFC 7296 2.14 expands
    a SKEYSEED. ``keys`` are those after the last additional key exchange (RFC 9370
    2.2.2), so the PPK goes in last. Unlike RFC 8784 (:func:`ppk_keys`), SK_e and SK_a
    change too: IKE_AUTH and everything after it are protected by PPK-derived keys.
    """
    seed = prf.plus(ppk, keys.sk_d, prf.key_size)
    return derive_ike_keys(
        prf,
        seed,
        ni,
        nr,
        spi_i,
        spi_r,
        encr_key_size=encr_key_size,
        integ_key_size=integ_key_size,
    )
