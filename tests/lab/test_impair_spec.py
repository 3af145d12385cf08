"""Impairments in experiment specs: ``impair`` and ``responder_impair`` per proposal,
applied by the pqike pairs, each mistake refused in one sentence naming the field."""

from __future__ import annotations

import pytest

from pqike.errors import ConfigurationError
from pqike.lab import parse_spec, run_cell

SPEC = """
[experiment]
seed = 1
repetitions = 1
pairs = ["memory"]

[proposals]
clean = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
bad-initiator = { ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", impair = ["wrong-int-auth"] }

[proposals.bad-responder]
ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
responder_impair = ["wrong-int-auth"]

[profiles.lan]
"""


def handshake(name: str, text: str = SPEC):
    spec = parse_spec(text, default_name="impaired")
    (cell,) = [c for c in spec.cells() if c.proposal.name == name]
    (row,) = run_cell(spec, cell).handshakes.to_dict("records")
    return row


def test_the_spec_carries_each_sides_impairments():
    spec = parse_spec(SPEC)
    by_name = {p.name: p for p in spec.proposals}
    assert by_name["clean"].impair == by_name["clean"].responder_impair == frozenset()
    assert by_name["bad-initiator"].impair == {"wrong-int-auth"}
    assert by_name["bad-responder"].responder_impair == {"wrong-int-auth"}
    assert by_name["bad-responder"].impair == frozenset()


def test_an_impaired_proposal_shows_the_impaired_behaviour():
    # RFC 9242 3.3.2: AUTH signs IntAuth; one flipped bit fails authentication, on
    # whichever side carries the impairment, while the clean proposal comes up.
    assert handshake("clean")["established"]
    initiator = handshake("bad-initiator")
    assert not initiator["established"]
    assert initiator["failure"] == "initiator: responder answered AUTHENTICATION_FAILED"
    responder = handshake("bad-responder")
    assert not responder["established"]
    assert responder["failure"] == "initiator: the responder's AUTH payload does not verify"


def error_for(text: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        parse_spec(text, source="experiments/x.toml")
    return info.value


def test_an_unknown_impairment_names_the_field_and_the_name():
    err = error_for(SPEC.replace('impair = ["wrong-int-auth"]', 'impair = ["no-such"]'))
    assert err.field == "proposals.bad-initiator.impair[0]"
    assert str(err) == (
        "experiments/x.toml: proposals.bad-initiator.impair[0]: unknown impairment "
        "'no-such' (`pqike impairments` lists them)"
    )


def test_impairments_must_be_a_list():
    err = error_for(SPEC.replace('responder_impair = ["wrong-int-auth"]', 'responder_impair = "x"'))
    assert err.field == "proposals.bad-responder.responder_impair"
    assert "must be a list of impairments" in str(err)


def test_a_strongswan_pair_refuses_impairments():
    err = error_for(SPEC.replace('pairs = ["memory"]', 'pairs = ["memory", "strongswan"]'))
    assert err.field == "proposals.bad-initiator.impair"
    assert str(err).endswith(
        "impairments apply only to the memory and udp pairs (two pqike peers), "
        "but experiment.pairs has 'strongswan'"
    )


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [("auth", '"mldsa65"', "auth = 'mldsa65'"), ("preset", '"minimal"', "preset = 'minimal'")],
)
def test_a_strongswan_pair_refuses_what_only_pqike_peers_do(key, value, said):
    # A strongSwan pair would ignore the key and its cells would carry a false label.
    spec = (
        '[experiment]\npairs = ["memory", "pqike-strongswan"]\n[proposals]\n'
        f'p = {{ ike = "aes256gcm16-prfsha384-x25519", {key} = {value} }}\n'
        "[profiles.lan]\ndelay_ms = 0\n"
    )
    err = error_for(spec)
    assert err.field == f"proposals.p.{key}"
    assert str(err).endswith(
        f"{said} applies only to the memory and udp pairs (two pqike peers), "
        "but experiment.pairs has 'pqike-strongswan'"
    )


def test_the_udp_pair_applies_them_too():
    row = handshake("bad-initiator", SPEC.replace('pairs = ["memory"]', 'pairs = ["udp"]'))
    assert not row["established"]
    assert row["failure"] == "initiator: responder answered AUTHENTICATION_FAILED"
