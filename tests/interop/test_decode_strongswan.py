"""The decoder on real strongSwan traffic: a pqike <-> strongSwan hybrid handshake with
two ADDKE rounds decoded completely from pqike's secrets transcript, the IntAuth values
pqike computed equal to those charon logged, and a strongSwan <-> strongSwan capture
decoded from charon's level-4 log alone."""

from __future__ import annotations

import pytest

from pqike.interop.lab import Lab, ensure_strongswan
from pqike.interop.peer import lab_unavailable, run_pqike_initiator, write_pqike_config
from pqike.lab.dissect import decode_files, format_decoded
from pqike.secrets import read_transcript, transcript_from_charon_log

pytestmark = pytest.mark.interop
_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

TWO_ROUNDS = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
PSK = b"pqike-interop-lab-psk"


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


def test_pqike_to_strongswan_capture_decodes_from_pqike_secrets(strongswan, tmp_path):
    with Lab(prefix="pqdc") as lab:
        capture = lab.capture("left")
        charon = lab.start_strongswan("right", ike_proposal=TWO_ROUNDS)
        config = write_pqike_config(lab.workdir / "left.toml", lab, "left", ike_proposal=TWO_ROUNDS)
        secrets = tmp_path / "pqike.secrets"
        run = run_pqike_initiator(
            lab, "left", config, lab.workdir / "left.jsonl", extra=["--secrets", str(secrets)]
        )
        capture.stop()
        pcap = tmp_path / "capture.pcap"
        pcap.write_bytes(capture.path.read_bytes())
        log = charon.log()
    assert run.returncode == 0, run.stderr
    decoded = decode_files(str(pcap), [str(secrets)], psk=PSK)
    assert decoded.ok, format_decoded(decoded)
    assert {m.exchange for m in decoded.messages} >= {"IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH"}
    assert all(m.status == "verified" for m in decoded.messages if m.exchange != "IKE_SA_INIT")
    assert len(decoded.sas[0].int_auth) == 4
    # The IntAuth values pqike computed are those charon logged, step for step.
    ours = [r.bytes_("value") for r in read_transcript(secrets) if r.kind == "INT_AUTH"]
    theirs = [r.bytes_("value") for r in transcript_from_charon_log(log) if r.kind == "INT_AUTH"]
    assert ours == theirs and len(ours) == 4
    # charon's log alone decodes the same capture.
    (tmp_path / "charon.log").write_text(log)
    from_log = decode_files(str(pcap), charon_logs=[str(tmp_path / "charon.log")], psk=PSK)
    assert from_log.ok, format_decoded(from_log)


def test_strongswan_pair_capture_decodes_from_charon_log(strongswan, tmp_path):
    with Lab(prefix="pqdc") as lab:
        capture = lab.capture("left")
        lab.start_strongswan("right", ike_proposal=TWO_ROUNDS)
        left = lab.start_strongswan("left", ike_proposal=TWO_ROUNDS)
        result = left.initiate(timeout=15)
        capture.stop()
        pcap = tmp_path / "capture.pcap"
        pcap.write_bytes(capture.path.read_bytes())
        (tmp_path / "left.log").write_text(result.log)
    decoded = decode_files(str(pcap), charon_logs=[str(tmp_path / "left.log")], psk=PSK)
    assert decoded.ok, format_decoded(decoded)
    assert sum(m.exchange == "IKE_INTERMEDIATE" for m in decoded.messages) == 4
