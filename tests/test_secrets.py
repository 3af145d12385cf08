"""The secrets transcript: written from the core's events, read back, every derivation
in it recomputed, and strongSwan's charon log converted into the same records."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pqike.crypto import auth as crypto_auth
from pqike.crypto.keys import derive_ike_keys, skeyseed, skeyseed_additional
from pqike.crypto.prf import get_prf
from pqike.handshake import run_handshake
from pqike.secrets import (
    TranscriptError,
    parse_transcript,
    read_transcript,
    transcript_from_charon_log,
    write_transcript,
)

DATA = Path(__file__).parent / "data" / "strongswan"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"


@pytest.fixture(scope="module")
def rekeyed():
    result = run_handshake(HYBRID, "aes256gcm16-x25519-ke1_mlkem768", then=["child", "ike"])
    assert result.established and all(p.ok for p in result.phases)
    return result


def test_transcript_is_0600_and_reads_back(tmp_path, rekeyed):
    path = tmp_path / "s.secrets"
    path.write_text("old")
    os.chmod(path, 0o644)
    n = write_transcript(path, rekeyed.initiator_events)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records = read_transcript(path)
    assert len(records) == n
    kinds = [r.kind for r in records]
    # Three epochs of the first SA and one of the rekeyed SA; four IntAuth steps.
    assert kinds.count("IKE_KEYS") == 4
    assert kinds.count("INT_AUTH") == 4
    assert kinds.count("AUTH") == 2
    assert kinds.count("CHILD_KEYS") == 2
    rekey = [r for r in records if r.kind == "IKE_KEYS" and r.get("exchange") == "CREATE_CHILD_SA"]
    assert rekey[0].bytes_("old_spi_i") == records[0].bytes_("spi_i")
    assert [m for m, _ in rekey[0].ke] == [31, 36, 37]  # KE, then ADDKE1 and ADDKE2


def test_every_epoch_recomputes(rekeyed):
    from pqike.secrets import records_of

    records = [r for e in rekeyed.initiator_events for r in records_of(e)]
    prev_prf = None
    for r in (r for r in records if r.kind == "IKE_KEYS"):
        prf = get_prf(r.get("prf"))
        ni, nr = r.bytes_("ni"), r.bytes_("nr")
        secrets = [s for _, s in r.ke]
        if r.get("exchange") == "IKE_SA_INIT":
            seed = skeyseed(prf, ni, nr, secrets[0])
        else:
            seed = skeyseed_additional(
                prev_prf or prf,
                r.bytes_("sk_d_prev"),
                secrets[0],
                ni,
                nr,
                additional_secrets=secrets[1:],
            )
        assert seed == r.bytes_("skeyseed")
        keys = derive_ike_keys(
            prf,
            seed,
            ni,
            nr,
            r.bytes_("spi_i"),
            r.bytes_("spi_r"),
            encr_key_size=len(r.bytes_("sk_ei")),
            integ_key_size=len(r.bytes_("sk_ai")),
        )
        assert keys.sk_pr == r.bytes_("sk_pr") and keys.sk_d == r.bytes_("sk_d")
        prev_prf = prf
    for r in (r for r in records if r.kind == "INT_AUTH"):
        prf = get_prf(6)
        assert prf(r.bytes_("sk_p"), r.bytes_("prev") + r.bytes_("a") + r.bytes_("p")) == r.bytes_(
            "value"
        )


def test_both_sides_agree(rekeyed):
    from pqike.secrets import records_of

    def lines(events, kind):
        return [r.format() for e in events for r in records_of(e) if r.kind == kind]

    for kind in ("IKE_KEYS", "INT_AUTH", "CHILD_KEYS"):
        assert lines(rekeyed.initiator_events, kind) == lines(rekeyed.responder_events, kind)


def test_charon_log_converts_and_pqike_agrees_with_its_int_auth():
    left = transcript_from_charon_log((DATA / "left.log").read_text())
    right = transcript_from_charon_log((DATA / "right.log").read_text())
    for records in (left, right):
        keys = [r for r in records if r.kind == "IKE_KEYS"]
        assert [r.get("exchange") for r in keys] == ["IKE_SA_INIT", "IKE_INTERMEDIATE"]
        # The SPIs of the IntAuth header were filled into the key records.
        assert keys[0].bytes_("spi_i") and keys[0].bytes_("spi_r")
        ints = [r for r in records if r.kind == "INT_AUTH"]
        assert len(ints) == 2
        prf = get_prf(6)  # PRF_HMAC_SHA2_384 in the reference run
        for r in ints:
            # pqike's own IntAuth over charon's A and P gives charon's value.
            octets = r.bytes_("a") + r.bytes_("p")
            assert crypto_auth.int_auth(prf, r.bytes_("sk_p"), r.bytes_("prev"), octets) == (
                r.bytes_("value")
            )
        # And our SKEYSEED from charon's secret and nonces is charon's.
        k0 = keys[0]
        nonces = k0.nonces
        assert skeyseed(prf, nonces[:32], nonces[32:], k0.ke[0][1]) == k0.bytes_("skeyseed")
    li = [r.bytes_("value") for r in left if r.kind == "INT_AUTH"]
    ri = [r.bytes_("value") for r in right if r.kind == "INT_AUTH"]
    assert li == ri


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello\n", "is not a pqike secrets transcript"),
        ("# pqike secrets transcript 1\nFOO a=1\n", "unknown record type 'FOO'"),
        ("# pqike secrets transcript 1\nIKE_KEYS epoch=x\n", "field 'epoch' has a bad value"),
        ("# pqike secrets transcript 1\nIKE_KEYS sk_d=zz\n", "field 'sk_d' has a bad value"),
        ("# pqike secrets transcript 1\nIKE_KEYS sk_d\n", "is not name=value"),
    ],
)
def test_bad_transcripts_get_one_sentence(text, message):
    with pytest.raises(TranscriptError, match=message):
        parse_transcript(text, "t.secrets")


def test_truncated_charon_dump_is_named():
    log = (DATA / "left.log").read_text()
    cut = log[: log.index("SKEYSEED =>") + 200]
    with pytest.raises(TranscriptError, match="cut short"):
        transcript_from_charon_log(cut)
