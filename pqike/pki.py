"""Test PKIs for experiments and interop tests: a CA, intermediates, end entities.

Every key kind pqike signs AUTH with (ECDSA P-256/384/521, Ed25519, Ed448, RSA 2048 to
4096, ML-DSA-44/65/87) is made with ``cryptography`` and its x509 builder, so nothing
outside Python is needed. End-entity certificates carry the identity as a subjectAltName
(RFC 4945 3.1) and the CN. Private keys are written PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .constants import IdType
from .crypto.signature import PrivateKey
from .errors import ConfigurationError
from .ike.config import Identity

KEY_TYPES = (
    "p256",
    "p384",
    "p521",
    "ed25519",
    "ed448",
    "rsa2048",
    "rsa3072",
    "rsa4096",
    "mldsa44",
    "mldsa65",
    "mldsa87",
)
"""Key types ``pqike pki`` makes; ``rsa`` alone means rsa3072."""

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}


def generate_key(key_type: str) -> PrivateKey:
    """A fresh private key of ``key_type`` (one of ``KEY_TYPES``)."""
    kind = "rsa3072" if key_type == "rsa" else key_type
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind]())
    if kind.startswith("rsa") and kind in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind in ("mldsa44", "mldsa65", "mldsa87"):
        return getattr(mldsa, f"MLDSA{kind[5:]}PrivateKey").generate()
    raise ConfigurationError(
        f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", field="key_type"
    )


def _hash_for(issuer_key: PrivateKey) -> Any:
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        size = issuer_key.curve.key_size
        return hashes.SHA512() if size > 384 else hashes.SHA384() if size > 256 else hashes.SHA256()
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None  # EdDSA and ML-DSA sign the TBSCertificate itself


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pqike test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _san(identity: Identity) -> x509.GeneralName:
    if identity.id_type == IdType.ID_FQDN:
        return x509.DNSName(identity.data.decode())
    if identity.id_type == IdType.ID_RFC822_ADDR:
        return x509.RFC822Name(identity.data.decode())
    if identity.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        import ipaddress

        return x509.IPAddress(ipaddress.ip_address(identity.data))
    raise ConfigurationError(
        f"identity {identity} cannot be a subjectAltName (use a name, email or address)",
        field="id",
    )


def issue(
    subject_key: PrivateKey,
    cn: str,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    ca: bool = False,
    identity: str | None = None,
    not_before: dt.datetime | None = None,
    days: float = 365.0,
    rsa_pss: bool = False,
    serial: int | None = None,
    deterministic: bool = False,
) -> x509.Certificate:
    """A certificate for ``subject_key``: self-signed when ``issuer`` is ``None``.

    ``identity`` (an IKE identity string) goes into the subjectAltName of an end-entity
    certificate; ``not_before`` and ``days`` set the validity (an expired certificate
    for tests: a ``not_before`` in the past and few ``days``). ``serial`` replaces the
    random serial number and ``deterministic`` signs ECDSA with RFC 6979 nonces, so that
    the same keys and dates give the same certificate bytes (experiments).
    """
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = _name(cn)
    issuer_cert, issuer_key = issuer if issuer else (None, subject_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(subject_key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
        )
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_cert.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        if identity is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(Identity.parse(identity))]), critical=False
            )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    pss = None
    if rsa_pss and isinstance(issuer_key, rsa.RSAPrivateKey):
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    ecdsa_deterministic = deterministic and isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    return builder.sign(
        issuer_key,
        _hash_for(issuer_key),
        rsa_padding=pss,
        ecdsa_deterministic=ecdsa_deterministic or None,
    )


def write_key(path: Path, key: PrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM, created 0600 (never readable by others, not even
    for a moment)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_certs(path: Path, *certs: x509.Certificate) -> None:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


@dataclass(frozen=True)
class EndEntity:
    """One end entity of a test PKI: files and objects."""

    identity: str
    key: PrivateKey
    certificate: x509.Certificate
    key_path: Path
    cert_path: Path
    """PEM: the end-entity certificate, then the intermediates up to the CA."""


@dataclass(frozen=True)
class TestPki:
    """A CA, its intermediates (``intermediates[0]`` signed by the CA) and end entities."""

    ca: x509.Certificate
    ca_key: PrivateKey
    intermediates: tuple[x509.Certificate, ...]
    entities: dict[str, EndEntity]
    ca_path: Path

    def chain(self, identity: str) -> tuple[x509.Certificate, ...]:
        """End entity first, then the intermediates from the lowest up."""
        return (self.entities[identity].certificate, *reversed(self.intermediates))


def make_pki(
    directory: str | Path,
    identities: list[str],
    *,
    key_type: str = "p256",
    ca_key_type: str | None = None,
    intermediates: int = 1,
    rsa_pss: bool = False,
    days: float = 365.0,
    not_before: dt.datetime | None = None,
) -> TestPki:
    """Make a CA (``ca.pem``, ``ca.key``), ``intermediates`` intermediate CAs and one
    end entity per identity (``<identity>.key``, ``<identity>.pem`` with the chain) in
    ``directory``. CA and intermediates use ``ca_key_type`` (default ``key_type``).
    ``days``/``not_before`` apply to the end-entity certificates."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca_type = ca_key_type or key_type
    ca_key = generate_key(ca_type)
    ca = issue(ca_key, "pqike test CA", ca=True, days=3650, rsa_pss=rsa_pss)
    write_key(out / "ca.key", ca_key)
    write_certs(out / "ca.pem", ca)
    issuer = (ca, ca_key)
    inters: list[x509.Certificate] = []
    for n in range(1, intermediates + 1):
        key = generate_key(ca_type)
        cert = issue(key, f"pqike intermediate CA {n}", issuer, ca=True, days=3650, rsa_pss=rsa_pss)
        write_key(out / f"intermediate{n}.key", key)
        write_certs(out / f"intermediate{n}.pem", cert)
        inters.append(cert)
        issuer = (cert, key)
    entities: dict[str, EndEntity] = {}
    for ident in identities:
        key = generate_key(key_type)
        cert = issue(
            key,
            ident,
            issuer,
            identity=ident,
            days=days,
            not_before=not_before,
            rsa_pss=rsa_pss,
        )
        stem = ident.replace("/", "_")
        key_path, cert_path = out / f"{stem}.key", out / f"{stem}.pem"
        write_key(key_path, key)
        write_certs(cert_path, cert, *reversed(inters))
        entities[ident] = EndEntity(ident, key, cert, key_path, cert_path)
    return TestPki(ca, ca_key, tuple(inters), entities, out / "ca.pem")
