"""Certificate authentication for the experiment runner: reproducible test PKIs and
the CPU each side spends signing its AUTH and verifying the peer's.

A proposal's ``auth`` (a key type of ``pqike.pki.KEY_TYPES``) and ``chain`` (how many
certificates each peer sends in IKE_AUTH: 1, the end entity signed by the CA; 2, the
end entity and an intermediate CA; ...) select a PKI. ``lab_pki`` makes it in memory,
once per pair object and kind (not per handshake), reproducibly:

- keys are derived from a fixed label where ``cryptography`` can (ECDSA private values,
  Ed25519/Ed448 private bytes, ML-DSA seeds); RSA keys are generated afresh, but an
  RSA-3072 key's public key and signatures have the same sizes whatever its primes;
- serial numbers are derived from the same label (20 DER octets, as CAs issue them),
  validity runs from ``NOT_BEFORE`` to ``NOT_AFTER`` (both UTCTime, RFC 5280
  4.1.2.5), and ECDSA certificate signatures use RFC 6979 nonces;

so every certificate has the same size in every run, and the same bytes for ECDSA
and EdDSA (ML-DSA signs with fresh randomness, FIPS 204's hedged variant, and RSA keys
are new each run: their certificates differ in content, never in length).

The AUTH signatures are the core's: an ECDSA signature is a DER Ecdsa-Sig-Value (RFC
7427 3) of 70 to 72 octets for P-256 over a message that changes each handshake, so
ECDSA's IKE_AUTH sizes vary by a byte or two between handshakes; Ed25519, RSA and
ML-DSA signatures have fixed sizes.

The core signs through ``Credential.sign`` and verifies through
``TrustStore.validate`` / ``TrustStore.verify_signature``; ``TimedCredential`` and
``TimedTrustStore`` add each call's thread CPU time to an ``AuthCpu`` of their side, so
the core stays sans-IO and reads no clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa

from ..crypto.certs import Credential, TrustStore
from ..crypto.signature import SUPPORTED_HASHES, PrivateKey, Scheme
from ..errors import ConfigurationError
from ..handshake import ppk_options
from ..pki import KEY_TYPES, generate_key, issue

NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
"""Start of every lab certificate's validity (fixed: the same bytes in every run)."""
NOT_AFTER = dt.datetime(2049, 12, 31, tzinfo=dt.UTC)
"""End of their validity: the last year RFC 5280 4.1.2.5 encodes as UTCTime (from 2050
the GeneralizedTime form adds two octets)."""
MAX_CHAIN = 4
"""Most certificates a spec's ``chain`` may ask each peer to send."""
DEFAULT_CHAIN = 2
"""Certificates sent without ``chain``: the end entity and one intermediate CA, as
``run_handshake(auth=...)`` makes them."""
_SERIAL_BITS = 159
"""Serial numbers of 20 DER octets with the sign bit clear (RFC 5280 4.1.2.2 allows 20)."""
_LABEL = "pqike-lab-pki"

_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}


def _octets(label: str, size: int) -> bytes:
    return hashlib.shake_256(f"{_LABEL}/{label}".encode()).digest(size)


def derived_key(key_type: str, label: str) -> PrivateKey:
    """A private key of ``key_type`` derived from ``label`` (the same key every run),
    or a fresh one for RSA, which ``cryptography`` cannot derive."""
    if key_type in _EC_CURVES:
        curve = _EC_CURVES[key_type]
        # One bit shorter than the group order: always a valid, non-zero private value.
        value = int.from_bytes(_octets(label, curve.key_size // 8), "big") >> 1 | 1
        return ec.derive_private_key(value, curve)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(_octets(label, 32))
    if key_type == "ed448":
        return ed448.Ed448PrivateKey.from_private_bytes(_octets(label, 57))
    if key_type.startswith("mldsa"):
        cls = getattr(mldsa, f"MLDSA{key_type[5:]}PrivateKey")
        return cls.from_seed_bytes(_octets(label, 32))
    return generate_key(key_type)


def _serial(label: str) -> int:
    value = int.from_bytes(_octets(f"serial/{label}", 20), "big") >> (160 - _SERIAL_BITS)
    return value | 1 << (_SERIAL_BITS - 1)


@dataclass(frozen=True)
class LabPki:
    """A CA, ``chain - 1`` intermediate CAs and one end entity per identity."""

    ca: x509.Certificate
    chains: dict[str, tuple[x509.Certificate, ...]]
    """Per identity what it sends in IKE_AUTH: end entity first, then intermediates."""
    keys: dict[str, PrivateKey]


def lab_pki(key_type: str, chain: int, identities: Sequence[str]) -> LabPki:
    """The reproducible PKI of ``key_type`` whose peers send ``chain`` certificates."""
    if key_type not in KEY_TYPES:
        raise ConfigurationError(
            f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", field="auth"
        )
    if not 1 <= chain <= MAX_CHAIN:
        raise ConfigurationError(
            f"chain must be from 1 to {MAX_CHAIN} certificates, got {chain}", field="chain"
        )
    days = (NOT_AFTER - NOT_BEFORE).total_seconds() / 86400
    dated: dict[str, Any] = {"not_before": NOT_BEFORE, "days": days, "deterministic": True}
    ca_key = derived_key(key_type, f"{key_type}/ca")
    ca = issue(ca_key, "pqike lab CA", ca=True, serial=_serial(f"{key_type}/ca"), **dated)
    issuer = (ca, ca_key)
    intermediates: list[x509.Certificate] = []
    for n in range(1, chain):
        label = f"{key_type}/intermediate{n}"
        key = derived_key(key_type, label)
        cert = issue(
            key, f"pqike lab intermediate CA {n}", issuer, ca=True, serial=_serial(label), **dated
        )
        intermediates.append(cert)
        issuer = (cert, key)
    chains: dict[str, tuple[x509.Certificate, ...]] = {}
    keys: dict[str, PrivateKey] = {}
    for ident in identities:
        label = f"{key_type}/{chain}/{ident}"
        key = derived_key(key_type, label)
        cert = issue(key, ident, issuer, identity=ident, serial=_serial(label), **dated)
        chains[ident] = (cert, *reversed(intermediates))
        keys[ident] = key
    return LabPki(ca, chains, keys)


@dataclass
class AuthCpu:
    """Thread CPU seconds one side spent on signature authentication since ``reset``."""

    sign_s: float = 0.0
    """Signing our AUTH (``Credential.sign``)."""
    verify_s: float = 0.0
    """Validating the peer's certificate chain and verifying its AUTH signature."""

    def reset(self) -> None:
        self.sign_s = 0.0
        self.verify_s = 0.0


@dataclass(frozen=True)
class TimedCredential(Credential):
    """A ``Credential`` that adds the CPU time of every signature to ``meter``."""

    meter: AuthCpu = field(default_factory=AuthCpu, compare=False)

    def sign(self, method: int, scheme: Scheme | None, octets: bytes) -> bytes:
        start = time.thread_time()
        try:
            return super().sign(method, scheme, octets)
        finally:
            self.meter.sign_s += time.thread_time() - start


@dataclass(frozen=True)
class TimedTrustStore(TrustStore):
    """A ``TrustStore`` that adds the CPU time of chain validation and of AUTH
    signature verification to ``meter``."""

    meter: AuthCpu = field(default_factory=AuthCpu, compare=False)

    def validate(self, chain: Sequence[x509.Certificate], at: datetime) -> list[x509.Certificate]:
        start = time.thread_time()
        try:
            return super().validate(chain, at)
        finally:
            self.meter.verify_s += time.thread_time() - start

    def verify_signature(
        self,
        cert: x509.Certificate,
        method: int,
        data: bytes,
        octets: bytes,
        hashes: frozenset[int] = frozenset(SUPPORTED_HASHES),
    ) -> str:
        start = time.thread_time()
        try:
            return super().verify_signature(cert, method, data, octets, hashes)
        finally:
            self.meter.verify_s += time.thread_time() - start


class AuthCpuColumns(TypedDict):
    """The ``HandshakeRun`` fields of both sides' meters."""

    initiator_sign_cpu: float | None
    initiator_verify_cpu: float | None
    responder_sign_cpu: float | None
    responder_verify_cpu: float | None


@dataclass(frozen=True)
class LabAuth:
    """Both sides' configuration options for one proposal's ``auth``/``chain`` and the
    meters their signing and verifying add to (``None`` for a PSK)."""

    initiator: dict[str, Any]
    responder: dict[str, Any]
    initiator_cpu: AuthCpu | None = None
    responder_cpu: AuthCpu | None = None

    def reset(self) -> None:
        """Zero both meters (before a handshake)."""
        for meter in (self.initiator_cpu, self.responder_cpu):
            if meter is not None:
                meter.reset()

    def columns(self) -> AuthCpuColumns:
        """The meters as ``HandshakeRun`` fields (``None`` for a PSK)."""
        ini, res = self.initiator_cpu, self.responder_cpu
        return AuthCpuColumns(
            initiator_sign_cpu=ini.sign_s if ini else None,
            initiator_verify_cpu=ini.verify_s if ini else None,
            responder_sign_cpu=res.sign_s if res else None,
            responder_verify_cpu=res.verify_s if res else None,
        )


def lab_auth(
    auth: str,
    chain: int,
    initiator_id: str,
    responder_id: str,
    cache: dict[tuple[str, int], LabPki] | None = None,
) -> LabAuth:
    """Options for both sides' ``IkeConfiguration`` (``credential``, ``trust``) for
    ``auth`` (``psk``: none) with ``chain`` certificates, each side with its own meter;
    ``cache`` keeps the PKIs between cells. A ``+ppk8784`` / ``+ppk9867`` suffix adds
    the demo PPK to both sides (``pqike.handshake.ppk_options``)."""
    ppk = ppk_options(auth)
    auth = auth.partition("+")[0]
    if auth == "psk":
        return LabAuth(dict(ppk), dict(ppk))
    key = (auth, chain)
    pki = cache.get(key) if cache is not None else None
    if pki is None:
        pki = lab_pki(auth, chain, (initiator_id, responder_id))
        if cache is not None:
            cache[key] = pki
    meters = (AuthCpu(), AuthCpu())
    options = [
        {
            "credential": TimedCredential(pki.keys[ident], pki.chains[ident], meter=meter),
            "trust": TimedTrustStore((pki.ca,), meter=meter),
            **ppk,
        }
        for ident, meter in zip((initiator_id, responder_id), meters, strict=True)
    ]
    return LabAuth(options[0], options[1], *meters)


__all__ = [
    "DEFAULT_CHAIN",
    "MAX_CHAIN",
    "NOT_AFTER",
    "NOT_BEFORE",
    "AuthCpu",
    "AuthCpuColumns",
    "LabAuth",
    "LabPki",
    "TimedCredential",
    "TimedTrustStore",
    "derived_key",
    "lab_auth",
    "lab_pki",
]
