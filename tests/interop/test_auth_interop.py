"""Authentication against strongSwan 6.0.1, both directions, keys compared with charon's
log as in test_matrix.

- RFC 8784 PPK with x25519+ML-KEM-768, mandatory and optional; a wrong PPK must end in
  AUTHENTICATION_FAILED. pqike with RFC 9867 (optional) falls back to RFC 8784, or to
  no PPK, with strongSwan, which does not know USE_PPK_INT.
- Certificates with an intermediate CA and RFC 7427 signatures: ECDSA P-256 and P-384,
  Ed25519, RSA-3072 with PSS and with PKCS#1 v1.5; CERTREQ honoured (no CERT without
  one); an RSA-4096 chain whose IKE_AUTH fragments at 576 bytes over IPv6; a wrong CA,
  an expired certificate and a certificate for another identity each end in
  AUTHENTICATION_FAILED on both sides.

The certificate cases run charon with kernel-libipsec, not load-tester: load-tester's
own RSA key and on-demand certificates would otherwise be offered to charon too.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from pqike import pki as test_pki
from pqike.interop.lab import Lab, ensure_strongswan
from pqike.interop.peer import (
    PqikeResponder,
    charon_errors,
    lab_unavailable,
    run_pqike_initiator,
    strongswan_child_keys,
    strongswan_ike_keys,
    write_pqike_config,
)
from pqike.pki import generate_key, issue, make_pki, write_certs, write_key

pytestmark = pytest.mark.interop
_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

PREFIX = "pqau"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
PPK_HEX = "5f1d0c6e2a9b8c7d6e5f4a3b2c1d0e0f112233445566778899aabbccddeeff00"


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


def run(lab, direction, sw, pq, ike=HYBRID, fragment_size=1280, until=None):
    """pqike on the left when it initiates, on the right when charon does."""
    if direction == "pqike":
        charon = lab.start_strongswan(
            "right", ike_proposal=ike, fragment_size=fragment_size, **sw("right")
        )
        cfg = write_pqike_config(
            lab.workdir / "left.toml",
            lab,
            "left",
            ike_proposal=ike,
            fragment_size=fragment_size,
            auth=pq("left"),
        )
        out = run_pqike_initiator(lab, "left", cfg, lab.workdir / "left.jsonl")
        log = charon.log()
        return list(out.events), log, out.stdout + out.stderr
    cfg = write_pqike_config(
        lab.workdir / "right.toml",
        lab,
        "right",
        ike_proposal=ike,
        fragment_size=fragment_size,
        auth=pq("right"),
    )
    responder = PqikeResponder(lab, "right", cfg, lab.workdir / "right.jsonl").start()
    charon = lab.start_strongswan(
        "left", ike_proposal=ike, fragment_size=fragment_size, **sw("left")
    )
    result = charon.initiate(timeout=15, check=False)
    # A responder whose AUTH the initiator refuses is established until the
    # INFORMATIONAL with AUTHENTICATION_FAILED arrives: failure cases wait for that.
    ends = until or ("child_sa_established", "ike_sa_failed")
    events = responder.wait_for(lambda ev: any(e["event"] in ends for e in ev))
    return events, result.log, responder.stop()


def agreed(events, log, output):
    ike = next((e for e in events if e["event"] == "ike_sa_established"), None)
    child = next((e for e in events if e["event"] == "child_sa_established"), None)
    assert ike is not None and child is not None, f"{events}\n{output[-2000:]}\n{log[-3000:]}"
    assert strongswan_ike_keys(log) == ike["keys"]
    assert strongswan_child_keys(log) == child["keys"]
    assert charon_errors(log) == []


@pytest.mark.parametrize("required", [True, False], ids=["mandatory", "optional"])
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_ppk_rfc_8784_with_ml_kem(strongswan, direction, required):
    ppk_sw = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    ppk_pq = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    with Lab(prefix=PREFIX) as lab:
        events, log, output = run(lab, direction, lambda s: ppk_sw, lambda s: ppk_pq)
    agreed(events, log, output)
    assert "using PPK for PPK_ID 'ppk-lab'" in log


@pytest.mark.parametrize(
    "sw_ppk", [True, False], ids=["strongswan-has-the-ppk", "strongswan-without-ppk"]
)
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_rfc_9867_optional_falls_back_cleanly_with_strongswan(strongswan, direction, sw_ppk):
    # strongSwan knows RFC 8784 only: it ignores USE_PPK_INT and answers USE_PPK (or
    # nothing); an rfc9867 initiator also offered USE_PPK, so the PPK is used the RFC 8784
    # way, or not at all when strongSwan has none. An rfc9867 responder answers
    # strongSwan's USE_PPK with USE_PPK (RFC 9867 3: a responder answers one of them).
    sw = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": False} if sw_ppk else {}
    pq = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_mode": "rfc9867"}
    with Lab(prefix=PREFIX) as lab:
        events, log, output = run(lab, direction, lambda s: sw, lambda s: pq)
    agreed(events, log, output)
    assert ("using PPK for PPK_ID 'ppk-lab'" in log) == sw_ppk
    if direction == "pqike":
        # charon saw USE_PPK_INT (16445, a type it does not know) next to USE_PPK and
        # answered without it.
        request = next(line for line in log.splitlines() if "parsed IKE_SA_INIT request" in line)
        response = next(line for line in log.splitlines() if "generating IKE_SA_INIT resp" in line)
        assert "N((16445)) N(USE_PPK)" in request
        assert "16445" not in response and ("N(USE_PPK)" in response) == sw_ppk


def _failed_both(events, log, output):
    failed = [e for e in events if e["event"] == "ike_sa_failed"]
    assert failed and failed[0]["notify_name"] == "AUTHENTICATION_FAILED", (events, output[-2000:])
    assert "AUTHENTICATION_FAILED" in log or "AUTH_FAILED" in log, log[-3000:]
    return failed[0]["reason"]


@pytest.mark.parametrize("required", [True, False], ids=["mandatory", "optional"])
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_a_wrong_ppk_ends_in_authentication_failed(strongswan, direction, required):
    sw = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    pq = {"ppk_hex": "00" * 32, "ppk_id": "ppk-lab", "ppk_required": required}
    with Lab(prefix=PREFIX) as lab:
        events, log, output = run(lab, direction, lambda s: sw, lambda s: pq)
    _failed_both(events, log, output)


# --- certificates ------------------------------------------------------------------------

CLASSIC = "aes256gcm16-prfsha384-x25519"
IDS = ["left.pqike.test", "right.pqike.test"]
#: key type, RSA-PSS, and the scheme charon names in "authentication of ... with X".
CERT_CASES = {
    "p256": ("p256", False, "ECDSA_WITH_SHA256_DER"),
    "p384": ("p384", False, "ECDSA_WITH_SHA384_DER"),
    "ed25519": ("ed25519", False, "ED25519"),
    "rsa3072-pss": ("rsa3072", True, "RSA_EMSA_PSS_SHA2_256_SALT_32"),
    "rsa3072-pkcs1": ("rsa3072", False, "RSA_EMSA_PKCS1_SHA2_256"),
}


def _pki(lab: Lab, key_type: str = "p256", rsa_pss: bool = False) -> test_pki.TestPki:
    return make_pki(lab.workdir / "pki", IDS, key_type=key_type, rsa_pss=rsa_pss)


def _inters(pki: test_pki.TestPki) -> tuple[str, ...]:
    return tuple(str(pki.ca_path.parent / f"intermediate{n}.pem") for n in (1,))


def sw_certs(pki: test_pki.TestPki, side: str, *, rsa_pss: bool = False, **extra) -> dict:
    """charon: our key and certificate, the CA and the intermediate as authorities."""
    e = pki.entities[f"{side}.pqike.test"]
    return dict(
        auth="pubkey",
        kernel="libipsec",
        cert=str(e.cert_path),
        key=str(e.key_path),
        cacert=str(pki.ca_path),
        intermediates=_inters(pki),
        extra_charon="  rsa_pss = yes" if rsa_pss else "",
        **extra,
    )


def pq_certs(pki: test_pki.TestPki, side: str, *, rsa_pss: bool = False, **extra) -> dict:
    """pqike: key, certificate file (with the intermediate after it), the CA."""
    e = pki.entities[f"{side}.pqike.test"]
    return dict(
        key=str(e.key_path),
        certificate=str(e.cert_path),
        cacerts=[str(pki.ca_path)],
        rsa_pss=rsa_pss,
        **extra,
    )


def _pqike_side(direction: str) -> str:
    return "left" if direction == "pqike" else "right"


def _sw_side(direction: str) -> str:
    return "right" if direction == "pqike" else "left"


@pytest.mark.parametrize("case", list(CERT_CASES))
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_certificates_with_an_intermediate_ca(strongswan, direction, case):
    key_type, pss, scheme = CERT_CASES[case]
    with Lab(prefix=PREFIX) as lab:
        pki = _pki(lab, key_type, pss)
        events, log, output = run(
            lab,
            direction,
            lambda s: sw_certs(pki, s, rsa_pss=pss),
            lambda s: pq_certs(pki, s, rsa_pss=pss),
            ike=CLASSIC,
        )
    agreed(events, log, output)
    pq, sw = _pqike_side(direction), _sw_side(direction)
    # charon verified pqike's signature and signed with the scheme we expect ...
    assert f"authentication of '{pq}.pqike.test' with {scheme} successful" in log, log[-4000:]
    assert f"authentication of '{sw}.pqike.test' (myself) with {scheme} successful" in log
    # ... and both sent the intermediate: the chains are complete on the wire.
    assert 'received issuer cert "O=pqike test PKI, CN=pqike intermediate CA 1"' in log
    assert 'sending issuer cert "O=pqike test PKI, CN=pqike intermediate CA 1"' in log


@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_certreq_is_honoured(strongswan, direction):
    """Without charon's CERTREQ pqike (send_cert ifasked) sends no CERT; charon then
    authenticates it with the certificate it was given. pqike's CERTREQ names its CA,
    and charon answers it with its chain."""
    pq_side = _pqike_side(direction)
    with Lab(prefix=PREFIX) as lab:
        pki = _pki(lab)
        pq_cert = str(pki.entities[f"{pq_side}.pqike.test"].cert_path)
        events, log, output = run(
            lab,
            direction,
            lambda s: sw_certs(pki, s, send_certreq=False, peer_cert=pq_cert),
            lambda s: pq_certs(pki, s, send_cert="ifasked"),
            ike=CLASSIC,
        )
    agreed(events, log, output)
    parsed = re.findall(r"parsed IKE_AUTH (?:request|response) 1 \[ (I[^\]]*)\]", log)
    assert parsed and all("CERT " not in p.replace("CERTREQ", "") for p in parsed), parsed
    assert "sending cert request" not in log
    assert 'received cert request for "O=pqike test PKI, CN=pqike test CA"' in log
    assert "sending end entity cert" in log and "sending issuer cert" in log


@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_an_rsa_4096_chain_fragments_at_576_over_ipv6(strongswan, direction):
    with Lab(prefix=PREFIX, ipv6=True) as lab:
        pki = _pki(lab, "rsa4096")
        events, log, output = run(
            lab,
            direction,
            lambda s: sw_certs(pki, s),
            lambda s: pq_certs(pki, s),
            ike=HYBRID,
            fragment_size=576,
        )
    agreed(events, log, output)
    counts = [
        int(n) for n in re.findall(r"IKE_AUTH (?:request|response) \d+ \[ EF\(1/(\d+)\) \]", log)
    ]
    # Both IKE_AUTH messages (one parsed, one generated by charon) are fragmented;
    # four 4096-bit certificates and two 512-byte signatures need many 576-byte datagrams.
    assert len(counts) >= 2 and min(counts) >= 5, counts
    assert "RSA_EMSA_PKCS1_SHA2_256 successful" in log


def _bad_credential(lab: Lab, pki: test_pki.TestPki, case: str, side: str) -> tuple[str, str]:
    """(key file, certificate file) of a credential for ``side`` that must be refused."""
    ident = f"{side}.pqike.test"
    out = lab.workdir / f"bad-{case}"
    if case == "wrong-ca":
        other = make_pki(out, [ident], key_type="p256")
        e = other.entities[ident]
        return str(e.key_path), str(e.cert_path)
    out.mkdir(parents=True, exist_ok=True)
    from pqike.crypto.certs import load_private_key

    inter_key = load_private_key(pki.ca_path.parent / "intermediate1.key")
    issuer = (pki.intermediates[0], inter_key)
    key = generate_key("p256")
    if case == "expired":
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
        cert = issue(key, ident, issuer, identity=ident, not_before=start, days=1)
    else:  # wrong-id: a valid certificate, but for another name
        cert = issue(key, "elsewhere.pqike.test", issuer, identity="elsewhere.pqike.test")
    key_path, cert_path = out / "ee.key", out / "ee.pem"
    write_key(key_path, key)
    write_certs(cert_path, cert, pki.intermediates[0])
    return str(key_path), str(cert_path)


def _refused_both(events, log, output):
    failed = [e for e in events if e["event"] == "ike_sa_failed"]
    assert failed and failed[0]["notify_name"] == "AUTHENTICATION_FAILED", (
        events,
        output[-2000:],
        log[-3000:],
    )
    assert "N(AUTH_FAILED)" in log, log[-3000:]
    return failed[0]["reason"]


@pytest.mark.parametrize("case", ["wrong-ca", "expired", "wrong-id"])
@pytest.mark.parametrize("culprit", ["pqike", "strongswan"])
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_bad_certificates_end_in_authentication_failed(strongswan, direction, culprit, case):
    """The ``culprit`` authenticates with a bad certificate; the other refuses it."""
    bad_side = _pqike_side(direction) if culprit == "pqike" else _sw_side(direction)
    with Lab(prefix=PREFIX) as lab:
        pki = _pki(lab)
        key, cert = _bad_credential(lab, pki, case, bad_side)

        def sw(side):
            conf = sw_certs(pki, side)
            if side == bad_side:
                conf.update(key=key, cert=cert)
            return conf

        def pq(side):
            conf = pq_certs(pki, side)
            if side == bad_side:
                conf.update(key=key, certificate=cert)
            return conf

        events, log, output = run(lab, direction, sw, pq, ike=CLASSIC, until=("ike_sa_failed",))
    reason = _refused_both(events, log, output)
    if culprit == "strongswan":
        expected = {
            "wrong-ca": "no trusted CA issued",
            "expired": "expired on",
            "wrong-id": "is neither the subject nor a subjectAltName",
        }[case]
        assert expected in reason, reason
    else:  # charon refused it: its log says why
        expected = {
            "wrong-ca": 'no issuer certificate found for "O=pqike test PKI, CN=pqike intermediate',
            "expired": "subject certificate invalid (valid from",
            "wrong-id": f"no trusted ECDSA public key found for '{bad_side}.pqike.test'",
        }[case]
        assert expected in log, log[-3000:]
