"""An SA's life in the experiment runner: the ``phases`` spec key, rekeys over the
simulated link, ``phases.csv`` and the report's section about it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pqike.errors import ConfigurationError
from pqike.handshake import make_pair
from pqike.lab import build_report, load_spec, parse_spec, run_experiment
from pqike.lab.link import LinkProfile, simulate_handshake
from pqike.lab.registry import default_pairs
from pqike.lab.runner import check_pairs

X25519 = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
ESP_X25519 = "aes256gcm16-x25519"
ESP_HYBRID = "aes256gcm16-x25519-ke1_mlkem768"
SECTION = "## What post-quantum costs over an SA's life"

SPEC = f"""
[experiment]
seed = 11
repetitions = 3
baseline = "x25519"
highlight = "hybrid"
phases = ["child", "ike"]

[proposals]
x25519 = {{ ike = "{X25519}", esp = "{ESP_X25519}" }}
hybrid = {{ ike = "{HYBRID}", esp = "{ESP_HYBRID}" }}

[profiles.far]
delay_ms = 50
"""


def spec_with(line: str, pairs: str = '["memory"]'):
    return parse_spec(
        f"""
[experiment]
pairs = {pairs}
{line}

[proposals]
x25519 = "{X25519}"

[profiles.p]
delay_ms = 0
""",
        source="t.toml",
    )


@pytest.fixture(scope="module")
def lifetime(tmp_path_factory):
    out = tmp_path_factory.mktemp("lifetime")
    result = run_experiment(parse_spec(SPEC, source="life.toml", default_name="life"), out)
    return out, result


# --------------------------------------------------------------------------- spec


def test_phases_are_read_in_order_and_default_to_none():
    assert spec_with('phases = ["child", "responder:ike", "liveness"]').phases == (
        "child",
        "responder:ike",
        "liveness",
    )
    assert spec_with("").phases == ()


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('phases = ["child", "rekey"]', "experiment.phases[1]", "unknown phase 'rekey'"),
        ('phases = ["initiator:child", 3]', "experiment.phases[1]", "must be a phase name"),
        ('phases = "child"', "experiment.phases", "must be a list of phases"),
        ('phases = ["delete", "child"]', "experiment.phases[0]", "make it the last phase"),
        ('phases = ["observer:child"]', "experiment.phases[0]", "optionally prefixed"),
    ],
)
def test_a_bad_phase_is_one_error_naming_the_field(line, field, words):
    with pytest.raises(ConfigurationError) as err:
        spec_with(line)
    assert err.value.field == field
    assert str(err.value).startswith(f"t.toml: {field}: ")
    assert words in str(err.value)


@pytest.mark.parametrize("pair", ["udp", "pqike-strongswan", "strongswan-pqike"])
def test_pairs_that_cannot_run_phases_refuse_them_before_anything_runs(pair):
    spec = spec_with('phases = ["child"]', pairs=f'["memory", "{pair}"]')
    with pytest.raises(ConfigurationError) as err:
        check_pairs(spec, default_pairs())
    assert err.value.field == "experiment.phases"
    assert f"peer pair {pair!r} runs the handshake only" in str(err.value)
    assert "(memory, strongswan, strongswan-ikev1)" in str(err.value)
    # The same pairs without phases are judged on their availability alone.
    check_pairs(spec_with("", pairs='["memory"]'), default_pairs())


# --------------------------------------------------------------------------- link


def test_each_phase_runs_over_the_link_with_its_own_time():
    ini, res = make_pair(HYBRID, ESP_HYBRID)
    run = simulate_handshake(ini, res, forward=LinkProfile(delay=0.05), then=["child", "ike"])
    assert [(p.name, p.ok) for p in run.phases] == [
        ("handshake", True),
        ("child", True),
        ("ike", True),
    ]
    handshake, child, ike = run.phases
    # Network-only time is exact: 2 one-way delays per round trip, rekeys included
    # (CREATE_CHILD_SA, IKE_FOLLOWUP_KE and the Delete of the old SA).
    for phase in run.phases:
        assert phase.totals["round_trips"] == 3
        assert phase.duration == pytest.approx(3 * 2 * 0.05, abs=1e-12)
        assert phase.duration_cpu >= phase.duration
        assert phase.cpu_initiator > 0 and phase.cpu_responder > 0
    assert child.start == pytest.approx(handshake.duration)
    assert ike.start == pytest.approx(child.start + child.duration)
    exchanges = [m.exchange for m in run.trace.messages if m.phase == "child"]
    assert exchanges.count("IKE_FOLLOWUP_KE") == 2
    # The handshake's own figures do not include the rekeys.
    assert run.established_at == pytest.approx(handshake.duration)
    assert sum(p.totals["ip_bytes"] for p in run.phases) == run.trace.totals()["ip_bytes"]


def test_loss_in_a_rekey_is_retransmitted_and_the_rekey_still_ends_ok():
    retransmitted = []
    for seed in range(40):
        ini, res = make_pair(HYBRID, ESP_HYBRID)
        run = simulate_handshake(
            ini, res, forward=LinkProfile(delay=0.005, loss=0.1), seed=seed, then=["child"]
        )
        if len(run.phases) == 2 and run.phases[1].totals["retransmissions"]:
            retransmitted.append(run.phases[1])
    assert len(retransmitted) >= 5, "10 % loss hit too few Child SA rekeys in 40 seeds"
    # Every one ends ok: the responder waits for the IKE_FOLLOWUP_KE as long as the
    # initiator may retransmit (before, it gave up after half_open_timeout and answered
    # a late follow-up with STATE_NOT_FOUND).
    assert [p.failure for p in retransmitted if not p.ok] == []
    for phase in retransmitted:
        # A retransmission waits for the initiator's timer (4 s by default).
        assert phase.duration >= 4.0


def test_no_phase_runs_without_an_ike_sa():
    ini, res = make_pair(X25519, ESP_X25519, retransmit_tries=1, retransmit_timeout=1.0)
    dead = simulate_handshake(ini, res, forward=LinkProfile(loss=1.0), then=["child", "ike"])
    assert not dead.established
    assert [(p.name, p.ok) for p in dead.phases] == [("handshake", False)]


# --------------------------------------------------------------------------- runner


def test_phases_csv_has_a_row_per_repetition_and_phase(lifetime):
    out, _ = lifetime
    ph = pd.read_csv(out / "phases.csv")
    assert len(ph) == 2 * 3 * 3  # proposals x repetitions x (handshake, child, ike)
    assert list(ph[ph["proposal"] == "hybrid"]["phase"][:3]) == ["handshake", "child", "ike"]
    assert ph["ok"].all() and ph["ran"].all()
    child = ph[ph["phase"] == "child"].set_index(["proposal", "repetition"])
    # The hybrid Child SA rekey: CREATE_CHILD_SA, one IKE_FOLLOWUP_KE and the Delete.
    assert set(child.loc["hybrid"]["round_trips"]) == {3}
    assert set(child.loc["hybrid"]["additional_exchanges"]) == {1}
    assert set(child.loc["x25519"]["round_trips"]) == {2}
    assert set(child.loc["x25519"]["additional_exchanges"]) == {0}
    assert list(child["sim_time_s"]) == pytest.approx(list(child["round_trips"] * 2 * 0.05))
    msgs = pd.read_csv(out / "messages.csv")
    followups = msgs[(msgs["exchange"] == "IKE_FOLLOWUP_KE") & (msgs["proposal"] == "hybrid")]
    assert set(followups["phase"]) == {"child", "ike"}
    assert len(followups[followups["phase"] == "child"]) == 2 * 3
    # handshakes.csv stays the handshake's: its bytes are the handshake phase's.
    hs = pd.read_csv(out / "handshakes.csv").set_index(["proposal", "repetition"])
    first = ph[ph["phase"] == "handshake"].set_index(["proposal", "repetition"])
    for column in (
        "ip_bytes",
        "datagrams",
        "round_trips",
        "retransmissions",
        "cpu_initiator_s",
        "cpu_responder_s",
    ):
        assert (hs[column] == first[column]).all(), column
    assert (hs["end_time_s"] == first["sim_time_s"]).all()
    everything = msgs.groupby(["proposal", "repetition"])["ip_bytes"].sum()
    assert (hs["ip_bytes"] < everything.reindex(hs.index)).all()


def test_the_phase_summary_describes_each_phase(lifetime):
    out, result = lifetime
    summary = pd.read_csv(out / "phase_summary.csv")
    row = summary[
        (summary["proposal"] == "hybrid")
        & (summary["phase"] == "child")
        & (summary["metric"] == "ip_bytes")
    ].iloc[0]
    child = result.phases[
        (result.phases["proposal"] == "hybrid") & (result.phases["phase"] == "child")
    ]
    assert row["n"] == 3 and row["runs"] == 3 and row["ok"] == 3
    assert row["mean"] == pytest.approx(child["ip_bytes"].mean())
    assert row["median"] == pytest.approx(child["ip_bytes"].median())
    assert {"ci95_low", "ci95_high", "p95"} <= set(summary.columns)


def test_the_report_has_the_section_and_its_plot_only_with_phases(lifetime, tmp_path):
    out, _ = lifetime
    text = build_report(out).read_text()
    assert SECTION in text
    assert (out / "lifetime_costs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](lifetime_costs.png)" in text
    assert "### Per hour at strongSwan's default rekey times" in text
    plain = tmp_path / "plain"
    run_experiment(
        parse_spec(SPEC.replace('phases = ["child", "ike"]', ""), source="p.toml"), plain
    )
    text = (plain / "report.md").read_text()
    assert SECTION not in text and "lifetime_costs.png" not in text
    assert not (plain / "lifetime_costs.png").exists()
    assert not (plain / "phases.csv").exists()


def test_the_cost_per_hour_adds_a_child_rekey_and_a_quarter_of_the_rest(lifetime):
    out, _ = lifetime
    ph = pd.read_csv(out / "phases.csv")
    text = (out / "report.md").read_text()
    # Loss-free: every repetition has the same bytes, so the mean is exact.
    at = ph[ph["proposal"] == "hybrid"].groupby("phase")["ip_bytes"].mean()
    per_hour = at["child"] + at["ike"] / 4 + at["handshake"] / 4
    row = next(line for line in text.splitlines() if line.startswith("| `far` | hybrid | 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith(f"{round(per_hour):,} ")
    assert cells[4].startswith(f"{round(at['child'] + at['ike'] / 4):,} ")
    section = text.split(SECTION)[1]
    overhead = next(
        line for line in section.splitlines() if re.match(r"\| `far` \| hybrid \| \+", line)
    )
    base = ph[ph["proposal"] == "x25519"].groupby("phase")["ip_bytes"].mean()
    base_hour = base["child"] + base["ike"] / 4 + base["handshake"] / 4
    assert f"+{round(per_hour - base_hour):,} " in overhead


def test_the_shipped_lifetime_spec_asks_what_the_brief_asks():
    spec = load_spec(Path(__file__).parents[2] / "experiments" / "sa-lifetime.toml")
    assert spec.phases == ("child", "ike")
    assert spec.pairs == ("memory",)
    assert [(p.delay_ms, p.loss) for p in spec.profiles] == [(0, 1), (5, 1), (50, 1)]
    # Each proposal's Child SA rekeys use the same key exchanges as its IKE SA.
    for p in spec.proposals:
        assert p.ike.split("-", 2)[2] == p.esp.split("-", 1)[1]
    check_pairs(spec, default_pairs())
