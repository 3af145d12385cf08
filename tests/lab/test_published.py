"""The committed sizes-1480 comparison is generated from the committed measurements."""

from __future__ import annotations

from pathlib import Path

from pqike.lab.published import PUBLISHED, comparison
from pqike.lab.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "sizes-1480"


def test_published_md_is_what_the_measurements_give():
    assert (RESULTS / "published.md").read_text() == comparison(RESULTS)


def test_every_published_counterpart_is_a_proposal_of_the_spec():
    spec = load_spec(ROOT / "experiments" / "sizes-1480.toml")
    names = {p.name for p in spec.proposals}
    assert {p.proposal for p in PUBLISHED if p.proposal} <= names
    assert {name for p in PUBLISHED for name, _ in p.also} <= names
    assert {p.fragment_size for p in spec.profiles} == {1480}
    assert spec.repetitions == 1


def test_the_measured_column_comes_from_messages_csv(tmp_path):
    text = (RESULTS / "messages.csv").read_text()
    # Change one measured size: the table must follow it, proving it is not typed in.
    (tmp_path / "messages.csv").write_text(text.replace(",1249,1249,", ",1250,1250,", 1))
    assert comparison(tmp_path) != comparison(RESULTS)


def test_ml_dsa_87_with_one_and_two_certificates_is_beside_dilithium5():
    text = (RESULTS / "published.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| IKE_AUTH Dilithium5")]
    assert len(rows) == 2
    assert "`x25519+mlkem768+mldsa87`" in rows[0] and "two CERT" in rows[0]
    assert "`x25519+mlkem768+mldsa87-1cert`" in rows[1] and "one CERT" in rows[1]
    # ML-DSA-87 (FIPS 204) and Dilithium5 (round 3) signatures differ by 32 bytes.
    assert "signature 4,595" in text and "signature 4,627" in text
