"""pqike against strongSwan 6.0.1 over real UDP, in both directions.

Every case runs twice: pqike initiates to a strongSwan responder, and strongSwan
initiates to a pqike responder, each peer in its own network namespace (pqike.interop.lab)
and pqike as the process a person runs (``pqike initiate`` / ``pqike respond`` with
``--events``). A case passes when

- both sides have the IKE SA and its Child SA up;
- both report the same suite: ``swanctl --list-sas --raw`` translated to proposal
  syntax equals pqike's ``suite``, and both equal the configured proposal;
- the IKE SPIs and the Child SA's ESP SPIs agree;
- the keys are identical: SK_d, SK_a, SK_e, SK_p as charon derived them last (level-4
  log) against pqike's, and the Child SA's KEYMAT (RFC 7296 2.17) likewise;
- charon's log holds no error line (``pqike.interop.peer.charon_errors``);
- on the wire (captured in the initiator's namespace) there is one IKE_INTERMEDIATE
  exchange per additional key exchange (RFC 9370) and no datagram after IKE_SA_INIT is
  larger than the fragment size (RFC 7383; IKE_SA_INIT cannot be fragmented).

The matrix covers each dimension in both directions without the full cross product:
key exchange (classical, hybrid with one and two additional rounds, ML-KEM alone),
IKE and ESP cipher (AES-GCM-128/256, ChaCha20-Poly1305, AES-CBC with HMAC), address
family, fragment size (1280, 576) and ports (500/4500, custom ports with the non-ESP
marker). Then a wrong PSK and no common proposal must end with the right Notify on
both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pqike.constants import ProtocolId
from pqike.interop.lab import Lab, ensure_strongswan
from pqike.interop.peer import (
    PqikeResponder,
    charon_errors,
    lab_unavailable,
    run_pqike_initiator,
    strongswan_child_keys,
    strongswan_ike_keys,
    strongswan_suite,
    write_pqike_config,
)
from pqike.proposal import NegotiatedSuite, parse_proposals

pytestmark = pytest.mark.interop

_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

#: Our own lab prefix: other runs may use the lab at the same time.
PREFIX = "pqmx"
PQIKE_INITIATES = "pqike-to-strongswan"
STRONGSWAN_INITIATES = "strongswan-to-pqike"
DIRECTIONS = (PQIKE_INITIATES, STRONGSWAN_INITIATES)


@dataclass(frozen=True)
class Case:
    """One configuration both peers are given."""

    name: str
    ike: str
    esp: str = "aes256gcm16"
    ipv6: bool = False
    fragment_size: int = 1280
    port: int = 500
    nat_t_port: int = 4500

    @property
    def id(self) -> str:
        ports = "" if self.port == 500 else f"-ports{self.port}"
        family = "v6" if self.ipv6 else "v4"
        return f"{self.name}-{family}-frag{self.fragment_size}{ports}"

    def strongswan(self, **overrides) -> dict:
        return {
            "ike_proposal": self.ike,
            "esp_proposal": self.esp,
            "fragment_size": self.fragment_size,
            "port": self.port,
            "port_nat_t": self.nat_t_port,
            **overrides,
        }

    def pqike(self, **overrides) -> dict:
        return {
            "ike_proposal": self.ike,
            "esp_proposal": self.esp,
            "fragment_size": self.fragment_size,
            "port": self.port,
            "nat_t_port": self.nat_t_port,
            **overrides,
        }


HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
TWO_ROUNDS = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"

CASES = [
    # classical key exchanges
    Case("x25519", "aes256gcm16-prfsha384-x25519"),
    Case("ecp256", "aes256gcm16-prfsha256-ecp256", ipv6=True),
    Case("modp3072", "aes256gcm16-prfsha256-modp3072", esp="aes128gcm16", fragment_size=576),
    # ML-KEM alone, in the KE payload of IKE_SA_INIT
    Case("mlkem768", "aes256gcm16-prfsha384-mlkem768"),
    Case("mlkem1024", "aes256gcm16-prfsha512-mlkem1024", ipv6=True),
    # hybrid: x25519 then ML-KEM in IKE_INTERMEDIATE (RFC 9370)
    Case("x25519-mlkem768", HYBRID),
    Case("x25519-mlkem768", HYBRID, esp="chacha20poly1305", ipv6=True),
    Case("x25519-mlkem768", HYBRID, esp="aes256-sha256", fragment_size=576),
    Case("x25519-mlkem1024", "aes256gcm16-prfsha512-x25519-ke1_mlkem1024"),
    Case(
        "x25519-mlkem1024",
        "aes256gcm16-prfsha512-x25519-ke1_mlkem1024",
        esp="aes128gcm16",
        fragment_size=576,
    ),
    # two additional rounds
    Case("x25519-mlkem768-mlkem1024", TWO_ROUNDS),
    Case("x25519-mlkem768-mlkem1024", TWO_ROUNDS, esp="aes128gcm16", ipv6=True),
    # IKE ciphers: AES-GCM-128, ChaCha20-Poly1305, AES-CBC with HMAC
    Case("aes128gcm-x25519", "aes128gcm16-prfsha256-x25519", esp="aes128gcm16"),
    Case(
        "chacha-x25519-mlkem768",
        "chacha20poly1305-prfsha256-x25519-ke1_mlkem768",
        esp="chacha20poly1305",
        fragment_size=576,
    ),
    Case("cbc-hmac-x25519", "aes256-sha256-x25519", esp="aes256-sha256"),
    Case(
        "cbc-hmac-x25519-mlkem768",
        "aes128-sha256-prfsha256-x25519-ke1_mlkem768",
        esp="aes128-sha256",
        ipv6=True,
    ),
    # neither port 500: every message carries the non-ESP marker (RFC 7296 2.23)
    Case("x25519-mlkem768", HYBRID, ipv6=True, port=15500, nat_t_port=15501),
]


def normalized(proposal: str, protocol: int) -> str:
    """The proposal as a negotiated suite writes it (implied PRF and ESN spelled out)."""
    return NegotiatedSuite.from_proposal(parse_proposals(proposal, protocol=protocol)[0]).describe()


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


@dataclass
class Outcome:
    """What both sides said about one handshake."""

    sa: object  # pqike.interop.lab.IkeSaStatus, strongSwan's view
    log: str
    ike: dict  # pqike's ike_sa_established record
    child: dict  # pqike's child_sa_established record
    pqike_events: list
    datagrams: list


def _first(events, kind):
    return next((e for e in events if e["event"] == kind), None)


def _diagnose(log: str, pqike_output: str = "") -> str:
    return f"--- pqike ---\n{pqike_output[-3000:]}\n--- charon log (tail) ---\n{log[-4000:]}"


def handshake(lab: Lab, case: Case, direction: str) -> Outcome:
    """Run the case's handshake, initiator on the left; both views and the capture."""
    capture = lab.capture("left")
    if direction == PQIKE_INITIATES:
        charon = lab.start_strongswan("right", **case.strongswan())
        config = write_pqike_config(lab.workdir / "left.toml", lab, "left", **case.pqike())
        run = run_pqike_initiator(lab, "left", config, lab.workdir / "left.jsonl")
        capture.stop()
        log = charon.log()
        assert run.returncode == 0, _diagnose(log, run.stdout + run.stderr)
        sas = charon.list_sas()
        assert len(sas) == 1, sas
        sa, events = sas[0], list(run.events)
    else:
        config = write_pqike_config(lab.workdir / "right.toml", lab, "right", **case.pqike())
        responder = PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl").start()
        charon = lab.start_strongswan("left", **case.strongswan())
        try:
            sa = charon.initiate(timeout=15).ike_sa  # LabError (with both logs) if not up
        except Exception as exc:
            raise AssertionError(f"{exc}\n--- pqike ---\n{responder.stop()[-3000:]}") from exc
        events = responder.wait_for(lambda ev: _first(ev, "child_sa_established") is not None)
        capture.stop()
        log = charon.log()
    ike, child = _first(events, "ike_sa_established"), _first(events, "child_sa_established")
    assert ike is not None and child is not None, events
    return Outcome(sa, log, ike, child, events, [d for d in capture.datagrams() if d.ike_message])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_both_peers_agree_on_suite_spis_and_keys(strongswan, case, direction):
    with Lab(ipv6=case.ipv6, prefix=PREFIX) as lab:
        out = handshake(lab, case, direction)

    sa, ike, child = out.sa, out.ike, out.child
    # Both sides are up, pqike without a failure.
    assert sa.established
    assert sa.initiator == (direction == STRONGSWAN_INITIATES)
    assert not [e for e in out.pqike_events if e["event"] == "ike_sa_failed"]
    assert ike["initiator"] == (direction == PQIKE_INITIATES)

    # The same suite, and the one configured.
    expected_ike = normalized(case.ike, ProtocolId.IKE)
    expected_esp = normalized(case.esp, ProtocolId.ESP)
    assert strongswan_suite(sa.algorithms) == ike["suite"] == expected_ike
    (sw_child,) = sa.children
    assert sw_child.state == "INSTALLED"
    assert strongswan_suite(sw_child.algorithms, esp=True, raw=sw_child.raw) == child["suite"]
    assert child["suite"] == expected_esp

    # The same SPIs: the IKE SA's, and the ESP SPIs each side chose for its inbound SA.
    assert (sa.spi_i, sa.spi_r) == (ike["spi_i"], ike["spi_r"])
    sw_in, sw_out = sw_child.raw["spi-in"], sw_child.raw["spi-out"]
    if sa.initiator:
        assert (sw_in, sw_out) == (child["child_spi_i"], child["child_spi_r"])
    else:
        assert (sw_in, sw_out) == (child["child_spi_r"], child["child_spi_i"])

    # Identical keys: the final IKE SA keys and the Child SA's KEYMAT.
    assert strongswan_ike_keys(out.log) == ike["keys"]
    assert strongswan_child_keys(out.log) == child["keys"]

    # Nothing went wrong on strongSwan's side.
    assert charon_errors(out.log) == []

    # On the wire: one IKE_INTERMEDIATE exchange per additional key exchange, and every
    # protected message fits the fragment size (IP header + UDP header + payload).
    rounds = expected_ike.count("-ke")
    intermediate = {d.message_id for d in out.datagrams if d.exchange == "IKE_INTERMEDIATE"}
    assert len(intermediate) == rounds == ike["intermediate_exchanges"]
    ip_header = 40 if case.ipv6 else 20
    protected = [d for d in out.datagrams if d.exchange != "IKE_SA_INIT"]
    assert protected
    assert max(len(d.payload) + 8 + ip_header for d in protected) <= case.fragment_size
    ports = {(d.sport, d.dport) for d in protected}
    if case.port != 500:
        assert all(d.has_non_esp_marker for d in out.datagrams)
    elif direction == STRONGSWAN_INITIATES:
        # charon (MOBIKE) floats to 4500 at the first protected exchange; pqike follows.
        assert ports == {(4500, 4500)}
        assert all(d.has_non_esp_marker for d in protected)
    else:
        # pqike floats only when it sees a NAT (or force_nat_t): none here.
        assert ports == {(500, 500)}


# ---------------------------------------------------------------------------
# failures: the right Notify on both sides

WRONG_PSK = "not-the-lab-psk"


def test_a_wrong_psk_at_the_pqike_initiator_ends_in_authentication_failed(strongswan):
    with Lab(prefix=PREFIX) as lab:
        charon = lab.start_strongswan("right", ike_proposal=HYBRID)
        config = write_pqike_config(
            lab.workdir / "left.toml", lab, "left", ike_proposal=HYBRID, psk=WRONG_PSK
        )
        run = run_pqike_initiator(lab, "left", config, lab.workdir / "left.jsonl")
        log, sas = charon.log(), charon.list_sas()

    assert run.returncode == 1
    (failed,) = run.events
    assert failed["event"] == "ike_sa_failed"
    assert failed["notify_name"] == "AUTHENTICATION_FAILED"
    assert not any(sa.established for sa in sas)
    errors = charon_errors(log)
    # Neither the load-tester's PSK nor ours verifies pqike's AUTH, and charon says so.
    assert any("but MAC mismatched" in line for line in errors), errors
    assert any(
        "generating IKE_AUTH response" in line and "N(AUTH_FAILED)" in line for line in errors
    )


def test_a_wrong_psk_at_the_strongswan_initiator_ends_in_authentication_failed(strongswan):
    with Lab(prefix=PREFIX) as lab:
        config = write_pqike_config(lab.workdir / "right.toml", lab, "right", ike_proposal=HYBRID)
        responder = PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl").start()
        charon = lab.start_strongswan("left", ike_proposal=HYBRID, psk=WRONG_PSK)
        result = charon.initiate(timeout=10, check=False)
        events = responder.wait_for(lambda ev: bool(ev))

    assert not result.established
    (failed,) = events
    assert failed["event"] == "ike_sa_failed"
    assert failed["notify_name"] == "AUTHENTICATION_FAILED"
    assert "AUTH payload does not verify" in failed["reason"]
    errors = charon_errors(result.log)
    assert any("received AUTHENTICATION_FAILED notify error" in line for line in errors), errors


def test_no_common_proposal_with_a_pqike_initiator_ends_in_no_proposal_chosen(strongswan):
    with Lab(prefix=PREFIX) as lab:
        charon = lab.start_strongswan("right", ike_proposal="aes256gcm16-prfsha384-ecp256")
        config = write_pqike_config(
            lab.workdir / "left.toml", lab, "left", ike_proposal="aes256gcm16-prfsha384-x25519"
        )
        run = run_pqike_initiator(lab, "left", config, lab.workdir / "left.jsonl")
        log, sas = charon.log(), charon.list_sas()

    assert run.returncode == 1
    (failed,) = run.events
    assert failed["event"] == "ike_sa_failed"
    assert failed["notify_name"] == "NO_PROPOSAL_CHOSEN"
    assert sas == []
    errors = charon_errors(log)
    # charon names the transform type that has no match: x25519 is not ecp256.
    assert any("no acceptable KEY_EXCHANGE_METHOD found" in line for line in errors), errors
    assert any("received proposals unacceptable" in line for line in errors)
    assert any("generating IKE_SA_INIT response 0 [ N(NO_PROP) ]" in line for line in errors)


def test_no_common_proposal_with_a_strongswan_initiator_ends_in_no_proposal_chosen(strongswan):
    with Lab(prefix=PREFIX) as lab:
        config = write_pqike_config(
            lab.workdir / "right.toml", lab, "right", ike_proposal="aes256gcm16-prfsha384-x25519"
        )
        responder = PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl").start()
        charon = lab.start_strongswan("left", ike_proposal="aes256gcm16-prfsha384-ecp256")
        result = charon.initiate(timeout=10, check=False)
        events = responder.wait_for(lambda ev: bool(ev), timeout=2)

    assert not result.established
    errors = charon_errors(result.log)
    assert any("received NO_PROPOSAL_CHOSEN notify error" in line for line in errors), errors
    (failed,) = events
    assert failed["event"] == "ike_sa_failed"
    assert failed["notify_name"] == "NO_PROPOSAL_CHOSEN"
