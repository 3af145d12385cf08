"""Peer-behaviour presets: ``minimal`` reaches the analytic minimum of every message,
``strongswan`` adds exactly strongSwan 6's default notifies (their lengths against a
real strongSwan pair: tests/interop/test_presets_strongswan.py)."""

from __future__ import annotations

import pytest

from pqike.errors import ConfigurationError
from pqike.handshake import INITIATOR_ID, RESPONDER_ID, make_config, run_handshake
from pqike.lab.spec import parse_spec
from pqike.wire.payloads import TrafficSelector

PROPOSAL = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

# Encoded lengths from RFC 7296 3 (generic payload header 4, IKE header 28), RFC 5282
# (AES-GCM: 8-byte IV, 16-byte ICV) and FIPS 203 (ML-KEM-768 sizes).
HDR, GEN = 28, 4
NONCE = 32  # pqike's and strongSwan's nonce size
X25519, MLKEM768_EK, MLKEM768_CT = 32, 1184, 1088
PRF_SHA384 = 48
TS_IPV4 = 16  # one TS_IPV4_ADDR_RANGE (RFC 7296 3.13.1)


def transform(attributes: int = 0) -> int:
    return 8 + attributes


def sk(inner: int) -> int:
    """An SK payload around ``inner`` bytes: IV, the pad-length byte (no padding is
    needed for GCM's 4-byte alignment of what we encrypt here), ICV."""
    return GEN + 8 + inner + 1 + 16


def analytic_minimum() -> list[int]:
    """IKE message lengths with only the mandatory payloads, for PROPOSAL and the
    identities of ``run_handshake`` with a PSK."""
    # SA with one proposal: ENCR (with its Key Length attribute), PRF, KE, ADDKE1.
    ike_sa = GEN + 8 + transform(4) + transform() + transform() + transform()
    ke = GEN + 4 + X25519
    nonce = GEN + NONCE
    # RFC 9242 3: without INTERMEDIATE_EXCHANGE_SUPPORTED from both, no ADDKE round.
    intermediate_supported = GEN + 4
    sa_init = HDR + ike_sa + ke + nonce + intermediate_supported
    ke_request = HDR + sk(GEN + 4 + MLKEM768_EK)
    ke_response = HDR + sk(GEN + 4 + MLKEM768_CT)
    # ESP SA: one proposal with a 4-byte SPI, ENCR (key length) and ESN (mandatory for
    # ESP, RFC 7296 3.3.3).
    esp_sa = GEN + 8 + 4 + transform(4) + transform()
    ts = GEN + 4 + TS_IPV4
    auth = GEN + 4 + PRF_SHA384

    def ident(name: str) -> int:
        return GEN + 4 + len(name)

    auth_request = HDR + sk(ident(INITIATOR_ID) + auth + esp_sa + ts + ts)
    auth_response = HDR + sk(ident(RESPONDER_ID) + auth + esp_sa + ts + ts)
    return [sa_init, sa_init, ke_request, ke_response, auth_request, auth_response]


def test_minimal_preset_reaches_the_analytic_minimum():
    result = run_handshake(PROPOSAL, preset="minimal")
    assert result.established
    sizes = [m.ike_bytes for m in result.trace.messages]
    assert sizes == analytic_minimum() == [160, 160, 1249, 1153, 228, 228]
    # No NAT detection, so no float to port 4500 and no non-ESP marker.
    assert [d.udp_bytes for d in result.trace.datagrams] == sizes


def test_minimal_is_smaller_than_pqike_and_strongswan():
    totals = {
        preset: run_handshake(PROPOSAL, preset=preset).trace.totals()["udp_bytes"]
        for preset in ("minimal", "pqike", "strongswan")
    }
    assert totals["minimal"] < min(totals["pqike"], totals["strongswan"])


def test_strongswan_preset_adds_strongswans_ike_sa_init_notifies_and_floats():
    ours_run = run_handshake(PROPOSAL, preset="pqike")
    theirs_run = run_handshake(PROPOSAL, preset="strongswan")
    ours, theirs = ours_run.trace.messages, theirs_run.trace.messages
    # Request: SIGNATURE_HASH_ALGORITHMS with four hashes (16), REDIRECT_SUPPORTED (8);
    # response: those hashes, CHILDLESS_IKEV2_SUPPORTED, MULTIPLE_AUTH_SUPPORTED (8 each).
    assert theirs[0].ike_bytes - ours[0].ike_bytes == 16 + 8
    assert theirs[1].ike_bytes - ours[1].ike_bytes == 16 + 8 + 8
    assert theirs[1].payloads.count("N") == ours[1].payloads.count("N") + 3
    # After IKE_SA_INIT on port 4500: the 4-byte non-ESP marker (RFC 3948 2.2).
    marker = [d.udp_bytes - d.ike_bytes for d in theirs_run.trace.datagrams]
    assert marker == [0, 0] + [4] * (len(marker) - 2)
    assert {d.udp_bytes - d.ike_bytes for d in ours_run.trace.datagrams} == {0}


def test_an_unknown_preset_names_the_field():
    with pytest.raises(ConfigurationError) as err:
        make_config(PROPOSAL, local_id="a.example", preset="strongSwan6")
    assert err.value.field == "preset"


def test_the_pqike_preset_keeps_the_old_defaults():
    cfg = make_config(PROPOSAL, local_id="a.example")
    assert (cfg.preset, cfg.fragmentation, cfg.force_nat_t) == ("pqike", True, False)
    assert cfg.local_ts == cfg.remote_ts == (
        TrafficSelector.from_network("0.0.0.0/0"),
        TrafficSelector.from_network("::/0"),
    )
    minimal = make_config(PROPOSAL, local_id="a.example", preset="minimal")
    assert (minimal.fragmentation, minimal.local_ts) == (False, ())


def test_specs_take_a_preset_per_experiment_and_per_proposal():
    spec = parse_spec(
        '[experiment]\npreset = "strongswan"\n[proposals]\n'
        f'a = "{PROPOSAL}"\nb = {{ ike = "{PROPOSAL}", preset = "minimal" }}\n'
        "[profiles.lan]\n"
    )
    assert [p.preset for p in spec.proposals] == ["strongswan", "minimal"]
    with pytest.raises(ConfigurationError) as err:
        parse_spec(f'[proposals]\na = {{ ike = "{PROPOSAL}", preset = "tiny" }}\n[profiles.lan]\n')
    assert err.value.field == "proposals.a.preset"


def test_specs_take_a_certificate_key_type_per_proposal():
    spec = parse_spec(
        f'[proposals]\na = {{ ike = "{PROPOSAL}", auth = "mldsa87" }}\nb = "{PROPOSAL}"\n'
        "[profiles.lan]\n"
    )
    assert [p.auth for p in spec.proposals] == ["mldsa87", "psk"]
    with pytest.raises(ConfigurationError) as err:
        parse_spec(
            f'[proposals]\na = {{ ike = "{PROPOSAL}", auth = "dilithium5" }}\n[profiles.lan]\n'
        )
    assert err.value.field == "proposals.a.auth"
