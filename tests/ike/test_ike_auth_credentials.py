"""IKE_AUTH with certificates and signatures (RFC 7296 3.6/3.7, RFC 7427, ML-DSA per
draft-ietf-ipsecme-ikev2-pqc-auth) and with a PPK (RFC 8784), between two in-memory
pqike peers: real keys, real certificates, every message through the codec."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pqike.constants import NotifyType
from pqike.crypto.certs import Credential, TrustStore
from pqike.crypto.keys import ppk_keys
from pqike.crypto.prf import get_prf
from pqike.handshake import run_handshake
from pqike.ike.events import IkeSaEstablished, IkeSaFailed
from pqike.pki import generate_key, make_pki

INI, RES = "initiator.pqike.example", "responder.pqike.example"
X25519 = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
KINDS = ["p256", "p384", "p521", "ed25519", "ed448", "rsa2048", "mldsa44", "mldsa65", "mldsa87"]


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkis")
    return {k: make_pki(base / k, [INI, RES], key_type=k) for k in KINDS}


def creds(pki, **extra):
    trust = TrustStore((pki.ca,))
    ini = {"credential": Credential(pki.entities[INI].key, pki.chain(INI)), "trust": trust}
    res = {"credential": Credential(pki.entities[RES].key, pki.chain(RES)), "trust": trust}
    return {**ini, **extra}, {**res, **extra}


def events(result, side, kind):
    evs = result.initiator_events if side == "initiator" else result.responder_events
    return [e for e in evs if isinstance(e, kind)]


def both_failed(result, notify=NotifyType.AUTHENTICATION_FAILED):
    assert not result.established
    reasons = []
    for side in ("initiator", "responder"):
        failed = events(result, side, IkeSaFailed)
        assert [f.notify for f in failed] == [notify], (side, failed)
        reasons.append(failed[0].reason)
    return reasons


@pytest.mark.parametrize("proposal", [X25519, HYBRID])
@pytest.mark.parametrize("kind", KINDS)
def test_certificates_of_every_kind_authenticate_both_peers(pkis, kind, proposal):
    ini, res = creds(pkis[kind])
    result = run_handshake(proposal, initiator_options=ini, responder_options=res)
    assert result.established, result.failures
    a, b = (
        events(result, "initiator", IkeSaEstablished),
        events(result, "responder", IkeSaEstablished),
    )
    assert a[0].keys == b[0].keys
    assert str(a[0].remote_id) == RES and str(b[0].remote_id) == INI


@pytest.mark.parametrize("kind", ["mldsa44", "mldsa65", "mldsa87"])
def test_ml_dsa_ike_auth_fragments_at_576(pkis, kind):
    ini, res = creds(pkis[kind])
    result = run_handshake(HYBRID, fragment_size=576, initiator_options=ini, responder_options=res)
    assert result.established, result.failures
    auth = [m for m in result.trace.messages if m.exchange == "IKE_AUTH"]
    assert all(m.fragments > 1 for m in auth)
    assert max(d.ip_bytes for d in result.trace.datagrams if d.exchange == "IKE_AUTH") <= 576


def test_an_unknown_ca_fails_on_both_sides(pkis):
    ini, res = creds(pkis["p256"])
    res["trust"] = TrustStore((pkis["p384"].ca,))
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res))
    assert "another CA of the same name issued it" in reasons[1]


def test_an_expired_certificate_fails_on_both_sides(pkis, tmp_path):
    ini, res = creds(pkis["ed25519"])
    # The validation clock is two years ahead: every certificate has expired.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=730)
    res["validation_clock"] = lambda: later
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res))
    assert "expired on" in reasons[1]


def test_an_identity_not_in_the_certificate_fails_on_both_sides(pkis):
    ini, res = creds(pkis["p256"])
    # The initiator claims an identity whose certificate it does not hold.
    ini["credential"] = Credential(pkis["p256"].entities[RES].key, pkis["p256"].chain(RES))
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res))
    assert f"identity {INI} is neither the subject nor a subjectAltName" in reasons[1]


@pytest.mark.parametrize("kind", ["mldsa44", "mldsa65", "mldsa87"])
def test_a_wrong_ml_dsa_signature_fails_on_both_sides(pkis, kind):
    ini, res = creds(pkis[kind])
    # The right certificate, another ML-DSA key of the same parameter set: the
    # signature cannot verify.
    cred = ini["credential"]
    object.__setattr__(cred, "key", generate_key(kind))
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res))
    assert (
        "the initiator's AUTH payload does not verify: the signature does not verify" in reasons[1]
    )


def test_a_key_of_another_ml_dsa_set_than_the_certificate_is_refused(pkis):
    ini, res = creds(pkis["mldsa65"])
    # The responder trusts an ML-DSA-44 CA too, so it announces both sets (RFC 9593)
    # and the initiator's mislabelled signature reaches it.
    res["trust"] = TrustStore((pkis["mldsa65"].ca, pkis["mldsa44"].ca))
    cred = ini["credential"]
    object.__setattr__(cred, "key", pkis["mldsa44"].entities[INI].key)
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res))
    assert "the AlgorithmIdentifier names mldsa44, the certificate has a mldsa65 key" in reasons[1]


def test_supported_auth_methods_are_honoured(pkis):
    # RFC 9593: the responder trusts only an ML-DSA-65 CA and says so in IKE_SA_INIT;
    # an initiator with an ML-DSA-44 key does not try.
    ini, res = creds(pkis["mldsa44"])
    res["trust"] = TrustStore((pkis["mldsa65"].ca,))
    result = run_handshake(X25519, initiator_options=ini, responder_options=res)
    (failed,) = events(result, "initiator", IkeSaFailed)
    assert "SUPPORTED_AUTH_METHODS does not include mldsa44" in failed.reason


def test_certreq_is_honoured_and_send_cert_never_fails(pkis):
    ini, res = creds(pkis["p256"])
    result = run_handshake(X25519, initiator_options=ini, responder_options=res)
    assert result.established
    res_never = {**res, "send_cert": "never"}
    reasons = both_failed(run_handshake(X25519, initiator_options=ini, responder_options=res_never))
    assert "the responder's certificate chain: the peer sent no certificate" in reasons[0]


def test_a_psk_initiator_and_a_certificate_responder_mix(pkis):
    pki = pkis["ed25519"]
    res = {"credential": Credential(pki.entities[RES].key, pki.chain(RES))}
    ini = {"trust": TrustStore((pki.ca,))}
    result = run_handshake(X25519, initiator_options=ini, responder_options=res)
    assert result.established, result.failures


def test_rsa_pss_and_pkcs1_peers_verify_each_other(pkis):
    ini, res = creds(pkis["rsa2048"])
    result = run_handshake(
        X25519, initiator_options={**ini, "rsa_pss": True}, responder_options=res
    )
    assert result.established, result.failures


# --- PPK, RFC 8784 --------------------------------------------------------------------

PPK = {"ppk": bytes(range(32)), "ppk_id": b"ppk-1"}


def _agreed(result):
    a = events(result, "initiator", IkeSaEstablished)[0]
    b = events(result, "responder", IkeSaEstablished)[0]
    assert a.keys == b.keys
    return a.keys


def test_ppk_keys_are_prf_plus_of_the_ppk_over_sk_d_and_sk_p():
    # RFC 8784 3: SK_d' = prf+(PPK, SK_d), SK_pi' = prf+(PPK, SK_pi), SK_pr' likewise;
    # SK_a and SK_e are not touched. Checked against HMAC-SHA-384 by hand.
    import hashlib
    import hmac

    base = _agreed(run_handshake(X25519))
    prf = get_prf(6)  # PRF_HMAC_SHA2_384
    mixed = ppk_keys(prf, base, b"k" * 32)
    t1 = hmac.new(b"k" * 32, base.sk_d + b"\x01", hashlib.sha384).digest()
    assert mixed.sk_d == t1[: len(base.sk_d)]
    assert mixed.sk_pi == prf.plus(b"k" * 32, base.sk_pi, len(base.sk_pi))
    assert mixed.sk_pr == prf.plus(b"k" * 32, base.sk_pr, len(base.sk_pr))
    assert dataclasses.replace(mixed, sk_d=base.sk_d, sk_pi=base.sk_pi, sk_pr=base.sk_pr) == base


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize("proposal", [X25519, HYBRID])
def test_a_ppk_on_both_sides_is_used(proposal, required):
    opts = {**PPK, "ppk_required": required}
    result = run_handshake(proposal, initiator_options=opts, responder_options=opts)
    assert result.established, result.failures
    _agreed(result)
    plain = run_handshake(proposal)

    def sizes(r, exchange):
        return [m.ike_bytes for m in r.trace.messages if m.exchange == exchange]

    # USE_PPK: an empty Notify (8 bytes) each way.
    assert [
        a - b
        for a, b in zip(sizes(result, "IKE_SA_INIT"), sizes(plain, "IKE_SA_INIT"), strict=True)
    ] == [
        8,
        8,
    ]
    # IKE_AUTH: PPK_IDENTITY (8 + 1 + PPK_ID) from the initiator, plus NO_PPK_AUTH
    # (8 + 48 bytes of PSK AUTH data) when the PPK is optional; an empty PPK_IDENTITY
    # back from the responder.
    grown = [
        a - b for a, b in zip(sizes(result, "IKE_AUTH"), sizes(plain, "IKE_AUTH"), strict=True)
    ]
    assert grown == [9 + len(PPK["ppk_id"]) + (0 if required else 56), 8]


def test_an_optional_ppk_falls_back_to_no_ppk_auth():
    result = run_handshake(X25519, initiator_options=PPK)  # the responder has no PPK
    assert result.established, result.failures
    _agreed(result)


def test_a_mandatory_ppk_without_one_at_the_responder_stops_the_initiator():
    # As strongSwan: the initiator gives up before IKE_AUTH, the responder's half-open
    # SA times out.
    result = run_handshake(X25519, initiator_options={**PPK, "ppk_required": True})
    (failed,) = events(result, "initiator", IkeSaFailed)
    assert failed.notify == NotifyType.AUTHENTICATION_FAILED
    assert "PPK is required but the responder did not send USE_PPK" in failed.reason


def test_a_responder_requiring_a_ppk_refuses_an_initiator_without():
    opts = {**PPK, "ppk_required": True}
    reasons = both_failed(run_handshake(X25519, responder_options=opts))
    assert "did not send USE_PPK" in reasons[1]


@pytest.mark.parametrize("required", [True, False])
def test_a_wrong_ppk_fails_on_both_sides(required):
    ini = {**PPK, "ppk_required": required}
    res = {**ini, "ppk": bytes(32)}
    both_failed(run_handshake(HYBRID, initiator_options=ini, responder_options=res))


def test_ppk_with_certificates(pkis):
    ini, res = creds(pkis["mldsa65"], **PPK, ppk_required=True)
    result = run_handshake(HYBRID, initiator_options=ini, responder_options=res)
    assert result.established, result.failures


def test_trust_needs_a_clock_from_the_application(pkis):
    """The core reads no wall clock: a configuration that checks certificates must be
    given one (pqike.handshake and pqike.io pass pqike.clock.utc_now)."""
    from pqike.errors import ConfigurationError
    from pqike.handshake import make_config

    ini, _ = creds(pkis["p256"])
    with pytest.raises(ConfigurationError, match="trust needs a validation_clock"):
        make_config(X25519, local_id=INI, validation_clock=None, **ini)
    fixed = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert make_config(X25519, local_id=INI, validation_clock=lambda: fixed, **ini)
