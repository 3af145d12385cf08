"""AUTH signatures (RFC 7427, RFC 8420, draft-ietf-ipsecme-ikev2-pqc-auth) and their
AlgorithmIdentifiers, against the bytes the documents print."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pqike.constants import AuthMethod
from pqike.crypto import signature as sig
from pqike.pki import generate_key

ALL = frozenset(sig.SUPPORTED_HASHES)
OCTETS = b"InitiatorSignedOctets" * 20

# RFC 9881 2 (what draft-ietf-ipsecme-ikev2-pqc-auth points to): id-ml-dsa-44/65/87 are
# 2.16.840.1.101.3.4.3.17/18/19 with parameters absent. The draft's appendix "ASN.1
# Objects" prints them: "Name = id-ml-dsa-44, oid = 2.16.840.1.101.3.4.3.17 /
# Length = 13 / 0000: 300b 0609 6086 4801 6503 0403 11" (ML-DSA-65: ... 0403 12,
# ML-DSA-87: ... 0403 13).
MLDSA_ALG_IDS = {
    "mldsa44": "300b0609608648016503040311",
    "mldsa65": "300b0609608648016503040312",
    "mldsa87": "300b0609608648016503040313",
}
# RFC 7427 Appendix A: the DER the RFC prints.
RFC7427_ALG_IDS = {
    "sha256-rsa": "300d06092a864886f70d01010b0500",  # A.1.2
    "sha384-rsa": "300d06092a864886f70d01010c0500",  # A.1.3
    "sha512-rsa": "300d06092a864886f70d01010d0500",  # A.1.4
    "ecdsa-with-sha256": "300a06082a8648ce3d040302",  # A.3.1
    "ecdsa-with-sha384": "300a06082a8648ce3d040303",  # A.3.2
    "ecdsa-with-sha512": "300a06082a8648ce3d040304",  # A.3.3
    # A.4.3: RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt 32
    "rsa-pss-sha256": "304106092a864886f70d01010a3034a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120",
    "ed25519": "300506032b6570",  # RFC 8420 3
    "ed448": "300506032b6571",
}


@pytest.mark.parametrize("name", sorted({**MLDSA_ALG_IDS, **RFC7427_ALG_IDS}))
def test_algorithm_identifiers_are_the_published_bytes(name):
    expected = {**MLDSA_ALG_IDS, **RFC7427_ALG_IDS}[name]
    assert sig.SCHEME_BY_NAME[name].alg_id.hex() == expected
    assert sig.parse_alg_id(bytes.fromhex(expected))[0].name == name


KEYS = ["p256", "p384", "p521", "ed25519", "ed448", "rsa2048", "mldsa44", "mldsa65", "mldsa87"]


@pytest.fixture(scope="module")
def keys():
    return {k: generate_key(k) for k in KEYS}


@pytest.mark.parametrize("kind", KEYS)
def test_every_key_signs_method_14_and_a_tampered_signature_is_refused(keys, kind):
    key = keys[kind]
    method, scheme = sig.choose(key, ALL)
    assert method == AuthMethod.DIGITAL_SIGNATURE
    data = sig.sign(key, method, scheme, OCTETS)
    # RFC 7427 3: length of the AlgorithmIdentifier, the AlgorithmIdentifier, signature.
    assert data[0] == len(scheme.alg_id) and data[1 : 1 + data[0]] == scheme.alg_id
    assert sig.verify(key.public_key(), method, data, OCTETS, ALL) == scheme.name
    tampered = data[:-1] + bytes((data[-1] ^ 1,))
    with pytest.raises(sig.SignatureError, match=r"does not verify|cannot be checked"):
        sig.verify(key.public_key(), method, tampered, OCTETS, ALL)
    with pytest.raises(sig.SignatureError):
        sig.verify(key.public_key(), method, data, OCTETS + b"x", ALL)


def test_ml_dsa_is_pure_mode_with_an_empty_context(keys):
    # draft-ietf-ipsecme-ikev2-pqc-auth, "Handling PQC Signatures in IKEv2": the signed
    # octets go through the Identity hash "and then passes it into the PQC signer as the
    # message to be signed (with empty context string, if applicable)"; pure mode only.
    # A signature made with a context does not verify as ours.
    key = keys["mldsa65"]
    data = sig.sign(key, AuthMethod.DIGITAL_SIGNATURE, sig.SCHEME_BY_NAME["mldsa65"], OCTETS)
    key.public_key().verify(data[14:], OCTETS)  # cryptography's pure ML-DSA, empty context
    with_context = key.sign(OCTETS, b"ike")
    forged = data[:14] + with_context
    with pytest.raises(sig.SignatureError):
        sig.verify(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, forged, OCTETS, ALL)


def test_ml_dsa_needs_the_identity_hash_announced(keys):
    with pytest.raises(sig.SignatureError, match="Identity hash"):
        sig.choose(keys["mldsa44"], frozenset({sig.HASH_SHA256}))
    data = sig.sign(
        keys["mldsa44"], AuthMethod.DIGITAL_SIGNATURE, sig.SCHEME_BY_NAME["mldsa44"], OCTETS
    )
    with pytest.raises(sig.SignatureError, match="did not announce"):
        sig.verify(keys["mldsa44"].public_key(), 14, data, OCTETS, frozenset({sig.HASH_SHA256}))


def test_a_mismatched_algorithm_identifier_is_refused(keys):
    # An ML-DSA-65 signature labelled ML-DSA-44, for an ML-DSA-65 certificate.
    data = sig.sign(keys["mldsa65"], 14, sig.SCHEME_BY_NAME["mldsa65"], OCTETS)
    relabelled = bytes((13,)) + bytes.fromhex(MLDSA_ALG_IDS["mldsa44"]) + data[14:]
    with pytest.raises(sig.SignatureError, match="names mldsa44, the certificate has a mldsa65"):
        sig.verify(keys["mldsa65"].public_key(), 14, relabelled, OCTETS, ALL)
    # An ML-DSA identifier with (NULL) parameters is not the draft's identifier.
    alg = bytes.fromhex("300d0609608648016503040312" + "0500")
    alg = bytes((0x30, len(alg) - 2)) + alg[2:]
    with pytest.raises(sig.SignatureError):
        sig.verify(
            keys["mldsa65"].public_key(), 14, bytes((len(alg),)) + alg + data[14:], OCTETS, ALL
        )


def test_a_wrong_key_type_for_the_auth_method_is_refused(keys):
    ecdsa = sig.sign(keys["p256"], AuthMethod.ECDSA_SHA256_P256, None, OCTETS)
    with pytest.raises(sig.SignatureError, match="with a mldsa65 certificate"):
        sig.verify(keys["mldsa65"].public_key(), AuthMethod.ECDSA_SHA256_P256, ecdsa, OCTETS, ALL)
    with pytest.raises(sig.SignatureError, match="with a mldsa44 certificate"):
        sig.verify(keys["mldsa44"].public_key(), 1, ecdsa, OCTETS, ALL)
    with pytest.raises(sig.SignatureError, match=r"secp256r1"):
        sig.verify(keys["p384"].public_key(), AuthMethod.ECDSA_SHA256_P256, ecdsa, OCTETS, ALL)


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("p256", AuthMethod.ECDSA_SHA256_P256),
        ("p384", AuthMethod.ECDSA_SHA384_P384),
        ("p521", AuthMethod.ECDSA_SHA512_P521),
        ("rsa2048", AuthMethod.RSA_DIGITAL_SIGNATURE),
    ],
)
def test_the_older_methods_for_a_peer_that_announced_no_hashes(keys, kind, method):
    key = keys[kind]
    assert sig.choose(key, frozenset()) == (method, None)
    data = sig.sign(key, method, None, OCTETS)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 4754 7: r | s, each as long as the curve's order.
        assert len(data) == 2 * ((key.curve.key_size + 7) // 8)
    assert sig.verify(key.public_key(), method, data, OCTETS, ALL)


def test_rsa_pss_and_pkcs1_are_both_accepted(keys):
    key = keys["rsa2048"]
    for pss in (True, False):
        method, scheme = sig.choose(key, ALL, rsa_pss=pss)
        assert scheme.name == ("rsa-pss-sha256" if pss else "sha256-rsa")
        data = sig.sign(key, method, scheme, OCTETS)
        assert sig.verify(key.public_key(), method, data, OCTETS, ALL) == scheme.name


def test_garbage_auth_data_is_refused_not_crashing(keys):
    for data in (b"", b"\x05", b"\x30" + b"\x00" * 5, b"\x02\x30\x81", bytes(range(40))):
        with pytest.raises(sig.SignatureError):
            sig.verify(keys["ed25519"].public_key(), 14, data, OCTETS, ALL)
