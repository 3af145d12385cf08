"""Certificates: loading, CERTREQ data, chain validation and identities; ``pqike.pki``."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from pqike.constants import IdType
from pqike.crypto.certs import (
    CertificateError,
    Credential,
    TrustStore,
    identity_matches,
    load_certificates,
    load_private_key,
    spki_sha1,
)
from pqike.errors import ConfigurationError
from pqike.pki import KEY_TYPES, make_pki

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), ["moon.test", "sun.test"], intermediates=2)


def test_a_chain_with_two_intermediates_validates_up_to_the_ca(pki):
    trust = TrustStore.load(pki.ca_path)
    cred = Credential.load(pki.entities["moon.test"].key_path, pki.entities["moon.test"].cert_path)
    assert len(cred.chain) == 3
    path = trust.validate(cred.chain, NOW)
    assert [c.subject.rfc4514_string() for c in path][-1].startswith("CN=pqike test CA")
    assert len(path) == 4


def test_an_intermediate_in_the_trust_store_completes_a_chain_the_peer_left_short(pki):
    """RFC 7296 3.6 lets a peer send only its end-entity certificate; an intermediate
    we were given (``cacerts``) then closes the path, as strongSwan's trusted
    intermediates do."""
    chain = pki.chain("moon.test")
    lowest = chain[1]
    path = TrustStore((pki.ca, lowest)).validate(chain[:1], NOW)
    assert path == [chain[0], lowest]
    with pytest.raises(CertificateError, match="no trusted CA issued"):
        TrustStore((pki.ca,)).validate(chain[:1], NOW)


def test_failures_name_the_certificate_and_the_reason(pki, tmp_path):
    chain = pki.chain("moon.test")
    other = make_pki(tmp_path / "other", ["x.test"], intermediates=0)
    with pytest.raises(CertificateError, match="another CA of the same name issued it"):
        TrustStore((other.ca,)).validate(chain, NOW)
    with pytest.raises(CertificateError, match="no trusted CA issued"):
        TrustStore((pki.ca,)).validate(chain[:2], NOW)  # an intermediate left out
    with pytest.raises(CertificateError, match="expired on"):
        TrustStore((pki.ca,)).validate(chain, NOW + dt.timedelta(days=400))
    with pytest.raises(CertificateError, match="not valid before"):
        TrustStore((pki.ca,)).validate(chain, NOW - dt.timedelta(days=1))
    with pytest.raises(CertificateError, match="no certificate"):
        TrustStore((pki.ca,)).validate([], NOW)


def test_an_expired_end_entity_fails(tmp_path):
    old = make_pki(
        tmp_path, ["old.test"], days=1, not_before=NOW - dt.timedelta(days=3), intermediates=0
    )
    with pytest.raises(CertificateError, match=r'"CN=old\.test,O=pqike test PKI" expired'):
        TrustStore((old.ca,)).validate(old.chain("old.test"), NOW)


def test_identity_is_matched_against_the_subject_alt_name(pki):
    cert = pki.entities["moon.test"].certificate
    assert identity_matches(cert, IdType.ID_FQDN, b"MOON.test")
    assert not identity_matches(cert, IdType.ID_FQDN, b"sun.test")
    assert identity_matches(cert, IdType.ID_DER_ASN1_DN, cert.subject.public_bytes())
    assert not identity_matches(cert, IdType.ID_IPV4_ADDR, bytes(4))


def test_certreq_data_is_the_sha1_of_the_ca_public_key(pki):
    trust = TrustStore((pki.ca,))
    spki = pki.ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert trust.certreq_data() == hashlib.sha1(spki).digest() == spki_sha1(pki.ca)
    assert trust.requested(trust.certreq_data()) and trust.requested(b"")
    assert not trust.requested(bytes(20))


def test_bad_files_get_one_sentence_naming_the_file(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match=f"certificate file {junk}: not an X.509"):
        load_certificates(junk)
    with pytest.raises(ConfigurationError, match=r"missing\.pem: cannot be read"):
        load_certificates(tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match=f"key file {junk}: not an unencrypted private"):
        load_private_key(junk)
    with pytest.raises(ConfigurationError, match="does not belong to the certificate"):
        Credential.load(pki.entities["sun.test"].key_path, pki.entities["moon.test"].cert_path)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_pki_makes_every_key_type_with_keys_0600(tmp_path, key_type):
    p = make_pki(tmp_path, ["a.test"], key_type=key_type, intermediates=1)
    keys = (p.entities["a.test"].key_path, tmp_path / "ca.key", tmp_path / "intermediate1.key")
    for path in keys:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cred = Credential.load(p.entities["a.test"].key_path, p.entities["a.test"].cert_path)
    assert TrustStore.load(p.ca_path).validate(cred.chain, NOW)
