"""X.509 certificates for IKE: loading, CERT/CERTREQ data, chain validation, identities.

RFC 7296 3.6 (CERT, encoding 4: a DER X.509 certificate), 3.7 (CERTREQ: the
concatenated SHA-1 hashes of the trusted CAs' SubjectPublicKeyInfo), 3.5 and RFC 4945
3.1 (the peer's identity must match the end-entity certificate's subject or
subjectAltName). Validation walks from the end-entity certificate through the
intermediates the peer sent up to a configured trust anchor, checking each signature,
validity period and CA flag; the time is given by the caller (no clock here).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..constants import IdType
from ..errors import ConfigurationError, IkeError
from . import signature
from .signature import PrivateKey, Scheme, SignatureError, key_kind

MAX_CHAIN = 8
"""Most certificates walked from the end entity to a trust anchor."""


class CertificateError(IkeError):
    """A peer's certificate chain or identity does not validate; the message says why."""


def describe(cert: x509.Certificate) -> str:
    """A certificate for messages: its subject in RFC 4514 form."""
    return f'"{cert.subject.rfc4514_string()}"'


def _read(p: Path, what: str) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{what} file {p}: cannot be read ({exc.strerror})", field=str(p)
        ) from None


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Read one or more certificates (PEM, or a single DER) from ``path``.

    Raises ``ConfigurationError`` with one sentence naming the file.
    """
    p = Path(path)
    data = _read(p, "certificate")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigurationError(
            f"certificate file {p}: not an X.509 certificate in PEM or DER", field=str(p)
        ) from None
    return certs


def load_private_key(path: str | Path) -> PrivateKey:
    """Read an unencrypted private key (PEM or DER, PKCS#8 or the traditional forms).

    Raises ``ConfigurationError`` with one sentence naming the file.
    """
    p = Path(path)
    data = _read(p, "key")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError(
            f"key file {p}: not an unencrypted private key in PEM or DER", field=str(p)
        ) from None
    try:
        key_kind(key)
    except SignatureError as exc:
        raise ConfigurationError(f"key file {p}: {exc}", field=str(p)) from None
    return key


def spki_sha1(cert: x509.Certificate) -> bytes:
    """RFC 7296 3.7: the SHA-1 hash of a CA's SubjectPublicKeyInfo, as CERTREQ lists it."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()


def der(cert: x509.Certificate) -> bytes:
    """The DER bytes a CERT payload of encoding 4 carries."""
    return cert.public_bytes(serialization.Encoding.DER)


def _public_der(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Credential:
    """Our private key and certificate chain: end entity first, then intermediates."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise ConfigurationError("a certificate credential needs a certificate")
        if _public_der(self.key.public_key()) != _public_der(self.chain[0].public_key()):
            raise ConfigurationError(
                f"the private key does not belong to the certificate {describe(self.chain[0])}"
            )

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    def sign(self, method: int, scheme: Scheme | None, octets: bytes) -> bytes:
        """Our Authentication Data of AUTH ``method`` over ``octets`` (RFC 7427 3).

        The core signs through this method, so a subclass can observe the signing (the
        experiment runner times it) without the core reading a clock."""
        return signature.sign(self.key, method, scheme, octets)

    @classmethod
    def load(cls, key: str | Path, certificate: str | Path, *chain: str | Path) -> Credential:
        """From files: the key, the end-entity certificate (a PEM file may hold the
        intermediates after it), then more intermediates."""
        certs = load_certificates(certificate)
        for path in chain:
            certs += load_certificates(path)
        loaded = load_private_key(key)
        try:
            return cls(loaded, tuple(certs))
        except ConfigurationError as exc:
            raise ConfigurationError(f"key file {key}: {exc}", field=str(key)) from None


@dataclass(frozen=True)
class TrustStore:
    """The CA certificates we accept a peer's chain up to."""

    anchors: tuple[x509.Certificate, ...]
    _by_hash: dict[bytes, x509.Certificate] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_hash", {spki_sha1(c): c for c in self.anchors})

    @classmethod
    def load(cls, *paths: str | Path) -> TrustStore:
        certs: list[x509.Certificate] = []
        for p in paths:
            certs += load_certificates(p)
        return cls(tuple(certs))

    def certreq_data(self) -> bytes:
        """RFC 7296 3.7: CERTREQ's Certification Authority field for every anchor."""
        return b"".join(self._by_hash)

    def requested(self, data: bytes) -> bool:
        """Whether a peer's CERTREQ data names one of our anchors (an empty one names
        any CA)."""
        hashes = {data[i : i + 20] for i in range(0, len(data) - 19, 20)}
        return not data or bool(hashes & self._by_hash.keys())

    def validate(self, chain: Sequence[x509.Certificate], at: datetime) -> list[x509.Certificate]:
        """The path from ``chain[0]`` (end entity) through the other certificates of
        ``chain`` to one of our anchors, checked at time ``at`` (timezone-aware).

        Raises ``CertificateError`` naming the first certificate that fails and why.
        """
        if not chain:
            raise CertificateError("the peer sent no certificate")
        pool = list(chain[1:])
        path = [chain[0]]
        current = chain[0]
        for _ in range(MAX_CHAIN):
            _check_time(current, at)
            anchor = self._issuer(current, list(self.anchors))
            if anchor is not None:
                _check_time(anchor, at)
                _check_ca(anchor)
                path.append(anchor)
                return path
            issuer = self._issuer(current, pool)
            if issuer is None:
                raise CertificateError(
                    f"no trusted CA issued {describe(current)} "
                    f"(issuer {current.issuer.rfc4514_string()!r})"
                )
            _check_ca(issuer)
            pool.remove(issuer)
            path.append(issuer)
            current = issuer
        raise CertificateError(f"the chain is longer than {MAX_CHAIN} certificates")

    def verify_signature(
        self,
        cert: x509.Certificate,
        method: int,
        data: bytes,
        octets: bytes,
        hashes: frozenset[int] = frozenset(signature.SUPPORTED_HASHES),
    ) -> str:
        """Check the peer's Authentication Data ``data`` of AUTH ``method`` over
        ``octets`` with the key of ``cert`` (validated with ``validate`` first); returns
        the scheme's name or raises ``SignatureError``.

        The core verifies through this method, so a subclass can observe the work (the
        experiment runner times it) without the core reading a clock."""
        return signature.verify(cert.public_key(), method, data, octets, hashes)

    @staticmethod
    def _issuer(cert: x509.Certificate, candidates: list[x509.Certificate]):
        named = [c for c in candidates if c.subject == cert.issuer]
        for c in named:
            try:
                cert.verify_directly_issued_by(c)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                continue
            return c
        if named:
            raise CertificateError(
                f"the signature of {describe(cert)} does not verify with the key of "
                f"{describe(named[0])}: another CA of the same name issued it"
            )
        return None


def _check_time(cert: x509.Certificate, at: datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateError(
            f"certificate {describe(cert)} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if at > cert.not_valid_after_utc:
        raise CertificateError(
            f"certificate {describe(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _check_ca(cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CertificateError(f"certificate {describe(cert)} is not a CA but issued another")


def identity_matches(cert: x509.Certificate, id_type: int, data: bytes) -> bool:
    """RFC 4945 3.1: the IKE identity must be the certificate's subject (ID_DER_ASN1_DN)
    or one of its subjectAltNames (ID_FQDN, ID_RFC822_ADDR, ID_IPV4/6_ADDR)."""
    if id_type == IdType.ID_DER_ASN1_DN:
        return cert.subject.public_bytes() == data
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if id_type == IdType.ID_FQDN:
        name = data.decode("ascii", "replace").lower()
        return name in (n.lower() for n in san.get_values_for_type(x509.DNSName))
    if id_type == IdType.ID_RFC822_ADDR:
        name = data.decode("ascii", "replace").lower()
        return name in (n.lower() for n in san.get_values_for_type(x509.RFC822Name))
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        try:
            addr = ipaddress.ip_address(data)
        except ValueError:
            return False
        return addr in san.get_values_for_type(x509.IPAddress)
    return False
