"""The decoder: captures decoded completely from the secrets transcript (pqike's, or
strongSwan's charon log), and one sentence for inputs it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.cli import app
from pqike.handshake import INITIATOR_ADDRESS, RESPONDER_ADDRESS, run_handshake
from pqike.lab.dissect import decode_capture, decode_files, format_decoded
from pqike.pcap import CaptureError, PcapWriter, read_pcap
from pqike.secrets import TranscriptError, write_transcript

DATA = Path(__file__).parent.parent / "data" / "strongswan"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"


def _capture(tmp_path: Path, then=("child", "ike"), **kw) -> tuple[Path, Path, object]:
    sent: list[tuple[str, bytes]] = []

    def deliver(sender, data, index):
        sent.append((sender, data))
        return [data]

    result = run_handshake(
        HYBRID, "aes256gcm16-x25519-ke1_mlkem768", deliver=deliver, then=list(then), **kw
    )
    pcap = tmp_path / "run.pcap"
    addr = {"initiator": INITIATOR_ADDRESS[4], "responder": RESPONDER_ADDRESS[4]}
    with open(pcap, "wb") as f:
        w = PcapWriter(f)
        for i, (sender, data) in enumerate(sent):
            other = "responder" if sender == "initiator" else "initiator"
            w.write_udp(data, addr[sender], addr[other], timestamp=i)
    secrets = tmp_path / "run.secrets"
    write_transcript(secrets, result.initiator_events)
    return pcap, secrets, result


def test_hybrid_with_rekeys_decodes_completely(tmp_path):
    pcap, secrets, _ = _capture(tmp_path)
    d = decode_files(str(pcap), [str(secrets)], psk=b"pqike-demo-psk")
    assert d.ok, format_decoded(d)
    exchanges = {m.exchange for m in d.messages}
    assert {"IKE_INTERMEDIATE", "IKE_FOLLOWUP_KE", "CREATE_CHILD_SA"} <= exchanges
    assert all(m.status == "verified" for m in d.messages if m.exchange != "IKE_SA_INIT")
    sa = d.sas[0]
    assert len(sa.int_auth) == 4 and all(s["transcript"] == "equal" for s in sa.int_auth)
    # IKE_INTERMEDIATE n is protected by epoch n-1 (RFC 9370 2.2.2).
    assert [m.epoch for m in d.messages if m.exchange == "IKE_INTERMEDIATE"] == [0, 0, 1, 1]
    text = format_decoded(d)
    assert "ADDKE2=mlkem1024 (37)" in text and "N(ADDITIONAL_KEY_EXCHANGE)" in text
    table = d.table()
    assert list(table["status"].unique()) == ["clear", "verified"]


def test_wrong_keys_and_a_wrong_int_auth_are_flagged(tmp_path):
    pcap, secrets, _ = _capture(tmp_path)
    other_dir = tmp_path / "b"
    other_dir.mkdir()
    _, other, _ = _capture(other_dir)
    d = decode_files(str(pcap), [str(other)])
    assert not d.ok
    assert d.problems == [
        "the secrets belong to none of the IKE SAs in the capture "
        "(no IKE_KEYS record has their SPIs or nonces)"
    ]
    # A transcript whose IntAuth values were tampered with is caught.
    text = secrets.read_text().splitlines()
    text = [
        line.replace("value=", "value=00", 1) if line.startswith("INT_AUTH") else line
        for line in text
    ]
    secrets.write_text("\n".join(text) + "\n")
    d = decode_files(str(pcap), [str(secrets)])
    bad = [c for c in d.sas[0].checks if not c.ok]
    assert bad and bad[0].detail == "the capture's IntAuth differs from the transcript's"


def _reference_pcap(path: Path) -> Path:
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for i, hexfile in enumerate(sorted(DATA.glob("0*.hex"))):
            payload = bytes.fromhex(hexfile.read_text().strip())
            port = 500 if "IKE_SA_INIT" in hexfile.name else 4500
            a, b = ("192.0.2.1", port), ("192.0.2.2", port)
            src, dst = (a, b) if "-i-" in hexfile.name else (b, a)
            w.write_udp(payload, src, dst, timestamp=i)
    return path


def test_strongswan_pair_decodes_from_charon_logs(tmp_path):
    pcap = _reference_pcap(tmp_path / "ref.pcap")
    for log in ("left.log", "right.log"):
        d = decode_files(str(pcap), charon_logs=[str(DATA / log)], psk=b"pqike-interop-lab-psk")
        assert d.ok, format_decoded(d)
        assert sum(m.status == "verified" for m in d.messages) == 4
        assert len(d.sas[0].int_auth) == 2


def test_bad_inputs_get_one_sentence(tmp_path):
    pcap, secrets, _ = _capture(tmp_path, then=())
    data = pcap.read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[: len(data) - 100])
    with pytest.raises(CaptureError, match=r"cut.pcap is truncated: frame \d+ announces"):
        read_pcap(tmp_path / "cut.pcap")
    with pytest.raises(CaptureError, match="is not a pcap capture"):
        read_pcap(secrets)
    dns = tmp_path / "dns.pcap"
    with open(dns, "wb") as f:
        PcapWriter(f).write_udp(
            b"\x12\x34" + bytes(40), ("10.0.0.1", 5353), ("10.0.0.2", 53), timestamp=0
        )
    with pytest.raises(CaptureError, match=r"holds no IKE message \(1 UDP datagrams"):
        decode_files(str(dns), [str(secrets)])
    (tmp_path / "x.secrets").write_text("SK_ei 0011\n")
    with pytest.raises(TranscriptError, match="is not a pqike secrets transcript"):
        decode_files(str(pcap), [str(tmp_path / "x.secrets")])


def test_cli_dissect(tmp_path):
    from typer.testing import CliRunner

    pcap, secrets, _ = _capture(tmp_path, then=())
    runner = CliRunner()
    ok = runner.invoke(app, ["dissect", str(pcap), "--secrets", str(secrets)])
    assert ok.exit_code == 0, ok.output
    assert "everything verifies" in ok.output
    bad = runner.invoke(app, ["dissect", str(secrets)])
    assert bad.exit_code == 2 and "is not a pcap capture" in bad.output
    none = runner.invoke(app, ["dissect", str(pcap)])
    assert none.exit_code == 1 and "the secrets hold no records" in none.output
    js = runner.invoke(app, ["dissect", str(pcap), "-s", str(secrets), "--json"])
    assert js.exit_code == 0 and '"ok": true' in js.output


def test_decode_capture_never_raises_on_garbage():
    from pqike.pcap import CapturedDatagram

    junk = [CapturedDatagram(1, 0.0, ("1.1.1.1", 500), ("2.2.2.2", 500), bytes(40))]
    d = decode_capture(junk, [])
    assert d.messages == [] or all(m.status for m in d.messages)
