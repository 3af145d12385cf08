"""The authentication dimension of experiments: the spec's ``auth``/``chain`` keys, the
reproducible lab PKI, the sign/verify CPU columns and the report section they feed."""

from __future__ import annotations

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization

from pqike.crypto import signature as sig
from pqike.errors import ConfigurationError
from pqike.lab import parse_spec, run_cell, run_experiment
from pqike.lab.auth import AuthCpu, TimedCredential, lab_auth, lab_pki
from pqike.lab.auth_report import PLOT, TITLE, applies
from pqike.lab.peers import INITIATOR_ID, RESPONDER_ID

CPU_COLUMNS = (
    "initiator_sign_cpu_s",
    "initiator_verify_cpu_s",
    "responder_sign_cpu_s",
    "responder_verify_cpu_s",
)

SPEC = """
[experiment]
seed = 3
repetitions = 10
pairs = ["memory"]
baseline = "psk"

[proposals]
psk = "aes256gcm16-prfsha384-x25519"
ed1 = { ike = "aes256gcm16-prfsha384-x25519", auth = "ed25519", chain = 1 }
ed2 = { ike = "aes256gcm16-prfsha384-x25519", auth = "ed25519", chain = 2 }
mldsa87 = { ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", auth = "mldsa87", chain = 1 }

[profiles.lan]
fragment_size = [1280, 576]
"""


def _proposal_error(entry: str) -> ConfigurationError:
    text = SPEC.replace(
        'ed1 = { ike = "aes256gcm16-prfsha384-x25519", auth = "ed25519", chain = 1 }',
        f"ed1 = {entry}",
    )
    with pytest.raises(ConfigurationError) as info:
        parse_spec(text, source="x.toml")
    return info.value


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{ ike = "aes256gcm16-prfsha384-x25519", chain = 1 }', "auth is psk"),
        (
            '{ ike = "aes256gcm16-prfsha384-x25519", auth = "p256", chain = 0 }',
            "must be an integer from 1 to 4, got 0",
        ),
        (
            '{ ike = "aes256gcm16-prfsha384-x25519", auth = "p256", chain = 5 }',
            "must be an integer from 1 to 4, got 5",
        ),
        (
            '{ ike = "aes256gcm16-prfsha384-x25519", auth = "p256", chain = "two" }',
            "must be an integer from 1 to 4, got 'two'",
        ),
        (
            '{ ike = "aes256gcm16-prfsha384-x25519", auth = "p256", chain = true }',
            "must be an integer from 1 to 4, got true",
        ),
    ],
)
def test_a_bad_chain_is_one_sentence_naming_the_field(entry, message):
    err = _proposal_error(entry)
    assert err.field == "proposals.ed1.chain"
    assert str(err).startswith("x.toml: proposals.ed1.chain: ")
    assert message in str(err)
    assert "\n" not in str(err)


def test_chain_defaults_to_an_end_entity_and_one_intermediate():
    spec = parse_spec(SPEC)
    chains = {p.name: (p.auth, p.chain) for p in spec.proposals}
    assert chains["ed1"] == ("ed25519", 1)
    assert chains["ed2"] == ("ed25519", 2)
    assert chains["psk"][0] == "psk"
    default = parse_spec(SPEC.replace(", chain = 2", ""))
    assert default.proposal("ed2").chain == 2


def _der(certs) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


@pytest.mark.parametrize("key_type", ["p256", "ed25519", "mldsa44", "rsa3072"])
def test_the_lab_pki_has_the_same_sizes_every_time(key_type):
    a = lab_pki(key_type, 2, (INITIATOR_ID, RESPONDER_ID))
    b = lab_pki(key_type, 2, (INITIATOR_ID, RESPONDER_ID))
    certs_a, certs_b = [a.ca, *a.chains[INITIATOR_ID]], [b.ca, *b.chains[INITIATOR_ID]]
    assert [len(d) for d in _der(certs_a)] == [len(d) for d in _der(certs_b)]
    if key_type in ("p256", "ed25519"):
        # Derived keys, fixed serials and dates, RFC 6979 ECDSA: the very same bytes.
        assert _der(certs_a) == _der(certs_b)
    if key_type == "mldsa44":
        # Derived keys, but ML-DSA signs with fresh randomness: only the signature differs.
        assert [c.tbs_certificate_bytes for c in certs_a] == [
            c.tbs_certificate_bytes for c in certs_b
        ]


def test_chain_is_the_number_of_certificates_sent():
    one = lab_pki("ed25519", 1, (INITIATOR_ID, RESPONDER_ID))
    two = lab_pki("ed25519", 2, (INITIATOR_ID, RESPONDER_ID))
    assert len(one.chains[INITIATOR_ID]) == 1
    assert one.chains[INITIATOR_ID][0].issuer == one.ca.subject
    assert len(two.chains[INITIATOR_ID]) == 2
    ee, intermediate = two.chains[INITIATOR_ID]
    assert ee.issuer == intermediate.subject and intermediate.issuer == two.ca.subject
    # A 20-octet serial number, as CAs issue them (RFC 5280 4.1.2.2).
    assert ee.serial_number.bit_length() == 159


def test_the_pki_of_a_kind_is_made_once_and_the_meters_are_each_sides():
    cache: dict = {}
    first = lab_auth("p256", 1, INITIATOR_ID, RESPONDER_ID, cache)
    second = lab_auth("p256", 1, INITIATOR_ID, RESPONDER_ID, cache)
    assert len(cache) == 1
    assert first.initiator["credential"].chain == second.initiator["credential"].chain
    assert first.initiator_cpu is not first.responder_cpu
    assert lab_auth("psk", 2, INITIATOR_ID, RESPONDER_ID, cache).columns() == dict.fromkeys(
        ("initiator_sign_cpu", "initiator_verify_cpu", "responder_sign_cpu", "responder_verify_cpu")
    )


def test_a_timed_credential_signs_like_the_core_and_counts_cpu():
    pki = lab_pki("ed25519", 1, (INITIATOR_ID,))
    meter = AuthCpu()
    cred = TimedCredential(pki.keys[INITIATOR_ID], pki.chains[INITIATOR_ID], meter=meter)
    method, scheme = sig.choose(cred.key, frozenset(sig.SUPPORTED_HASHES))
    data = cred.sign(method, scheme, b"octets")
    assert sig.verify(
        cred.certificate.public_key(), method, data, b"octets", frozenset(sig.SUPPORTED_HASHES)
    )
    assert meter.sign_s > 0 and meter.verify_s == 0


def test_handshakes_have_sign_and_verify_cpu_per_side():
    spec = parse_spec(SPEC)
    rows = []
    for cell in spec.cells():
        rows.append(run_cell(spec, cell, repetitions=3).handshakes)
    hs = pd.concat(rows)
    assert hs["established"].all()
    for column in CPU_COLUMNS:
        assert column in hs
        certs = hs[hs["auth"] != "psk"][column]
        assert (certs > 0).all(), column
        assert hs[hs["auth"] == "psk"][column].isna().all(), column
    assert set(hs["auth"]) == {"psk", "ed25519", "mldsa87"}
    assert hs[hs["auth"] == "psk"]["cert_chain"].isna().all()
    assert set(hs[hs["proposal"] == "ed2"]["cert_chain"]) == {2}


def test_two_certificates_cost_more_bytes_and_verifying_than_one():
    spec = parse_spec(SPEC)
    lan = spec.profiles[0]
    one = run_cell(
        spec,
        next(c for c in spec.cells() if c.proposal.name == "ed1" and c.profile == lan),
        repetitions=10,
    )
    two = run_cell(
        spec,
        next(c for c in spec.cells() if c.proposal.name == "ed2" and c.profile == lan),
        repetitions=10,
    )
    auth = lambda r: r.messages[r.messages["exchange"] == "IKE_AUTH"]["ike_bytes"].sum()  # noqa: E731
    assert auth(two) > auth(one)
    # Ed25519 sizes never vary: the same bytes in every handshake.
    assert one.handshakes["ip_bytes"].nunique() == 1


def test_the_report_has_the_section_and_plot_when_auth_kinds_differ(tmp_path):
    result = run_experiment(parse_spec(SPEC), tmp_path / "run")
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"## {TITLE}" in report
    assert (tmp_path / "run" / PLOT).exists()
    assert applies(result.handshakes)
    section = report.split(f"## {TITLE}", 1)[1].split("\n## ", 1)[0]
    assert "| Ed25519, 1 cert | x25519 |" in section
    assert "| ML-DSA-87, 1 cert | x25519-ke1_mlkem768 |" in section
    assert "initiator sign" in section
    assert "9,088 (7)" in section  # the published Dilithium5 IKE_AUTH beside ML-DSA-87
    # The bytes come from the tables: the PSK row's IKE_AUTH is what messages.csv says.
    msgs = result.messages
    first = msgs[
        (msgs["proposal"] == "psk")
        & (msgs["profile"] == "lan_fragment1280")
        & (msgs["repetition"] == 0)
    ]
    ke = first[first["exchange"] == "IKE_SA_INIT"]["ip_bytes"].sum()
    auth = first[first["exchange"] == "IKE_AUTH"]["ip_bytes"].sum()
    assert f"| PSK | x25519 | {ke:,} | {auth:,} |" in section


def test_a_run_with_one_auth_kind_has_no_such_section(tmp_path):
    text = SPEC.split("[proposals]")[0] + (
        '[proposals]\npsk = "aes256gcm16-prfsha384-x25519"\n[profiles.lan]\n'
    )
    run_experiment(parse_spec(text), tmp_path / "run", repeat=2)
    assert TITLE not in (tmp_path / "run" / "report.md").read_text()
    assert not (tmp_path / "run" / PLOT).exists()


@pytest.mark.parametrize("base", ["psk", "ed25519"])
def test_a_ppk_suffix_reaches_the_lab_peers(base):
    # RFC 9867: the initiator's last IKE_INTERMEDIATE request carries PPK_IDENTITY_KEY
    # (Notify header 8 + PPK ID type 1 + the 14-octet demo PPK_ID + 8-octet confirmation).
    spec = parse_spec(
        f"""
[experiment]
seed = 3
repetitions = 2
pairs = ["memory", "udp"]

[proposals]
plain = {{ ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", auth = "{base}" }}
ppk = {{ ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", auth = "{base}+ppk9867" }}

[profiles.lan]
delay_ms = 0
"""
    )
    result = run_experiment(spec, report=False)
    assert result.handshakes["established"].all()
    m = result.messages
    asked = m[(m["exchange"] == "IKE_INTERMEDIATE") & ~m["is_response"] & (m["pair"] == "memory")]
    sizes = asked.groupby("proposal")["ike_bytes"].max()
    assert sizes["ppk"] - sizes["plain"] == 8 + 1 + len(b"pqike-demo-ppk") + 8
