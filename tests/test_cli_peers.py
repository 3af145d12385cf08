"""``pqike respond`` and ``pqike initiate`` as processes talking UDP on loopback."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def peer_toml(path: Path, *, responder: bool, remote_port: int = 0, **extra: str) -> Path:
    ident = "responder" if responder else "initiator"
    lines = [
        "[peer]",
        'local = "127.0.0.1"',
        "port = 0",
        "nat_t_port = 0",
        f'local_id = "{ident}.pqike.example"',
        f'psk = "{extra.pop("psk", "pqike-demo-psk")}"',
    ]
    if not responder:
        lines += [
            'remote = "127.0.0.1"',
            f"remote_port = {remote_port}",
            'remote_id = "responder.pqike.example"',
        ]
    lines += ["[ike]", f'proposals = "{HYBRID}"', "fragment_size = 1280"]
    lines += ["[retransmit]", f"timeout = {extra.pop('timeout', '0.5')}"]
    if "auth" in extra:
        lines += ["[auth]", extra.pop("auth")]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds a PSK
    return path


def pqike(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pqike.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Responder:
    """``pqike respond`` in the background; ``port`` from its "listening on" line."""

    def __init__(self, tmp_path: Path, *args: str, **extra: str) -> None:
        config = peer_toml(tmp_path / "responder.toml", responder=True, **extra)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqike.cli", "respond", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first + self.proc.stderr.read()
        self.port = int(first.split(",")[0].rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_initiate_against_respond_with_pcap_keylog_and_json(tmp_path, sig):
    responder = Responder(tmp_path, "--keylog", str(tmp_path / "responder.keys"))
    try:
        config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=responder.port)
        pcap, keys = tmp_path / "i.pcap", tmp_path / "i.keys"
        run = pqike(
            "initiate",
            "--config",
            str(config),
            "--json",
            "--pcap",
            str(pcap),
            "--keylog",
            str(keys),
            "--timeout",
            "10",
        )
    finally:
        code, out, err = responder.stop(sig)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["established"] and result["suite"] == HYBRID
    assert result["child"]["suite"] == "aes256gcm16-noesn"
    assert [m["exchange"] for m in result["messages"]] == [
        "IKE_SA_INIT",
        "IKE_SA_INIT",
        "IKE_INTERMEDIATE",
        "IKE_INTERMEDIATE",
        "IKE_AUTH",
        "IKE_AUTH",
        "INFORMATIONAL",
        "INFORMATIONAL",
    ]
    assert result["messages"][2]["fragments"] == 2
    spis = f"{result['spi_i']},{result['spi_r']},"
    assert keys.read_text().startswith(spis)
    assert (tmp_path / "responder.keys").read_text() == keys.read_text()
    # The key logs hold IKE keys: only their owner may read them (issue 10).
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "responder.keys").stat().st_mode) == 0o600
    # 9 datagrams: the fragmented IKE_INTERMEDIATE request counts twice.
    data = pcap.read_bytes()
    assert (
        data[:4] == b"\xd4\xc3\xb2\xa1"
        and data.count(b"\x00\x00\x00\x00" + bytes.fromhex(result["spi_i"])) == 9
    )
    assert code == 0, err
    lines = out.splitlines()
    assert f"established {result['spi_i']}_i {result['spi_r']}_r" in lines[0]
    assert f"suite {HYBRID} (additional key exchanges: 1)" in lines[0]
    assert lines[1].startswith("child SA ")
    # Then the initiator's Delete: its INFORMATIONAL exchange, the Child SA and the IKE SA.
    assert lines[2].startswith("received INFORMATIONAL request 3 [ SK{D} ]")
    assert lines[3].startswith("sent INFORMATIONAL response 3 [ SK{} ]")
    assert lines[4].startswith("child SA deleted by the peer: ")
    assert lines[5].startswith(f"deleted {result['spi_i']}_i") and lines[5].endswith("by the peer")
    assert lines[-1].startswith("stopped: ") and "responder_sas_created=1" in lines[-1]


def test_initiate_prints_the_trace_table_and_the_suite(tmp_path):
    responder = Responder(tmp_path)
    try:
        config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=responder.port)
        run = pqike("initiate", "--config", str(config), "--no-delete")
    finally:
        responder.stop()
    assert run.returncode == 0, run.stderr
    assert "IKE_INTERMEDIATE" in run.stdout and "INFORMATIONAL" not in run.stdout
    assert "total: 6 messages, 7 datagrams, 2 fragments, 3 round trips" in run.stdout
    assert f"established: {HYBRID} SPIs " in run.stdout
    assert "child SA: aes256gcm16-noesn" in run.stdout


def test_wrong_psk_fails_on_both_sides_with_the_reason(tmp_path):
    responder = Responder(tmp_path, psk="another-psk")
    try:
        config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=responder.port)
        run = pqike("initiate", "--config", str(config), "--timeout", "10")
    finally:
        code, out, _ = responder.stop()
    assert run.returncode == 1
    assert "failed: responder answered AUTHENTICATION_FAILED" in run.stderr
    assert code == 0
    assert "failed " in out and "the initiator's AUTH payload does not verify" in out


def test_initiate_times_out_without_a_responder(tmp_path):
    # A port nobody answers on: the bound-and-closed socket's port is free again.
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=port, timeout="4")
    run = pqike("initiate", "--config", str(config), "--timeout", "0.5")
    assert run.returncode == 1
    assert "failed: no result within 0.5 s (state INITIATOR_EXPECT_SA_INIT_RESPONSE)" in run.stderr


def test_a_bad_config_field_is_named_and_exits_2(tmp_path):
    config = tmp_path / "peer.toml"
    config.write_text('[peer]\nlocal = "127.0.0.1"\nlocal_id = "a"\npsk = "x"\nport = "five"\n')
    for command in ("initiate", "respond"):
        run = pqike(command, "--config", str(config))
        assert run.returncode == 2
        assert f"error: {config}: [peer] port: must be an integer, not a string" in run.stderr


def test_respond_without_any_sa_still_stops_cleanly(tmp_path):
    responder = Responder(tmp_path)
    code, out, err = responder.stop(signal.SIGTERM)
    assert code == 0, err
    assert out.splitlines()[-1] == "stopped: no datagrams received"


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_sides_log_the_same_suite_spis_and_keys_as_json_lines(tmp_path):
    responder_events = tmp_path / "responder.jsonl"
    responder = Responder(tmp_path, "--events", str(responder_events))
    try:
        config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=responder.port)
        initiator_events, keys = tmp_path / "initiator.jsonl", tmp_path / "i.keys"
        run = pqike(
            "initiate",
            "--config",
            str(config),
            "--events",
            str(initiator_events),
            "--keylog",
            str(keys),
        )
    finally:
        code, _, err = responder.stop()
    assert run.returncode == 0, run.stderr
    assert code == 0, err
    mine, theirs = read_events(initiator_events), read_events(responder_events)
    # The initiator deletes the IKE SA once it is up: each side logs the SAs, the two
    # INFORMATIONAL messages and the Child SA going with the IKE SA (RFC 7296 1.4.1).
    assert [e["event"] for e in mine] == [
        "ike_sa_established",
        "child_sa_established",
        "message",
        "message",
        "child_sa_deleted",
        "ike_sa_deleted",
    ]
    assert [(m["direction"], m["exchange"], m["response"]) for m in mine[2:4]] == [
        ("sent", "INFORMATIONAL", False),
        ("received", "INFORMATIONAL", True),
    ]
    assert [e["event"] for e in theirs] == [e["event"] for e in mine]
    assert (mine[0]["initiator"], theirs[0]["initiator"]) == (True, False)
    assert mine[-1]["by_peer"] is False and theirs[-1]["by_peer"] is True
    ike_i, ike_r = mine[0], theirs[0]
    assert ike_i["suite"] == ike_r["suite"] == HYBRID
    assert ike_i["intermediate_exchanges"] == 1
    assert (ike_i["spi_i"], ike_i["spi_r"]) == (ike_r["spi_i"], ike_r["spi_r"])
    assert ike_i["keys"] == ike_r["keys"]
    # AES-GCM-256 keys carry the 4-byte salt (RFC 5282); SK_d and SK_p are prf-sized.
    sizes = {name: len(bytes.fromhex(k)) for name, k in ike_i["keys"].items()}
    assert sizes == {
        "sk_d": 48,
        "sk_ai": 0,
        "sk_ar": 0,
        "sk_ei": 36,
        "sk_er": 36,
        "sk_pi": 48,
        "sk_pr": 48,
    }
    # The same SK_ei/SK_er as the Wireshark key table: they are the keys in use.
    assert f"{ike_i['keys']['sk_ei']},{ike_i['keys']['sk_er']}," in keys.read_text()
    child_i, child_r = mine[1], theirs[1]
    assert child_i["suite"] == child_r["suite"] == "aes256gcm16-noesn"
    assert (child_i["child_spi_i"], child_i["child_spi_r"]) == (
        child_r["child_spi_i"],
        child_r["child_spi_r"],
    )
    assert child_i["keys"] == child_r["keys"]
    assert len(bytes.fromhex(child_i["keys"]["encr_i"])) == 36
    assert child_i["keys"]["encr_i"] != child_i["keys"]["encr_r"]


def test_a_wrong_psk_is_logged_with_its_notify_on_both_sides(tmp_path):
    responder_events = tmp_path / "responder.jsonl"
    responder = Responder(tmp_path, "--events", str(responder_events), psk="another-psk")
    try:
        config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=responder.port)
        initiator_events = tmp_path / "initiator.jsonl"
        run = pqike("initiate", "--config", str(config), "--events", str(initiator_events))
    finally:
        responder.stop()
    assert run.returncode == 1
    (mine,) = read_events(initiator_events)
    (theirs,) = read_events(responder_events)
    for record in (mine, theirs):
        assert record["event"] == "ike_sa_failed"
        assert (record["notify"], record["notify_name"]) == (24, "AUTHENTICATION_FAILED")
    assert mine["spi_i"] == theirs["spi_i"]
    assert "AUTH payload does not verify" in theirs["reason"]


@pytest.mark.parametrize(
    ("option", "target", "problem"),
    [
        ("--keylog", "missing/k", "No such file or directory"),
        ("--events", "missing/e.jsonl", "No such file or directory"),
        ("--pcap", ".", "Is a directory"),
    ],
)
def test_an_output_file_error_names_the_file_not_the_network(tmp_path, option, target, problem):
    config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=9)
    path = tmp_path / target
    run = pqike("initiate", "--config", str(config), option, str(path), "--timeout", "0.5")
    assert run.returncode == 2
    what = option.removeprefix("--")
    assert run.stderr.strip() == f"error: {what} file {path}: cannot be written ({problem})"


def test_a_config_with_a_psk_readable_by_others_is_refused_unless_allowed(tmp_path):
    config = peer_toml(tmp_path / "initiator.toml", responder=False, remote_port=9)
    config.chmod(0o644)
    run = pqike("initiate", "--config", str(config), "--timeout", "0.5")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"error: {config}: holds a pre-shared key but is readable by group or others "
        f"(mode 0644); run 'chmod 600 {config}' or pass --allow-insecure-permissions"
    )
    allowed = pqike(
        "initiate", "--config", str(config), "--timeout", "0.5", "--allow-insecure-permissions"
    )
    assert allowed.returncode == 1 and "failed: no result within 0.5 s" in allowed.stderr


PPK_9867 = (
    'ppk_hex = "' + "5a" * 32 + '"\nppk_id = "ppk-1"\nppk_required = true\nppk_mode = "rfc9867"'
)


def test_rfc_9867_between_two_processes_from_their_toml(tmp_path):
    responder_events = tmp_path / "responder.jsonl"
    responder = Responder(tmp_path, "--events", str(responder_events), auth=PPK_9867)
    try:
        config = peer_toml(
            tmp_path / "initiator.toml",
            responder=False,
            remote_port=responder.port,
            auth=PPK_9867,
        )
        events = tmp_path / "initiator.jsonl"
        run = pqike("initiate", "--config", str(config), "--events", str(events))
    finally:
        code, _, err = responder.stop()
    assert run.returncode == 0, run.stderr
    assert code == 0, err
    # The PPK rides in the ML-KEM round's IKE_INTERMEDIATE and then keys everything.
    assert "(additional key exchanges: 1)" in run.stdout
    assert "PPK: 'ppk-1' mixed into every IKE SA key in IKE_INTERMEDIATE (RFC 9867)" in run.stdout
    mine, theirs = read_events(events), read_events(responder_events)
    assert mine[0]["keys"] == theirs[0]["keys"]
    assert mine[0]["intermediate_exchanges"] == theirs[0]["intermediate_exchanges"] == 1


def test_rfc_9867_with_another_ppk_fails_on_both_sides(tmp_path):
    other = PPK_9867.replace("5a" * 32, "a5" * 32)
    responder = Responder(tmp_path, auth=other)
    try:
        config = peer_toml(
            tmp_path / "initiator.toml", responder=False, remote_port=responder.port, auth=PPK_9867
        )
        run = pqike("initiate", "--config", str(config), "--timeout", "10")
    finally:
        code, out, _ = responder.stop()
    assert run.returncode == 1 and code == 0
    assert "failed: round 1: responder answered AUTHENTICATION_FAILED" in run.stderr
    assert "no offered PPK_IDENTITY_KEY matched ours" in out
