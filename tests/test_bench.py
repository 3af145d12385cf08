"""``pqike bench memory``: established IKE SAs held by one responder endpoint."""

from __future__ import annotations

from typer.testing import CliRunner

from pqike.bench import MEMORY_TARGET, bench_memory
from pqike.cli import app


def test_an_established_ike_sa_costs_the_responder_less_than_10_kb():
    report = bench_memory(300, "aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    assert report.established == 300
    # Measured: about 4.1 KB per SA; the handshake-only state (IKE_SA_INIT messages,
    # key exchange objects) is released once the SA is established.
    assert 1000 < report.bytes_per_sa < MEMORY_TARGET
    assert report.ratio == report.bytes_per_sa / MEMORY_TARGET


def test_bench_memory_command_prints_bytes_per_sa_and_the_ratio():
    out = CliRunner().invoke(app, ["bench", "memory", "--sas", "50"])
    assert out.exit_code == 0, out.stdout
    assert "IKE SAs:             50 established of 50" in out.stdout
    assert "bytes of Python heap (tracemalloc) above the idle endpoint" in out.stdout
    assert "(per SA / 10,240 bytes; goal <= 1)" in out.stdout


def test_bench_memory_reports_its_progress():
    seen = []
    bench_memory(250, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 250), (200, 250), (250, 250)]


def test_bench_handshake_times_whole_handshakes_and_the_floor_each_as_one_region():
    from pqike.bench import bench_handshake, handshake_region
    from pqike.handshake import make_config

    p = "aes256gcm16-prfsha384-x25519"
    ini = make_config(p, local_id="initiator.pqike.example", remote_id="responder.pqike.example")
    res = make_config(p, local_id="responder.pqike.example")
    assert handshake_region(ini, res)
    wrong = make_config(p, local_id="responder.pqike.example", psk=b"another-psk")
    assert not handshake_region(ini, wrong)  # a failed handshake is reported, not timed
    report = bench_handshake(p, runs=3)
    assert report.handshake_median > 0 and report.floor_median > 0
    text = report.format()
    assert "two new IkeSa to both established" in text and "one region too" in text


def test_an_established_sa_without_fragments_costs_under_4_kb():
    # Measured about 3.8 KB (x25519) after the lazy reassembler and slotted SA objects.
    report = bench_memory(300, "aes256gcm16-prfsha384-x25519")
    assert report.established == 300
    assert 1000 < report.bytes_per_sa < 4096
