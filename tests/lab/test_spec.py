"""Experiment specs: the matrix they describe, and one clear error per kind of mistake.

Every error is a ConfigurationError whose ``field`` is the dotted path of the bad key
and whose message starts with the file name and that path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.crypto.kex import STANDARD_METHODS, KeyExchangeRegistry
from pqike.errors import ConfigurationError
from pqike.lab import load_spec, parse_spec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

GOOD = """
[experiment]
description = "two proposals over two profiles"
seed = 7
repetitions = 3
baseline = "x25519"

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"
"x25519+mlkem768" = { ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", esp = "aes128gcm16" }

[profiles.lan]

[profiles.wan]
delay_ms = [5, 50]
loss = [0, 1]
repetitions = 10
"""


def spec_with(extra: str = "", *, replace: tuple[str, str] | None = None) -> str:
    text = GOOD if replace is None else GOOD.replace(*replace)
    return text + extra


def error_for(text: str, **kw) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        parse_spec(text, source="experiments/x.toml", **kw)
    return info.value


def test_a_spec_is_a_matrix_of_proposals_pairs_and_profiles():
    spec = parse_spec(GOOD, source="experiments/x.toml", default_name="x")
    assert spec.name == "x"
    assert [p.name for p in spec.proposals] == ["x25519", "x25519+mlkem768"]
    assert spec.proposal("x25519+mlkem768").esp == "aes128gcm16"
    assert spec.proposal("x25519").esp == "aes256gcm16"
    # A list in a profile expands into one profile per combination, named after it.
    assert [p.name for p in spec.profiles] == [
        "lan",
        "wan_delay5_loss0",
        "wan_delay5_loss1",
        "wan_delay50_loss0",
        "wan_delay50_loss1",
    ]
    assert spec.pairs == ("memory",)
    cells = spec.cells()
    assert len(cells) == 2 * 1 * 5
    assert cells[0].id == "x25519__memory__lan"
    assert spec.repetitions_for(cells[0]) == 3
    assert spec.repetitions_for(cells[1]) == 10
    assert spec.with_repetitions(2).repetitions_for(cells[1]) == 2


def test_profile_units_become_si_units_for_the_link():
    spec = parse_spec(GOOD)
    wan = next(p for p in spec.profiles if p.name == "wan_delay50_loss1")
    link = wan.link()
    assert (link.delay, link.loss, link.mtu, link.bandwidth) == (0.05, 0.01, 1500, None)


def test_the_shipped_specs_validate():
    names = sorted(p.name for p in EXPERIMENTS.glob("*.toml"))
    assert names == [
        "hybrid-vs-classical.toml",
        "ikev1-vs-ikev2.toml",
        "kem-zoo.toml",
        "lossy-links.toml",
        "paquin-grid.toml",
        "pq-auth.toml",
        "sa-lifetime.toml",
        "sizes-1480.toml",
        "strongswan-peers.toml",
        "strongswan-scenarios.toml",
        "udp-loopback.toml",
    ]
    for path in EXPERIMENTS.glob("*.toml"):
        spec = load_spec(path)
        assert spec.name == path.stem
        assert spec.description


def test_the_hash_follows_the_text():
    assert parse_spec(GOOD).sha256 == parse_spec(GOOD).sha256
    assert parse_spec(GOOD).sha256 != parse_spec(GOOD + "\n# changed\n").sha256


def test_a_value_out_of_range_names_the_field_and_the_value():
    err = error_for(spec_with("\n[profiles.lossy]\nloss = 120\n"))
    assert err.field == "profiles.lossy.loss"
    assert str(err) == (
        "experiments/x.toml: profiles.lossy.loss: must be a percentage from 0 to 100, got 120"
    )


def test_a_bad_value_inside_a_sweep_names_its_index():
    err = error_for(spec_with(replace=("delay_ms = [5, 50]", "delay_ms = [5, -1]")))
    assert err.field == "profiles.wan.delay_ms[1]"
    assert "got -1" in str(err)


def test_an_unknown_key_is_refused():
    err = error_for(spec_with(replace=("seed = 7", "seed = 7\ncolour = 'red'")))
    assert err.field == "experiment.colour"
    assert str(err).startswith("experiments/x.toml: experiment.colour: unknown key")


def test_an_unknown_profile_key_is_refused():
    err = error_for(spec_with("\n[profiles.odd]\nlatency = 5\n"))
    assert err.field == "profiles.odd.latency"


def test_an_unknown_table_is_refused():
    err = error_for(spec_with("\n[network]\ndelay_ms = 5\n"))
    assert err.field == "network"


def test_a_wrong_type_is_refused():
    err = error_for(spec_with(replace=("repetitions = 3", 'repetitions = "ten"')))
    assert err.field == "experiment.repetitions"
    assert "must be an integer from 1 to 1000000, got 'ten'" in str(err)


def test_a_boolean_is_not_a_number():
    err = error_for(spec_with("\n[profiles.odd]\nmtu = true\n"))
    assert err.field == "profiles.odd.mtu"


def test_an_mtu_below_the_ipv4_minimum_is_refused():
    err = error_for(spec_with("\n[profiles.odd]\nmtu = 500\n"))
    assert err.field == "profiles.odd.mtu"
    assert "from 576 to 65535, got 500" in str(err)


def test_a_bad_proposal_names_the_proposal_and_the_token():
    bad = ('x25519 = "aes256gcm16-prfsha384-x25519"', 'x25519 = "aes256gcm16-prfsha384-x25591"')
    err = error_for(spec_with(replace=bad))
    assert err.field == "proposals.x25519"
    assert "x25591" in str(err)
    assert str(err).startswith("experiments/x.toml: proposals.x25519: ")


def test_a_bad_esp_proposal_names_its_field():
    err = error_for(spec_with(replace=('esp = "aes128gcm16"', 'esp = "aes128gcm17"')))
    assert err.field == "proposals.x25519+mlkem768.esp"


def test_an_unavailable_algorithm_is_refused_before_anything_runs():
    class Offline:
        name = "offline"

        def available(self) -> bool:
            return False

        def supports(self, method: int) -> bool:
            return True

        def create(self, method: int):
            raise AssertionError("never created")

    registry = KeyExchangeRegistry()
    registry.register(Offline(), infos=STANDARD_METHODS)
    err = error_for(GOOD, registry=registry)
    assert err.field == "proposals.x25519"
    assert "key exchange x25519 is not available here" in str(err)


def test_an_unknown_peer_pair_is_refused():
    err = error_for(spec_with(replace=("seed = 7", 'seed = 7\npairs = ["memory", "ipsec"]')))
    assert err.field == "experiment.pairs[1]"
    assert "unknown peer pair 'ipsec'" in str(err)
    assert "memory, udp, pqike-strongswan, strongswan-pqike, strongswan" in str(err)


def test_the_baseline_must_be_a_proposal():
    err = error_for(spec_with(replace=('baseline = "x25519"', 'baseline = "x448"')))
    assert err.field == "experiment.baseline"


def test_names_must_be_usable_in_file_names():
    err = error_for(spec_with('\n[profiles."a/b"]\n'))
    assert err.field == "profiles.a/b"


def test_a_spec_needs_proposals_and_profiles():
    assert error_for("[experiment]\nseed = 1\n").field == "proposals"
    err = error_for("[proposals]\nx = 'aes256gcm16-prfsha384-x25519'\n")
    assert err.field == "profiles"


def test_invalid_toml_is_one_error():
    err = error_for("[experiment\n")
    assert err.field is None
    assert str(err).startswith("experiments/x.toml: not valid TOML")


def test_repeat_must_be_positive():
    with pytest.raises(ConfigurationError) as info:
        parse_spec(GOOD).with_repetitions(0)
    assert info.value.field == "repetitions"


def test_a_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        load_spec(tmp_path / "nope.toml")
    assert "cannot read the spec" in str(info.value)


def test_a_profile_can_restrict_its_pairs():
    text = spec_with(replace=("repetitions = 3\n", 'repetitions = 3\npairs = ["memory", "udp"]\n'))
    text = text.replace("[profiles.lan]\n", '[profiles.lan]\npairs = ["udp"]\n')
    spec = parse_spec(text, source="x.toml")
    cells = {(c.pair, c.profile.name) for c in spec.cells()}
    assert ("udp", "lan") in cells and ("memory", "lan") not in cells
    assert ("memory", "wan_delay5_loss0") in cells and ("udp", "wan_delay5_loss0") in cells


def test_a_profile_pair_must_be_one_of_the_experiments_pairs():
    text = spec_with().replace("[profiles.lan]\n", '[profiles.lan]\npairs = ["udp"]\n')
    with pytest.raises(ConfigurationError) as exc:
        parse_spec(text, source="x.toml")
    assert exc.value.field == "profiles.lan.pairs"
    assert "not in experiment.pairs" in str(exc.value)


def test_a_proposal_may_ask_for_a_ppk_in_its_auth():
    # RFC 8784 or RFC 9867: both memory/udp peers get the demo PPK, mandatory.
    ppk = '"x25519+ppk" = { ike = "aes256gcm16-prfsha384-x25519", auth = "psk+ppk9867" }\n'
    spec = parse_spec(
        spec_with(replace=("[profiles.lan]", ppk + "\n[profiles.lan]")),
        source="experiments/x.toml",
    )
    assert spec.proposal("x25519+ppk").auth == "psk+ppk9867"
    bad = '"x" = { ike = "aes256gcm16-prfsha384-x25519", auth = "psk+ppk1234" }\n'
    err = error_for(spec_with(replace=("[profiles.lan]", bad + "\n[profiles.lan]")))
    assert err.field == "proposals.x.auth" and "ppk8784, ppk9867" in str(err)
