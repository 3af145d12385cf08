"""AUTH signatures: RFC 7427 Digital Signature (method 14) and the older methods.

RFC 7427 3: the Authentication Data of method 14 is ``len(AlgorithmIdentifier) (1 byte) |
AlgorithmIdentifier (DER) | signature``. The signer picks a hash the verifier announced in
SIGNATURE_HASH_ALGORITHMS (RFC 7427 4). Ed25519/Ed448 (RFC 8420) and ML-DSA
(draft-ietf-ipsecme-ikev2-pqc-auth) sign the octets themselves and go with the
"Identity" hash (5). ML-DSA runs in pure mode with an empty context string.

The older methods are accepted from peers that use them: RSA (1, RSASSA-PKCS1-v1_5 with
SHA-1, RFC 7296 2.15) and ECDSA 9/10/11 (RFC 4754: SHA-256/384/512 on P-256/384/521, the
signature as the fixed-length ``r | s``). We send them only when the peer announced no
hash algorithms at all, as strongSwan does.

No IKE state here: every function takes the key, the AUTH bytes and the signed octets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..constants import AuthMethod
from ..errors import IkeError

# --- IKEv2 hash algorithm registry (RFC 7427 7, RFC 8420 2) ------------------------------

HASH_SHA1 = 1
HASH_SHA256 = 2
HASH_SHA384 = 3
HASH_SHA512 = 4
HASH_IDENTITY = 5
"""RFC 8420 2: the "Identity" hash, for algorithms that take the message itself."""

SUPPORTED_HASHES = (HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_IDENTITY)
"""What pqike announces in SIGNATURE_HASH_ALGORITHMS (strongSwan announces the same set
plus SHA-1 when it is built with EdDSA and ML-DSA support)."""

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    HASH_SHA1: hashes.SHA1,
    HASH_SHA256: hashes.SHA256,
    HASH_SHA384: hashes.SHA384,
    HASH_SHA512: hashes.SHA512,
}

PublicKey = Any
"""A ``cryptography`` public key of one of the kinds :func:`key_kind` knows."""
PrivateKey = Any


class SignatureError(IkeError):
    """An AUTH signature cannot be made or does not verify; the message says why."""


# --- DER, just enough for AlgorithmIdentifiers -------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes((n,))
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes((0x80 | len(raw),)) + raw
    return bytes((tag,)) + length + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


_NULL = b"\x05\x00"


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """``(tag, content, next position)`` of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise SignatureError("the AlgorithmIdentifier ends early")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 2 or pos + count > len(data):
            raise SignatureError("the AlgorithmIdentifier has a bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(data):
        raise SignatureError("the AlgorithmIdentifier ends early")
    return tag, data[pos : pos + length], pos + length


OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
_PSS_HASH = {HASH_SHA256: OID_SHA256, HASH_SHA384: OID_SHA384, HASH_SHA512: OID_SHA512}


def _pss_alg_id(hash_id: int) -> bytes:
    """RSASSA-PSS-params (RFC 4055 3.1) with MGF1 over the same hash and a salt as long
    as the hash, as RFC 7427 A.4.3 shows and strongSwan sends."""
    h = _seq(_oid(_PSS_HASH[hash_id]), _NULL)
    salt = _HASHES[hash_id]().digest_size
    params = _seq(
        _tlv(0xA0, h),
        _tlv(0xA1, _seq(_oid(OID_MGF1), h)),
        _tlv(0xA2, _tlv(0x02, bytes((salt,)))),
    )
    return _seq(_oid(OID_RSASSA_PSS), params)


# --- schemes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """One signature algorithm as RFC 7427 names it in AUTH.

    ``alg_id`` is the DER AlgorithmIdentifier sent in the AUTH payload, ``hash_id`` the
    IKEv2 hash it needs the verifier to have announced, ``kind`` the key kind that signs.
    """

    name: str
    alg_id: bytes
    hash_id: int
    kind: str


def _fixed(name: str, oid: str, hash_id: int, kind: str, *, null: bool = False) -> Scheme:
    return Scheme(name, _seq(_oid(oid), _NULL) if null else _seq(_oid(oid)), hash_id, kind)


SCHEMES: tuple[Scheme, ...] = (
    # RFC 7427 A.3: ecdsa-with-SHA*, parameters absent (RFC 5758 3.2).
    _fixed("ecdsa-with-sha256", "1.2.840.10045.4.3.2", HASH_SHA256, "ecdsa"),
    _fixed("ecdsa-with-sha384", "1.2.840.10045.4.3.3", HASH_SHA384, "ecdsa"),
    _fixed("ecdsa-with-sha512", "1.2.840.10045.4.3.4", HASH_SHA512, "ecdsa"),
    # RFC 7427 A.1: sha*WithRSAEncryption, parameters NULL (RFC 4055 5).
    _fixed("sha256-rsa", "1.2.840.113549.1.1.11", HASH_SHA256, "rsa", null=True),
    _fixed("sha384-rsa", "1.2.840.113549.1.1.12", HASH_SHA384, "rsa", null=True),
    _fixed("sha512-rsa", "1.2.840.113549.1.1.13", HASH_SHA512, "rsa", null=True),
    Scheme("rsa-pss-sha256", _pss_alg_id(HASH_SHA256), HASH_SHA256, "rsa"),
    Scheme("rsa-pss-sha384", _pss_alg_id(HASH_SHA384), HASH_SHA384, "rsa"),
    Scheme("rsa-pss-sha512", _pss_alg_id(HASH_SHA512), HASH_SHA512, "rsa"),
    # RFC 8420 3 / RFC 8410 3: id-Ed25519, id-Ed448, parameters absent.
    _fixed("ed25519", "1.3.101.112", HASH_IDENTITY, "ed25519"),
    _fixed("ed448", "1.3.101.113", HASH_IDENTITY, "ed448"),
    # draft-ietf-ipsecme-ikev2-pqc-auth 5 -> RFC 9881 2: id-ml-dsa-44/65/87
    # (2.16.840.1.101.3.4.3.17/18/19), parameters absent:
    # 30 0b 06 09 60 86 48 01 65 03 04 03 11 (12, 13).
    _fixed("mldsa44", "2.16.840.1.101.3.4.3.17", HASH_IDENTITY, "mldsa44"),
    _fixed("mldsa65", "2.16.840.1.101.3.4.3.18", HASH_IDENTITY, "mldsa65"),
    _fixed("mldsa87", "2.16.840.1.101.3.4.3.19", HASH_IDENTITY, "mldsa87"),
)
SCHEME_BY_NAME = {s.name: s for s in SCHEMES}

_EC_LEGACY = {
    # RFC 4754 / RFC 7296 3.8: method -> (curve name, hash id)
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", HASH_SHA256),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", HASH_SHA384),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", HASH_SHA512),
}
_EC_HASH = {"secp256r1": HASH_SHA256, "secp384r1": HASH_SHA384, "secp521r1": HASH_SHA512}


def key_kind(key: PublicKey | PrivateKey) -> str:
    """``ecdsa``, ``rsa``, ``ed25519``, ``ed448``, ``mldsa44``/``65``/``87``."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "ed448"
    for size in (44, 65, 87):
        pub = getattr(mldsa, f"MLDSA{size}PublicKey")
        priv = getattr(mldsa, f"MLDSA{size}PrivateKey")
        if isinstance(key, pub | priv):
            return f"mldsa{size}"
    raise SignatureError(f"{type(key).__name__} keys cannot sign IKE AUTH payloads")


def choose(key: PrivateKey, peer_hashes: frozenset[int], *, rsa_pss: bool = False):
    """The AUTH method and scheme our ``key`` signs with for a peer that announced
    ``peer_hashes``: ``(14, Scheme)``, or ``(legacy method, None)`` when the peer announced
    none (RFC 7427 4). Raises ``SignatureError`` when nothing fits."""
    kind = key_kind(key)
    if kind == "ecdsa":
        curve = key.curve.name
        want = _EC_HASH.get(curve)
        if want is None:
            raise SignatureError(f"ECDSA on {curve} is not usable in IKEv2")
        if not peer_hashes:
            legacy = next(m for m, (c, _) in _EC_LEGACY.items() if c == curve)
            return legacy, None
        # The hash that matches the curve first (strongSwan does the same), then any other.
        order = [want] + [h for h in (HASH_SHA256, HASH_SHA384, HASH_SHA512) if h != want]
        for h in order:
            if h in peer_hashes:
                return AuthMethod.DIGITAL_SIGNATURE, next(
                    s for s in SCHEMES if s.kind == "ecdsa" and s.hash_id == h
                )
        raise SignatureError("the peer announced no SHA-2 hash for ECDSA")
    if kind == "rsa":
        if not peer_hashes:
            return AuthMethod.RSA_DIGITAL_SIGNATURE, None
        for h in (HASH_SHA256, HASH_SHA384, HASH_SHA512):
            if h in peer_hashes:
                name = f"rsa-pss-sha{_bits(h)}" if rsa_pss else f"sha{_bits(h)}-rsa"
                return AuthMethod.DIGITAL_SIGNATURE, SCHEME_BY_NAME[name]
        raise SignatureError("the peer announced no SHA-2 hash for RSA")
    # EdDSA (RFC 8420 2) and ML-DSA (draft-ietf-ipsecme-ikev2-pqc-auth 3.2.1): only
    # with a receiver that announced the Identity hash.
    if HASH_IDENTITY not in peer_hashes:
        raise SignatureError(f"{kind} needs the peer to announce the Identity hash (5)")
    return AuthMethod.DIGITAL_SIGNATURE, SCHEME_BY_NAME[kind]


def _bits(hash_id: int) -> int:
    return {HASH_SHA256: 256, HASH_SHA384: 384, HASH_SHA512: 512}[hash_id]


def sign(key: PrivateKey, method: int, scheme: Scheme | None, octets: bytes) -> bytes:
    """The Authentication Data of an AUTH payload of ``method`` over ``octets``."""
    if method == AuthMethod.DIGITAL_SIGNATURE:
        assert scheme is not None
        sig = _sign_scheme(key, scheme, octets)
        return bytes((len(scheme.alg_id),)) + scheme.alg_id + sig
    if method == AuthMethod.RSA_DIGITAL_SIGNATURE:
        return key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    if method in _EC_LEGACY:
        _, h = _EC_LEGACY[AuthMethod(method)]
        r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(_HASHES[h]())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise SignatureError(f"AUTH method {method} is not a signature method")


def _sign_scheme(key: PrivateKey, scheme: Scheme, octets: bytes) -> bytes:
    kind = key_kind(key)
    if kind != scheme.kind:
        raise SignatureError(f"a {kind} key cannot sign {scheme.name}")
    if kind == "ecdsa":
        # RFC 7427 3: ECDSA signatures in method 14 are the DER Ecdsa-Sig-Value.
        return key.sign(octets, ec.ECDSA(_HASHES[scheme.hash_id]()))
    if kind == "rsa":
        h = _HASHES[scheme.hash_id]()
        if scheme.name.startswith("rsa-pss"):
            return key.sign(octets, padding.PSS(padding.MGF1(h), h.digest_size), h)
        return key.sign(octets, padding.PKCS1v15(), h)
    # Ed25519/Ed448 and ML-DSA take the octets whole; ML-DSA with the empty context
    # (draft-ietf-ipsecme-ikev2-pqc-auth 3.2).
    return key.sign(octets)


def parse_alg_id(alg_id: bytes) -> tuple[Scheme, int | None]:
    """The scheme an AlgorithmIdentifier names, and for RSASSA-PSS its salt length.

    Fixed identifiers must match byte for byte (an ML-DSA or EdDSA identifier with
    parameters is refused, RFC 9881 2 / RFC 8410 3: parameters absent); RSASSA-PSS
    parameters are read (RFC 4055 3.1) and must use MGF1 with the same hash.
    """
    for s in SCHEMES:
        if s.alg_id == alg_id and not s.name.startswith("rsa-pss"):
            return s, None
    tag, body, end = _read_tlv(alg_id, 0)
    if tag != 0x30 or end != len(alg_id):
        raise SignatureError("the AlgorithmIdentifier is not one DER SEQUENCE")
    tag, oid, pos = _read_tlv(body, 0)
    if tag != 0x06:
        raise SignatureError("the AlgorithmIdentifier does not start with an OID")
    if _tlv(0x06, oid) != _oid(OID_RSASSA_PSS):
        raise SignatureError(f"unknown signature AlgorithmIdentifier {alg_id.hex()}")
    hash_oid, mgf_hash, salt = OID_SHA1_MARK, OID_SHA1_MARK, 20  # RFC 4055 defaults
    if pos < len(body):
        tag, params, _ = _read_tlv(body, pos)
        if tag != 0x30:
            raise SignatureError("RSASSA-PSS parameters are not a SEQUENCE")
        p = 0
        while p < len(params):
            tag, field, p = _read_tlv(params, p)
            if tag == 0xA0:
                hash_oid = _first_oid(field)
            elif tag == 0xA1:
                _, mgf, _ = _read_tlv(field, 0)
                _, mgf_oid, q = _read_tlv(mgf, 0)
                if _tlv(0x06, mgf_oid) != _oid(OID_MGF1):
                    raise SignatureError("RSASSA-PSS with a mask function other than MGF1")
                _, mgf_params, _ = _read_tlv(mgf, q)
                mgf_hash = _first_oid(_tlv(0x30, mgf_params))
            elif tag == 0xA2:
                _, num, _ = _read_tlv(field, 0)
                salt = int.from_bytes(num, "big")
            elif tag == 0xA3:
                pass  # trailerField: only 1 exists
    if hash_oid != mgf_hash:
        raise SignatureError("RSASSA-PSS with different message and MGF1 hashes")
    by_oid = {_oid(v): k for k, v in _PSS_HASH.items()}
    if hash_oid not in by_oid:
        raise SignatureError("RSASSA-PSS with a hash other than SHA-2")
    return SCHEME_BY_NAME[f"rsa-pss-sha{_bits(by_oid[hash_oid])}"], salt


OID_SHA1_MARK = _oid("1.3.14.3.2.26")


def _first_oid(field: bytes) -> bytes:
    _, alg, _ = _read_tlv(field, 0)
    tag, oid, _ = _read_tlv(alg, 0)
    if tag != 0x06:
        raise SignatureError("a hash AlgorithmIdentifier without an OID")
    return _tlv(0x06, oid)


def verify(
    public_key: PublicKey, method: int, data: bytes, octets: bytes, announced: frozenset[int]
) -> str:
    """Check the peer's AUTH (``method``, Authentication Data ``data``) over ``octets``
    with its certificate's ``public_key``. ``announced`` are the hashes we announced:
    a method 14 signature must use one of them (RFC 7427 4). Returns the scheme's name;
    raises ``SignatureError`` naming what is wrong."""
    kind = key_kind(public_key)
    try:
        if method == AuthMethod.DIGITAL_SIGNATURE:
            return _verify_14(public_key, kind, data, octets, announced)
        if method == AuthMethod.RSA_DIGITAL_SIGNATURE:
            if kind != "rsa":
                raise SignatureError(f"AUTH method 1 (RSA) with a {kind} certificate")
            public_key.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())
            return "sha1-rsa"
        if method in _EC_LEGACY:
            curve, h = _EC_LEGACY[AuthMethod(method)]
            if kind != "ecdsa" or public_key.curve.name != curve:
                raise SignatureError(f"AUTH method {method} ({curve}) with a {kind} certificate")
            size = (public_key.curve.key_size + 7) // 8
            if len(data) != 2 * size:
                raise SignatureError(f"an ECDSA {curve} signature is {2 * size} bytes")
            der = encode_dss_signature(
                int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big")
            )
            public_key.verify(der, octets, ec.ECDSA(_HASHES[h]()))
            return f"ecdsa-{curve}"
    except InvalidSignature:
        raise SignatureError("the signature does not verify") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"the signature cannot be checked: {exc}") from None
    raise SignatureError(f"AUTH method {method} is not a signature method pqike accepts")


def _verify_14(key: PublicKey, kind: str, data: bytes, octets: bytes, announced) -> str:
    if not data or len(data) < 1 + data[0]:
        raise SignatureError("the AUTH data is shorter than its AlgorithmIdentifier")
    alg_id, sig = data[1 : 1 + data[0]], data[1 + data[0] :]
    scheme, salt = parse_alg_id(alg_id)
    if scheme.kind != kind:
        raise SignatureError(
            f"the AlgorithmIdentifier names {scheme.name}, the certificate has a {kind} key"
        )
    if scheme.hash_id not in announced:
        raise SignatureError(f"{scheme.name} uses a hash we did not announce")
    if kind == "ecdsa":
        key.verify(sig, octets, ec.ECDSA(_HASHES[scheme.hash_id]()))
    elif kind == "rsa":
        h = _HASHES[scheme.hash_id]()
        if salt is not None:
            key.verify(sig, octets, padding.PSS(padding.MGF1(h), salt), h)
        else:
            key.verify(sig, octets, padding.PKCS1v15(), h)
    else:
        key.verify(sig, octets)
    return scheme.name
