"""IKEv1 in a spec: the ``ikev1_mode`` proposal key, the ``strongswan-ikev1`` pair, and
the phases the strongSwan pairs run; every mistake is one sentence naming the field."""

from __future__ import annotations

import pytest

from pqike.errors import ConfigurationError
from pqike.lab import parse_spec
from pqike.lab.registry import default_pairs
from pqike.lab.runner import check_pairs

SPEC = """
[experiment]
seed = 1
pairs = {pairs}
{extra}

[proposals]
{proposals}

[profiles.lan]
[profiles.wan]
delay_ms = 50
"""
V1_MAIN = 'v1 = { ike = "aes256-sha384-x25519", ikev1_mode = "main" }'
V2 = 'v2 = "aes256-sha384-x25519"'


def spec(proposals: str, pairs: str = '["strongswan-ikev1", "strongswan"]', extra: str = ""):
    text = SPEC.format(pairs=pairs, extra=extra, proposals=proposals)
    return parse_spec(text, source="x.toml")


def error(*args: str, **kw: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        spec(*args, **kw)
    return info.value


def test_ikev1_proposals_run_on_the_ikev1_pair_and_the_others_on_ikev2_pairs():
    s = spec(V1_MAIN + '\nv1a = { ike = "aes256-sha384-x25519", ikev1_mode = "aggressive" }\n' + V2)
    assert [p.ikev1_mode for p in s.proposals] == ["main", "aggressive", None]
    cells = [(c.proposal.name, c.pair, c.profile.name) for c in s.cells()]
    assert cells == [
        ("v1", "strongswan-ikev1", "lan"),
        ("v1", "strongswan-ikev1", "wan"),
        ("v1a", "strongswan-ikev1", "lan"),
        ("v1a", "strongswan-ikev1", "wan"),
        ("v2", "strongswan", "lan"),
        ("v2", "strongswan", "wan"),
    ]


@pytest.mark.parametrize(
    ("proposals", "pairs", "field", "words"),
    [
        (
            'v1 = { ike = "aes256-sha384-x25519", ikev1_mode = "quick" }\n' + V2,
            '["strongswan-ikev1", "strongswan"]',
            "proposals.v1.ikev1_mode",
            "must be one of main, aggressive, got 'quick'",
        ),
        (
            'v1 = { ike = "aes256-sha384-x25519", ikev1_mode = 1 }',
            '["strongswan-ikev1"]',
            "proposals.v1.ikev1_mode",
            "must be a string",
        ),
        (
            'v1 = { ike = "aes256gcm16-prfsha384-x25519", ikev1_mode = "main" }',
            '["strongswan-ikev1"]',
            "proposals.v1.ike",
            "IKEv1 has no AEAD for its ISAKMP SA",
        ),
        (
            'v1 = { ike = "aes256-sha384-x25519-ke1_mlkem768", ikev1_mode = "main" }',
            '["strongswan-ikev1"]',
            "proposals.v1.ike",
            "an IKEv1 proposal has one key exchange only",
        ),
        (
            V1_MAIN + "\n" + V2,
            '["strongswan"]',
            "proposals.v1.ikev1_mode",
            "IKEv1 runs only on the strongswan-ikev1 pair, which experiment.pairs "
            "(strongswan) does not list",
        ),
        (
            V2,
            '["strongswan-ikev1", "strongswan"]',
            "experiment.pairs",
            "peer pair 'strongswan-ikev1' runs only proposals with an ikev1_mode",
        ),
        (
            V1_MAIN + "\n" + V2,
            '["strongswan-ikev1"]',
            "proposals.v2",
            "an IKEv2 proposal (no ikev1_mode) runs on none of experiment.pairs",
        ),
    ],
)
def test_a_bad_ikev1_proposal_is_one_error_naming_the_field(proposals, pairs, field, words):
    err = error(proposals, pairs)
    assert err.field == field
    assert str(err).startswith(f"x.toml: {field}: ")
    assert words in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("pair", ["strongswan", "strongswan-ikev1"])
def test_strongswan_pairs_run_the_child_rekey_phase_and_refuse_the_others(pair):
    proposals = V1_MAIN if pair == "strongswan-ikev1" else V2
    pairs = default_pairs()
    # Refused before availability, so this holds on any machine.
    with pytest.raises(ConfigurationError) as info:
        check_pairs(spec(proposals, f'["{pair}"]', 'phases = ["child", "ike"]'), pairs)
    assert info.value.field == "experiment.phases"
    assert str(info.value) == (
        f"x.toml: experiment.phases: peer pair {pair!r} runs only the phases child "
        "(swanctl --rekey --child), not 'ike'"
    )
    assert pairs[pair].runs_phases
    assert pairs[pair].refuse_phases(("child",)) is None
