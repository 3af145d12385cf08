"""The pqike command: algorithms, handshake (table and --json), errors, bench."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pqike.cli import app

runner = CliRunner()


def test_algorithms_lists_each_method_with_sizes_and_availability():
    out = runner.invoke(app, ["algorithms"])
    assert out.exit_code == 0
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert lines["mlkem768"][1:5] == ["36", "kem", "1184", "1088"]
    assert lines["x25519"][-2:] == ["yes", "openssl"]
    assert "openssl" not in lines["mlkem512"]  # OpenSSL has no ML-KEM-512
    assert lines["hqc128"][1:3] == ["1101", "kem"]  # a private-use ID


def test_handshake_prints_the_messages_and_totals():
    out = runner.invoke(app, ["handshake", "-p", "aes256gcm16-prfsha384-x25519-ke1_mlkem768"])
    assert out.exit_code == 0, out.stdout
    assert "IKE_INTERMEDIATE" in out.stdout
    assert "total: 6 messages, 7 datagrams, 2 fragments, 3 round trips" in out.stdout
    assert "established: aes256gcm16-prfsha384-x25519-ke1_mlkem768" in out.stdout


def test_the_ike_column_adds_up_to_the_total_and_fragments_say_their_message():
    out = runner.invoke(app, ["handshake", "-p", "aes256gcm16-prfsha384-x25519-ke1_mlkem768"])
    rows = [li.split() for li in out.stdout.splitlines() if li[:8].strip().startswith("0.0")]
    assert len(rows) == 6
    ike = sum(int(r[4]) for r in rows)
    assert f"; {ike} IKE / " in out.stdout
    # The fragmented KEi: two fragments on the wire, one 1249-byte message inside.
    assert "1314   1314   1370   2  SKF{KE} [2 fragments of one 1249-byte message]" in out.stdout


def test_a_request_without_a_response_is_no_round_trip():
    out = runner.invoke(app, ["handshake", "--loss", "100"])
    assert out.exit_code == 1
    assert "0 round trips (1 request without a response)" in out.stdout
    one = runner.invoke(app, ["handshake", "-p", "aes256gcm16-prfsha384-x25519", "--json"])
    assert json.loads(one.stdout)["summary"]["round_trips"] == 2


def test_handshake_over_a_link_with_delay_and_jitter():
    out = runner.invoke(
        app,
        ["handshake", "-p", "aes256gcm16-prfsha384-x25519", "--delay", "50", "--jitter", "5"],
    )
    assert out.exit_code == 0, out.stdout
    # Two round trips at 50 +- 5 ms one way: 180 to 220 ms of simulated time.
    simulated = float(out.stdout.split("simulated time ")[1].split()[0])
    assert 0.18 <= simulated <= 0.22
    smooth = runner.invoke(
        app, ["handshake", "-p", "aes256gcm16-prfsha384-x25519", "--delay", "50"]
    )
    assert "simulated time 0.200 s" in smooth.stdout


def test_handshake_says_which_backend_ran_each_key_exchange():
    out = runner.invoke(app, ["handshake", "-p", "aes256gcm16-prfsha384-x25519-ke1_mlkem768"])
    assert "key exchange backends: x25519 openssl, mlkem768 " in out.stdout
    chosen = runner.invoke(
        app,
        [
            "handshake",
            "-p",
            "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
            "--backend",
            "mlkem768=pqcrypto",
        ],
    )
    assert "key exchange backends: x25519 openssl, mlkem768 pqcrypto (--backend)" in chosen.stdout


def test_pairs_for_drive_pair_come_from_one_import():
    from pqike import drive_pair, make_pair

    initiator, responder = make_pair(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768", fragment_size=1280
    )
    result = drive_pair(initiator, responder)
    assert result.established and result.trace.totals()["round_trips"] == 3


def test_a_link_loss_given_in_percent_is_refused_with_a_hint():
    import pytest

    from pqike.lab.link import LinkProfile

    with pytest.raises(ValueError, match=r"2 looks like a percentage: 2 % is 0\.02"):
        LinkProfile(loss=2)
    assert LinkProfile.from_spec_units(loss_pct=2).loss == 0.02


def test_handshake_json_is_for_scripts():
    out = runner.invoke(app, ["handshake", "-p", "aes128gcm16-prfsha256-ecp256", "--json"])
    data = json.loads(out.stdout)
    assert data["summary"]["established"] is True
    assert [m["exchange"] for m in data["messages"]] == ["IKE_SA_INIT"] * 2 + ["IKE_AUTH"] * 2
    assert sum(d["udp_bytes"] for d in data["datagrams"]) == data["summary"]["udp_bytes"]


def test_bad_proposal_gets_one_clear_error_naming_the_token():
    out = runner.invoke(app, ["handshake", "-p", "aes256gcm16-prfsha384-x25591"])
    assert out.exit_code == 2
    assert "x25591" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_failed_handshake_exits_1_with_the_reason():
    out = runner.invoke(
        app,
        [
            "handshake",
            "-p",
            "aes256gcm16-prfsha384-x25519",
            "--responder-proposal",
            "aes128gcm16-prfsha256-ecp256",
        ],
    )
    assert out.exit_code == 1
    assert "failed:" in out.stdout


def test_bench_prints_a_ratio_against_the_crypto_floor():
    out = runner.invoke(
        app, ["bench", "handshake", "-p", "aes256gcm16-prfsha384-x25519", "--runs", "5"]
    )
    assert out.exit_code == 0, out.stdout
    assert "crypto floor CPU" in out.stdout and "ratio:" in out.stdout


def test_handshake_with_loss_retransmits_and_still_establishes():
    out = runner.invoke(
        app,
        [
            "handshake",
            "-p",
            "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
            "--loss",
            "30",
            "--seed",
            "3",
        ],
    )
    assert out.exit_code == 0, out.stdout
    assert "(retransmit)" in out.stdout and "established:" in out.stdout


def test_handshake_uses_the_backend_named_per_method():
    out = runner.invoke(
        app,
        [
            "handshake",
            "-p",
            "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
            "--backend",
            "mlkem768=pqcrypto",
        ],
    )
    assert out.exit_code == 0, out.stdout
    assert "ADDKE1=mlkem768" in out.stdout


def test_an_unusable_backend_choice_is_one_clear_error():
    out = runner.invoke(app, ["handshake", "--backend", "mlkem768=nosuch"])
    assert out.exit_code == 2
    assert "unknown key exchange backend 'nosuch'" in out.stderr


def _commands(command, path=()):
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_help_text_arrives_word_for_word():
    import re

    import typer

    for path, command in _commands(typer.main.get_command(app)):
        result = CliRunner().invoke(
            app, [*path, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"}
        )
        assert result.exit_code == 0, path
        shown = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
        texts = [command.help or ""] + [p.help for p in command.params if getattr(p, "help", None)]
        for text in texts:
            # "\[" is rich markup's literal bracket.
            first = " ".join(text.split("\n\n")[0].split()).replace("\\[", "[")
            assert first in shown, (path, first)
