"""The runner: cells and repetitions into tables, determinism, resuming, peer checks."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pqike.errors import ConfigurationError
from pqike.lab import load_spec, parse_spec, run_cell, run_experiment
from pqike.lab.peers import UnavailablePair
from pqike.lab.registry import default_pairs

SPEC = """
[experiment]
description = "tiny"
seed = 3
repetitions = 2
baseline = "x25519"

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"
hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

[profiles.near]
delay_ms = 5

[profiles.far]
delay_ms = 50
loss = 20
repetitions = 4
"""

# Columns that depend on the seed and the spec only (not on this machine's CPU).
DETERMINISTIC = [
    "proposal",
    "pair",
    "profile",
    "repetition",
    "seed",
    "established",
    "failure",
    "messages",
    "datagrams",
    "fragments",
    "round_trips",
    "ike_bytes",
    "udp_bytes",
    "ip_bytes",
    "retransmissions",
    "datagrams_lost",
    "sim_time_s",
    "end_time_s",
]


def write_spec(tmp_path, text=SPEC, name="tiny"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_cell_runs_its_repetitions_into_tables():
    spec = parse_spec(SPEC, default_name="tiny")
    cell = spec.cells()[1]
    assert cell.id == "x25519__memory__far"
    result = run_cell(spec, cell)
    hs = result.handshakes
    assert list(hs["repetition"]) == [0, 1, 2, 3]
    assert set(hs["experiment"]) == {"tiny"}
    assert (hs["delay_ms"] == 50).all() and (hs["loss_pct"] == 20).all()
    ok = hs[hs["established"]]
    assert (ok["sim_time_s"] >= 0.2).all()
    assert (ok["sim_time_cpu_s"] > ok["sim_time_s"]).all()
    assert (hs["cpu_initiator_s"] > 0).all() and (hs["cpu_responder_s"] > 0).all()
    # Messages and datagrams add up to the handshake totals.
    per = result.datagrams.groupby("repetition")["ip_bytes"].sum()
    assert list(per) == list(hs["ip_bytes"])
    msgs = result.messages.groupby("repetition").size()
    assert list(msgs) == list(hs["messages"])


def test_without_out_nothing_is_written_and_tables_come_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_experiment(parse_spec(SPEC))
    assert list(tmp_path.iterdir()) == []
    assert len(result.handshakes) == 2 * 2 + 2 * 4
    summary = result.summary
    ip = summary[(summary["metric"] == "ip_bytes") & (summary["profile"] == "near")]
    assert list(ip["proposal"]) == ["x25519", "hybrid"]
    assert (ip["median"].iloc[1] - ip["median"].iloc[0]) > 2000


def test_same_spec_and_seed_give_identical_bytes_and_simulated_times(tmp_path):
    spec = write_spec(tmp_path)
    first = run_experiment(spec, tmp_path / "a", report=False).handshakes
    second = run_experiment(spec, tmp_path / "b", report=False).handshakes
    pd.testing.assert_frame_equal(first[DETERMINISTIC], second[DETERMINISTIC])
    # ...and the loss really did something in the lossy profile.
    assert first["retransmissions"].sum() > 0


def test_a_different_seed_changes_the_lossy_runs(tmp_path):
    a = run_experiment(parse_spec(SPEC)).handshakes
    b = run_experiment(parse_spec(SPEC.replace("seed = 3", "seed = 4"))).handshakes
    far = a["profile"] == "far"
    assert not a[far][DETERMINISTIC[4:]].equals(b[far][DETERMINISTIC[4:]])
    near = a["profile"] == "near"
    assert list(a[near]["ip_bytes"]) == list(b[near]["ip_bytes"])


def test_the_output_directory_holds_the_tables_and_the_journal(tmp_path):
    out = tmp_path / "out"
    run_experiment(write_spec(tmp_path), out)
    for name in ("handshakes.csv", "messages.csv", "datagrams.csv", "summary.csv"):
        assert (out / name).stat().st_size > 0
    env = json.loads((out / "environment.json").read_text())
    assert env["seed"] == 3
    assert env["packages"]["cryptography"]
    assert len(env["spec_sha256"]) == 64
    journal = json.loads((out / "run.json").read_text())
    assert journal["complete"] is True
    assert not (out / "cells").exists()
    assert (out / "spec.toml").read_text() == SPEC
    assert (out / "report.md").exists()


class _Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_with_the_remaining_cells(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    finished = []

    def stop_after_two_cells(p):
        if p.cells_done == 2 and p.cell not in finished:
            finished.append(p.cell)
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_experiment(spec, out, progress=stop_after_two_cells, report=False)
    saved = sorted(p.name for p in (out / "cells").iterdir())
    assert saved == ["x25519__memory__far", "x25519__memory__near"]

    ran = []
    result = run_experiment(spec, out, progress=lambda p: ran.append(p), report=False)
    assert result.cells_skipped == ["x25519__memory__near", "x25519__memory__far"]
    assert result.cells_run == ["hybrid__memory__near", "hybrid__memory__far"]
    assert ran[-1].handshakes_done == ran[-1].handshakes_total == 12
    assert sum(1 for p in ran if p.skipped) == 2
    # The resumed tables are those of a run in one go.
    whole = run_experiment(spec, tmp_path / "whole", report=False)
    pd.testing.assert_frame_equal(result.handshakes[DETERMINISTIC], whole.handshakes[DETERMINISTIC])


def test_a_complete_run_is_not_run_again(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_experiment(spec, out, report=False)
    again = run_experiment(spec, out, report=False)
    assert again.cells_run == []
    assert len(again.cells_skipped) == 4
    assert len(again.handshakes) == 12


def test_a_changed_spec_discards_earlier_cells(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"

    def interrupt(p):
        if p.cells_done == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_experiment(spec, out, progress=interrupt, report=False)
    spec.write_text(SPEC.replace("seed = 3", "seed = 9"))
    result = run_experiment(spec, out, report=False)
    assert result.cells_discarded == 1
    assert len(result.cells_run) == 4


def test_repeat_overrides_every_cell_and_is_part_of_the_resume_key(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_experiment(spec, out, report=False)
    result = run_experiment(spec, out, repeat=1, report=False, force=True)
    assert len(result.cells_run) == 4
    assert len(result.handshakes) == 4


def test_a_finished_run_of_another_spec_is_kept_unless_forced(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_experiment(spec, out, report=False)
    before = (out / "handshakes.csv").read_bytes()
    for other in (
        {"spec": write_spec(tmp_path, SPEC.replace("seed = 3", "seed = 9"), name="other")},
        {"spec": spec, "repeat": 1},
    ):
        with pytest.raises(ConfigurationError) as err:
            run_experiment(other["spec"], out, repeat=other.get("repeat"), report=False)
        assert err.value.field == "out"
        assert str(err.value).startswith(f"--out {out}: holds a finished run of spec ")
        assert "pass --force to replace it" in str(err.value)
        assert (out / "handshakes.csv").read_bytes() == before
    # The same spec resumes (here: finds everything done) without --force.
    assert run_experiment(spec, out, report=False).cells_run == []


def test_a_directory_of_other_files_is_not_written_into_unless_forced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="holds other files and no experiment run"):
        run_experiment(write_spec(tmp_path), out, report=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    run_experiment(write_spec(tmp_path), out, report=False, force=True)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "run.json").exists()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", "is a file, not a directory"),
        ("file/sub", "a part of this path is a file, not a directory"),
    ],
)
def test_an_out_that_cannot_be_a_directory_is_one_error(tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError) as err:
        run_experiment(write_spec(tmp_path), tmp_path / where, report=False)
    assert str(err.value).startswith(f"--out {tmp_path / where}: {message}")
    assert "\n" not in str(err.value)


def test_datagrams_can_be_left_out(tmp_path):
    text = SPEC.replace('description = "tiny"', 'description = "tiny"\nrecord_datagrams = false')
    out = tmp_path / "out"
    result = run_experiment(write_spec(tmp_path, text), out, report=False)
    assert result.datagrams.empty
    assert not (out / "datagrams.csv").exists()
    assert (out / "messages.csv").exists()


def test_messages_can_be_left_out_and_the_report_still_builds(tmp_path):
    text = SPEC.replace('description = "tiny"', 'description = "tiny"\nrecord_messages = false')
    out = tmp_path / "out"
    result = run_experiment(write_spec(tmp_path, text), out)
    assert result.messages.empty
    assert not (out / "messages.csv").exists()
    assert len(pd.read_csv(out / "handshakes.csv")) == 2 * (2 + 4)
    # The report reads bytes and times from handshakes.csv when there are no messages.
    assert "## Findings" in (out / "report.md").read_text()


def test_record_messages_must_be_a_boolean(tmp_path):
    text = SPEC.replace('description = "tiny"', 'description = "tiny"\nrecord_messages = 0')
    with pytest.raises(ConfigurationError) as err:
        load_spec(write_spec(tmp_path, text))
    assert err.value.field == "experiment.record_messages"
    assert "must be true or false, got 0" in str(err.value)


def test_a_pair_that_cannot_run_here_is_refused_before_anything_runs(tmp_path):
    text = SPEC.replace('description = "tiny"', 'description = "tiny"\npairs = ["memory", "udp"]')
    pairs = {**default_pairs(), "udp": UnavailablePair("udp", "no UDP endpoint in this test")}
    out = tmp_path / "out"
    with pytest.raises(ConfigurationError) as info:
        run_experiment(load_spec(write_spec(tmp_path, text)), out, pairs=pairs)
    assert info.value.field == "experiment.pairs[1]"
    assert "peer pair 'udp' is not available here: no UDP endpoint in this test" in str(info.value)
    assert not out.exists()
