"""strongSwan 6 <-> strongSwan 6 in the lab's network namespaces.

These prove the lab itself: two charons, each in its own namespace with its own
configuration, PID file and vici socket, negotiate what they were told to and the
capture shows the exchanges RFC 7296 and RFC 9242 prescribe. A missing strongSwan
build is installed (interop/install-strongswan.sh), not skipped.
"""

import os
import shutil
import subprocess

import pytest

from pqike.interop.lab import Lab, ensure_strongswan

pytestmark = pytest.mark.interop


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the interop lab needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "ip netns is unavailable (iproute2 missing)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "ip netns is unavailable"
    return None


_SKIP = _netns_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


def _ike_exchanges(datagrams):
    return [(d.exchange, "r" if d.is_response else "i") for d in datagrams if d.ike_message]


def test_the_build_is_strongswan_6_0_1(strongswan):
    assert strongswan.version() == "strongSwan 6.0.1"


def test_x25519_establishes_without_intermediate_exchange(strongswan):
    proposal = "aes256gcm16-prfsha384-x25519"
    with Lab() as lab:
        capture = lab.capture("left")
        left = lab.start_strongswan("left", ike_proposal=proposal, esp_proposal="aes256gcm16")
        right = lab.start_strongswan("right", ike_proposal=proposal, esp_proposal="aes256gcm16")

        result = left.initiate("conn", child="child", timeout=15)
        capture.stop()

        ike = result.ike_sa
        assert ike.initiator
        assert (ike.local_host, ike.remote_host) == ("192.0.2.1", "192.0.2.2")
        assert ike.algorithms.encr == "AES_GCM_16"
        assert ike.algorithms.encr_keysize == 256
        assert ike.algorithms.integ is None  # AEAD: no INTEG transform
        assert ike.algorithms.prf == "PRF_HMAC_SHA2_384"
        assert ike.algorithms.key_exchanges == ("CURVE_25519",)
        (child,) = ike.children
        assert (child.name, child.state, child.protocol) == ("child", "INSTALLED", "ESP")
        assert child.algorithms.encr == "AES_GCM_16"
        assert child.algorithms.encr_keysize == 256

        (responder_sa,) = right.list_sas()
        assert responder_sa.established
        assert not responder_sa.initiator
        assert (responder_sa.spi_i, responder_sa.spi_r) == (ike.spi_i, ike.spi_r)
        assert responder_sa.algorithms == ike.algorithms

        assert _ike_exchanges(capture.datagrams()) == [
            ("IKE_SA_INIT", "i"),
            ("IKE_SA_INIT", "r"),
            ("IKE_AUTH", "i"),
            ("IKE_AUTH", "r"),
        ]
        # filelog ike = 4 logs the derived keys, for comparison with ours.
        assert "SKEYSEED => 48 bytes" in result.log
        assert "Sk_ei secret => 36 bytes" in result.log


def test_x25519_with_ke1_mlkem768_runs_one_intermediate_exchange(strongswan):
    proposal = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
    with Lab() as lab:
        capture = lab.capture("left")
        left = lab.start_strongswan("left", ike_proposal=proposal)
        right = lab.start_strongswan("right", ike_proposal=proposal)

        result = left.initiate("conn", child="child", timeout=15)
        capture.stop()

        ike = result.ike_sa
        assert ike.algorithms.encr == "AES_GCM_16"
        assert ike.algorithms.prf == "PRF_HMAC_SHA2_384"
        assert ike.algorithms.ke == "CURVE_25519"
        assert ike.algorithms.additional_ke == ((1, "ML_KEM_768"),)
        assert ike.algorithms.key_exchanges == ("CURVE_25519", "ML_KEM_768")
        assert ike.children[0].algorithms.encr == "AES_GCM_16"
        (responder_sa,) = right.list_sas()
        assert responder_sa.established
        assert responder_sa.algorithms == ike.algorithms

        datagrams = [d for d in capture.datagrams() if d.ike_message]
        # RFC 9370: one IKE_INTERMEDIATE per additional key exchange. The 1184-byte
        # ML-KEM-768 key does not fit fragment_size 1280 with the non-ESP marker, so
        # the request goes as two RFC 7383 fragments.
        assert _ike_exchanges(datagrams) == [
            ("IKE_SA_INIT", "i"),
            ("IKE_SA_INIT", "r"),
            ("IKE_INTERMEDIATE", "i"),
            ("IKE_INTERMEDIATE", "i"),
            ("IKE_INTERMEDIATE", "r"),
            ("IKE_AUTH", "i"),
            ("IKE_AUTH", "r"),
        ]
        assert [d.fragment for d in datagrams[2:4]] == [(1, 2), (2, 2)]
        assert [d.message_id for d in datagrams] == [0, 0, 1, 1, 1, 2, 2]
        assert "IntAuth_N = prf(Sk_px, data)" in result.log


def test_ipv6_on_custom_ports_puts_the_non_esp_marker_on_every_message(strongswan):
    settings = {
        "ike_proposal": "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        "port": 15500,
        "port_nat_t": 15501,
    }
    with Lab(ipv6=True) as lab:
        capture = lab.capture("right")
        left = lab.start_strongswan("left", **settings)
        lab.start_strongswan("right", **settings)

        ike = left.initiate(timeout=15).ike_sa
        capture.stop()

        assert (ike.local_host, ike.remote_host) == ("2001:db8::1", "2001:db8::2")
        assert ike.algorithms.key_exchanges == ("CURVE_25519", "ML_KEM_768")
        datagrams = [d for d in capture.datagrams() if d.ike_message]
        # Not talking to port 500, strongSwan's initiator sends every message, IKE_SA_INIT
        # included, from its port_nat_t (ike_natd.c: it cannot float the peer's port later).
        assert {(d.sport, d.dport) for d in datagrams if d.from_original_initiator} == {
            (15501, 15500)
        }
        assert {(d.sport, d.dport) for d in datagrams if not d.from_original_initiator} == {
            (15500, 15501)
        }
        assert all(d.has_non_esp_marker for d in datagrams)


def test_a_proposal_mismatch_fails_and_the_lab_still_cleans_up(strongswan):
    with Lab() as lab:
        left = lab.start_strongswan("left", ike_proposal="aes256gcm16-prfsha384-x25519")
        lab.start_strongswan("right", ike_proposal="aes256gcm16-prfsha384-ecp256")

        result = left.initiate(timeout=5, check=False)

        assert not result.established
        assert "NO_PROPOSAL_CHOSEN" in result.log
        namespaces = list(lab.namespaces.values())
        charons = [d.process.pid for d in lab.daemons.values()]
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listing for ns in namespaces)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in charons)
