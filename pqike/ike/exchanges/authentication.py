"""What IKE_AUTH needs to authenticate: AUTH values, certificates, announcements, PPK.

- AUTH (RFC 7296 2.15): the PSK MAC or a signature (RFC 7427; ``crypto.signature``) over
  the signed octets, with the IntAuth tail of RFC 9242 3.3.2.
- Certificates: CERT payloads of encoding 4 (RFC 7296 3.6), end entity first; CERTREQ
  with the SHA-1 hashes of our CAs' public keys (3.7); the peer's chain validated up to
  our trust anchors and its ID matched against the certificate (RFC 4945 3.1).
- SIGNATURE_HASH_ALGORITHMS (RFC 7427 4) and SUPPORTED_AUTH_METHODS (RFC 9593).
- PPK (RFC 8784 3): ``SK_d' = prf+(PPK, SK_d)``, ``SK_pi' = prf+(PPK, SK_pi)``,
  ``SK_pr' = prf+(PPK, SK_pr)``; AUTH uses SK_p', NO_PPK_AUTH carries the AUTH data made
  with the original SK_pi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from ...constants import AuthMethod, CertEncoding, NotifyType
from ...crypto import auth as crypto_auth
from ...crypto import signature
from ...crypto.certs import CertificateError, der, identity_matches
from ...crypto.keys import IkeKeys, ppk_keys
from ...errors import AuthenticationFailed
from ...wire.payloads import CertPayload, CertReqPayload, NotifyPayload, Payload
from ..config import Identity
from ..events import AuthComputed

if TYPE_CHECKING:
    from ..sa import IkeSa

PSK = AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE
PPK_ID_FIXED = 2
"""RFC 8784 3: PPK_IDENTITY type "PPK_ID_FIXED", the only one strongSwan sends."""


# --- SIGNATURE_HASH_ALGORITHMS and SUPPORTED_AUTH_METHODS -------------------------------


def uses_certificates(sa: IkeSa) -> bool:
    """Whether we sign or accept signatures: then IKE_SA_INIT announces hashes."""
    return sa.config.credential is not None or sa.config.trust is not None


def hash_notify() -> NotifyPayload:
    """RFC 7427 4: the 2-byte hash algorithm numbers we accept."""
    data = b"".join(h.to_bytes(2, "big") for h in signature.SUPPORTED_HASHES)
    return NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, data)


def parse_hashes(data: bytes) -> frozenset[int]:
    return frozenset(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2))


def accepted_methods(sa: IkeSa) -> list[tuple[int, bytes]]:
    """What we accept from the peer, for SUPPORTED_AUTH_METHODS: PSK when we have one,
    and method 14 with the schemes of the key kinds of our trust anchors (a CA signs
    with the kind its end entities usually have; listing every scheme would cost
    ~250 bytes of IKE_SA_INIT)."""
    out: list[tuple[int, bytes]] = []
    if sa.config.psk:
        out.append((PSK, b""))
    if sa.config.trust is not None:
        kinds = {signature.key_kind(c.public_key()) for c in sa.config.trust.anchors}
        for s in signature.SCHEMES:
            if s.kind in kinds:
                out.append((AuthMethod.DIGITAL_SIGNATURE, s.alg_id))
    return out


def encode_auth_methods(methods: list[tuple[int, bytes]]) -> bytes:
    """RFC 9593 3.2: announcements of 2 octets (Length, Auth Method) or, with an
    AlgorithmIdentifier, Length | Auth Method | Cert Link (0: any CA) | AlgId."""
    out = bytearray()
    for method, alg_id in methods:
        if alg_id:
            out += bytes((3 + len(alg_id), method, 0)) + alg_id
        else:
            out += bytes((2, method))
    return bytes(out)


def decode_auth_methods(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """The announcements of a SUPPORTED_AUTH_METHODS notify; a malformed tail is ignored
    (the notify is advisory, RFC 9593 3)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 2 <= len(data):
        length = data[pos]
        if length < 2 or pos + length > len(data):
            break
        method = data[pos + 1]
        alg_id = data[pos + 3 : pos + length] if length > 3 else b""
        out.append((method, alg_id))
        pos += length
    return tuple(out)


# --- our AUTH ------------------------------------------------------------------------------


def _int_auth_tail(sa: IkeSa, auth_mid: int) -> bytes:
    hs = sa.hs
    if hs.intermediate_exchanges == 0:
        return b""
    # RFC 9242 3.3.2: IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH message ID.
    return hs.int_auth_i + hs.int_auth_r + auth_mid.to_bytes(4, "big")


def _impaired_tail(sa: IkeSa, tail: bytes, auth_mid: int, prf_size: int) -> bytes:
    """The IntAuth an impaired peer signs (``pqike.ike.impair``)."""
    imp = sa.config.impairments
    if "auth-without-int-auth" in imp:
        return b""
    if "wrong-int-auth" in imp and tail:
        return bytes([tail[0] ^ 0x01]) + tail[1:]
    if "phantom-int-auth" in imp and not tail:
        # libreswan #2834: an IntAuth for IKE_INTERMEDIATE exchanges that never happened.
        return bytes(2 * prf_size) + auth_mid.to_bytes(4, "big")
    return tail


def octets(sa: IkeSa, *, ours: bool, id_body: bytes, auth_mid: int, keys: IkeKeys) -> bytes:
    """The signed octets of our side (``ours``) or the peer's, with ``keys``' SK_p.

    Reported as ``AuthComputed`` for the secrets transcript, with the PSK AUTH value
    when a PSK is configured (a signature is in the AUTH payload itself)."""
    hs = sa.hs
    crypto = sa.gen.crypto
    assert crypto is not None
    i_side = sa.is_initiator == ours
    real = hs.sa_init_request if i_side else hs.sa_init_response
    nonce = hs.nonce_r if i_side else hs.nonce_i
    sk_p = keys.sk_pi if i_side else keys.sk_pr
    tail = _int_auth_tail(sa, auth_mid)
    if ours and sa.config.impairments:
        tail = _impaired_tail(sa, tail, auth_mid, crypto.prf.key_size)
    signed = crypto_auth.signed_octets(real, nonce, crypto.prf, sk_p, id_body, tail)
    value = psk_value(sa, signed) if sa.config.psk else b""
    sa.emit(
        AuthComputed(
            spi_i=sa.gen.spi_i,
            spi_r=sa.gen.spi_r,
            message_id=auth_mid,
            initiator=i_side,
            ours=ours,
            int_auth=tail,
            octets=signed,
            value=value,
        )
    )
    return signed


def psk_value(sa: IkeSa, signed: bytes) -> bytes:
    """``prf(prf(PSK, "Key Pad for IKEv2"), signed)`` (RFC 7296 2.15), once per octets."""
    values = sa.hs.psk_values
    value = values.get(signed)
    if value is None:
        crypto = sa.gen.crypto
        assert crypto is not None
        value = values[signed] = crypto_auth.psk_auth(crypto.prf, sa.config.psk, signed)
    return value


def current_keys(sa: IkeSa) -> IkeKeys:
    crypto = sa.gen.crypto
    assert crypto is not None
    return crypto.keys


def mixed_keys(sa: IkeSa) -> IkeKeys:
    """RFC 8784 3: the keys with the PPK mixed into SK_d, SK_pi and SK_pr."""
    crypto = sa.gen.crypto
    assert crypto is not None
    return ppk_keys(crypto.prf, crypto.keys, sa.config.ppk)


@dataclass(frozen=True)
class OurAuth:
    """How we authenticate: the AUTH method and for method 14 the scheme."""

    method: int
    scheme: signature.Scheme | None


_PSK_AUTH = OurAuth(PSK, None)
"""How every PSK-only side authenticates (a frozen value, so one is shared)."""


def choose_auth(sa: IkeSa) -> OurAuth:
    """Our AUTH method, honouring the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 4) and
    SUPPORTED_AUTH_METHODS (RFC 9593 3: use a method the peer announced)."""
    cred = sa.config.credential
    if cred is None:
        _require_announced(sa, PSK, b"", "a PSK")
        return _PSK_AUTH
    hs = sa.hs
    try:
        method, scheme = signature.choose(cred.key, hs.peer_hashes, rsa_pss=sa.config.rsa_pss)
        if scheme is not None and hs.peer_auth_methods:
            # RFC 9593: an RSA key can sign either padding; take the one announced.
            offered = {a for m, a in hs.peer_auth_methods if m == AuthMethod.DIGITAL_SIGNATURE}
            if scheme.alg_id not in offered:
                alt = [
                    s
                    for s in signature.SCHEMES
                    if s.kind == scheme.kind and s.alg_id in offered and s.hash_id in hs.peer_hashes
                ]
                if alt:
                    scheme = alt[0]
    except signature.SignatureError as exc:
        raise AuthenticationFailed(
            f"our {_kind(cred.key)} key cannot sign for this peer: {exc}"
        ) from None
    _require_announced(sa, method, scheme.alg_id if scheme else b"", scheme.name if scheme else "")
    return OurAuth(method, scheme)


def _kind(key) -> str:
    try:
        return signature.key_kind(key)
    except signature.SignatureError:
        return type(key).__name__


def _require_announced(sa: IkeSa, method: int, alg_id: bytes, what: str) -> None:
    announced = sa.hs.peer_auth_methods
    if not announced:
        return
    for m, a in announced:
        if m == method and (not a or not alg_id or a == alg_id):
            return
    raise AuthenticationFailed(
        f"the peer's SUPPORTED_AUTH_METHODS does not include {what or f'method {method}'}"
    )


def auth_data(sa: IkeSa, how: OurAuth, data_octets: bytes) -> bytes:
    """Our Authentication Data over ``data_octets``."""
    if how.method == PSK:
        return psk_value(sa, data_octets)
    cred = sa.config.credential
    assert cred is not None
    return cred.sign(how.method, how.scheme, data_octets)


def cert_payloads(sa: IkeSa) -> list[Payload]:
    """Our CERT payloads (end entity, then intermediates) when ``send_cert`` says so."""
    cfg = sa.config
    if cfg.credential is None or cfg.send_cert == "never":
        return []
    if cfg.send_cert == "ifasked" and sa.hs.peer_certreq is None:
        return []
    return [CertPayload(CertEncoding.X509_SIGNATURE, der(c)) for c in cfg.credential.chain]


def certreq_payloads(sa: IkeSa) -> list[Payload]:
    """RFC 7296 3.7: one CERTREQ naming all our trust anchors."""
    if sa.config.trust is None:
        return []
    return [CertReqPayload(CertEncoding.X509_SIGNATURE, sa.config.trust.certreq_data())]


def note_certreqs(sa: IkeSa, payloads: tuple[Payload, ...]) -> None:
    reqs = [p for p in payloads if isinstance(p, CertReqPayload)]
    if reqs:
        sa.hs.peer_certreq = b"".join(
            r.data for r in reqs if r.encoding == CertEncoding.X509_SIGNATURE
        )


# --- the peer's AUTH -----------------------------------------------------------------------


def verify_peer(
    sa: IkeSa,
    payloads: tuple[Payload, ...],
    peer: Identity,
    method: int,
    data: bytes,
    data_octets: bytes,
    who: str,
) -> str:
    """Check the peer's AUTH; returns what authenticated it (``psk``, a scheme name),
    or raises ``AuthenticationFailed`` with the reason."""
    cfg = sa.config
    if method == PSK:
        if not cfg.psk:
            raise AuthenticationFailed(
                f"the {who} authenticated with a PSK, we expect a certificate"
            )
        if psk_value(sa, data_octets) != data:
            raise AuthenticationFailed(f"the {who}'s AUTH payload does not verify")
        return "psk"
    if cfg.trust is None:
        raise AuthenticationFailed(
            f"the {who} authenticated with AUTH method {method}, we accept only a PSK"
        )
    chain = []
    for p in payloads:
        if isinstance(p, CertPayload) and p.encoding == CertEncoding.X509_SIGNATURE:
            try:
                chain.append(x509.load_der_x509_certificate(p.data))
            except ValueError:
                raise AuthenticationFailed(
                    f"a CERT payload of the {who} is not a DER X.509 certificate"
                ) from None
    assert cfg.validation_clock is not None  # IkeConfiguration requires it with trust
    try:
        cfg.trust.validate(chain, cfg.validation_clock())
    except CertificateError as exc:
        raise AuthenticationFailed(f"the {who}'s certificate chain: {exc}") from None
    cert = chain[0]
    if not identity_matches(cert, peer.id_type, peer.data):
        raise AuthenticationFailed(
            f"the {who}'s identity {peer} is neither the subject nor a subjectAltName of the "
            f'certificate "{cert.subject.rfc4514_string()}"'
        )
    try:
        return cfg.trust.verify_signature(
            cert, method, data, data_octets, frozenset(signature.SUPPORTED_HASHES)
        )
    except signature.SignatureError as exc:
        raise AuthenticationFailed(f"the {who}'s AUTH payload does not verify: {exc}") from None


def ppk_identity(sa: IkeSa) -> NotifyPayload:
    return NotifyPayload(NotifyType.PPK_IDENTITY, bytes((PPK_ID_FIXED,)) + sa.config.ppk_id)


def peer_ppk_id(notify: NotifyPayload | None) -> bytes | None:
    """The PPK_ID of a PPK_IDENTITY notify (``None`` without one or of another type)."""
    if notify is None or len(notify.data) < 2 or notify.data[0] != PPK_ID_FIXED:
        return None
    return notify.data[1:]
