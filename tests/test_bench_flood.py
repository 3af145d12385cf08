"""``pqike bench flood`` end to end, small: a real ``pqike respond`` on loopback."""

from __future__ import annotations

from pqike.bench_flood import bench_flood


def test_a_short_spoofed_flood_gets_cookies_and_legitimate_handshakes_complete():
    report = bench_flood("init", rate=500, duration=2, sources=16, legit_rate=4)
    r = report.responder
    assert report.sent == 1000
    assert r["cookies_sent"] >= 1000 - 2 * 30 - report.legit_started
    assert r["half_open_peak"] <= 30 + 4
    assert report.legit_started == 8 and report.completed_share == 1.0
    assert report.rss_peak - report.rss_before < 20 << 20
    assert "legitimate handshakes: 8 of 8 completed (100.0 %)" in report.format()


def test_a_small_fragment_flood_is_held_to_the_configured_budget():
    budget = 4 << 20
    report = bench_flood(
        "fragments",
        rate=4000,
        duration=10,
        sas=40,
        legit_rate=1,
        responder_limits={"reassembly_budget": budget},
    )
    r = report.responder
    assert report.sas == 40 and report.sent == 40 * 220  # all 221 fragments but the last
    # 40 partial messages of ~290 KB would need ~11 MiB: the oldest were evicted.
    assert r["reassembly_evicted_total"] > 0
    assert report.rss_peak - report.rss_before < budget + (8 << 20)
