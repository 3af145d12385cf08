"""Report generation from small hand-written tables: the numbers come from the tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pqike.lab import build_report
from pqike.lab.report import PLOTS

PROFILES = {
    "p0": {"delay_ms": 0.0, "loss_pct": 0.0},
    "p50": {"delay_ms": 50.0, "loss_pct": 0.0},
    "p50loss": {"delay_ms": 50.0, "loss_pct": 5.0},
}
KINDS = {
    # proposal: (negotiated, round trips, IP bytes per exchange, fragments)
    "classic": ("aes256gcm16-prfsha384-x25519", 2, {"IKE_SA_INIT": 400, "IKE_AUTH": 600}, 0),
    "hybrid": (
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        3,
        {"IKE_SA_INIT": 400, "IKE_INTERMEDIATE": 2500, "IKE_AUTH": 600},
        2,
    ),
}


def _tables():
    hs, msgs = [], []
    for proposal, (negotiated, rts, per_exchange, frags) in KINDS.items():
        for profile, params in PROFILES.items():
            for rep in range(3):
                net = rts * 2 * params["delay_ms"] / 1000
                retrans = 0
                if profile == "p50loss" and proposal == "hybrid" and rep == 2:
                    net += 4.0
                    retrans = 1
                ip = sum(per_exchange.values())
                hs.append(
                    {
                        "experiment": "tiny",
                        "proposal": proposal,
                        "pair": "memory",
                        "profile": profile,
                        "repetition": rep,
                        "delay_ms": params["delay_ms"],
                        "jitter_ms": 0.0,
                        "loss_pct": params["loss_pct"],
                        "mtu": 1500,
                        "fragment_size": 1280,
                        "bandwidth_kbps": None,
                        "ipv6": False,
                        "negotiated": negotiated,
                        "established": True,
                        "failure": None,
                        "messages": 2 * rts,
                        "datagrams": 2 * rts + frags // 2,
                        "fragments": frags,
                        "round_trips": rts,
                        "ike_bytes": ip - 100,
                        "udp_bytes": ip - 50,
                        "ip_bytes": ip,
                        "largest_datagram_ip": 1276 if frags else 600,
                        "retransmissions": retrans,
                        "datagrams_mtu_dropped": 0,
                        "sim_time_s": net,
                        "sim_time_cpu_s": net + 0.001,
                        "time_to_established_s": net + 0.001,
                        "wall_s": 0.002,
                        "cpu_initiator_s": 0.0005,
                        "cpu_responder_s": 0.0005,
                    }
                )
                for mid, (exchange, size) in enumerate(per_exchange.items()):
                    for is_response in (False, True):
                        msgs.append(
                            {
                                "proposal": proposal,
                                "pair": "memory",
                                "profile": profile,
                                "repetition": rep,
                                "sender": "responder" if is_response else "initiator",
                                "exchange": exchange,
                                "message_id": mid,
                                "is_response": is_response,
                                "retransmission": False,
                                "ike_bytes": size // 2 - 28,
                                "ip_bytes": size // 2,
                                "datagrams": 1,
                                "fragments": 2
                                if exchange == "IKE_INTERMEDIATE" and not is_response
                                else 0,
                            }
                        )
    return pd.DataFrame(hs), pd.DataFrame(msgs)


@pytest.fixture
def results(tmp_path):
    hs, msgs = _tables()
    hs.to_csv(tmp_path / "handshakes.csv", index=False)
    msgs.to_csv(tmp_path / "messages.csv", index=False)
    (tmp_path / "run.json").write_text(
        json.dumps({"experiment": "tiny", "baseline": "classic", "highlight": "hybrid", "seed": 1})
    )
    return tmp_path


def test_the_report_states_the_cost_in_numbers_from_the_tables(results):
    text = build_report(results).read_text()
    assert text.startswith("# tiny\n")
    assert (
        "hybrid sends 3,500 IP bytes per handshake against 1,000 for classic: "
        "2,500 more (+250 %)" in text
    )
    assert "3 round trips instead of 2" in text
    assert "`p50` (50 ms one-way delay, MTU 1500, fragment size 1280): hybrid 301.0 ms" in text
    assert "against 201.0 ms [201.0 ms, 201.0 ms]" in text
    assert "+100.0 ms [+100.0 ms, +100.0 ms] (+50 %)" in text
    # One more round trip at 50 ms one-way is 100 ms of network time, in every profile.
    assert "| `p50` | 50 ms | 100.0 ms | 100.0 ms | 2 |" in text
    assert "| `p50loss` | 50 ms | 100.0 ms | 100.0 ms | 2 |" in text
    assert "mlkem768: 2,500 IP bytes" in text


def test_three_handshakes_are_too_few_to_call_a_difference(results):
    text = build_report(results).read_text()
    assert "**too few handshakes to tell (fewer than 10)**" in text
    assert "outside the noise" not in text.split("## Findings")[1].split("## Configurations")[0]


def test_the_report_shows_how_loss_changes_completion_time(results):
    text = build_report(results).read_text()
    # hybrid at 5 % loss: 0.301, 0.301 and 4.301 s: mean 1.634 s, median 301 ms.
    assert "hybrid 1.634 s [" in text
    assert "(median 301.0 ms, p95 3.901 s; 1 of 3 with a retransmission)" in text
    assert "| `p50loss` | hybrid | 5 % | 0 ms | 3 of 3 | 1 of 3 | 0.33 |" in text
    # The loss-free profiles are in the same table, for comparison.
    assert "| `p0` | classic | 0 % | 0 ms | 3 of 3 | 0 of 3 | 0.00 |" in text


def test_the_report_embeds_the_plots_it_drew(results):
    text = build_report(results).read_text()
    for key, name in PLOTS.items():
        # One peer pair, no phases after the handshake and one authentication kind here:
        # nothing to compare, no SA's life and no key exchange against authentication.
        if key in ("pairs", "lifetime", "auth"):
            assert not (results / name).exists() and name not in text
            continue
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


def test_the_summary_is_rebuilt_from_the_handshakes(results):
    build_report(results)
    summary = pd.read_csv(results / "summary.csv")
    row = summary[
        (summary["proposal"] == "hybrid")
        & (summary["profile"] == "p50loss")
        & (summary["metric"] == "sim_time_s")
    ].iloc[0]
    assert row["n"] == 3
    assert row["median"] == pytest.approx(0.3)
    assert row["mean"] == pytest.approx((0.3 + 0.3 + 4.3) / 3)
    assert row["ci95_low"] < row["mean"] < row["ci95_high"]


def test_a_report_needs_the_handshakes_table(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path)


def _method(report: str) -> str:
    return report.split("## Method", 1)[1]


def test_the_method_describes_only_the_pairs_that_ran(results, tmp_path):
    memory_only = build_report(results).read_text()
    assert "Peers (`memory`)" in _method(memory_only)
    assert "strongSwan pairs" not in _method(memory_only)
    # A committed strongSwan-only run, rebuilt: its method names charon's version and its
    # time is the relay's wall clock, not the simulated link's.
    committed = Path(__file__).resolve().parents[2] / "results" / "strongswan-scenarios"
    copy = tmp_path / "scenarios"
    shutil.copytree(committed, copy)
    text = build_report(copy).read_text()
    assert "Peers (`memory`)" not in _method(text)
    assert "- strongSwan pairs (`strongswan`): charon (strongSwan 6.0.1) on ports" in _method(text)
    assert "simulated time" not in text.split("## Findings", 1)[0]
    assert "wall-clock time on the relay's log" in text
