"""``pqike experiment run / report / list``."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from pqike.cli import app

runner = CliRunner()

SPEC = """
[experiment]
description = "a quick look"
repetitions = 2

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"
hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

[profiles.wan]
delay_ms = 20
"""


def test_run_writes_results_and_a_second_run_has_nothing_left_to_do(tmp_path):
    spec = tmp_path / "quick.toml"
    spec.write_text(SPEC)
    out = tmp_path / "res"
    first = runner.invoke(app, ["experiment", "run", str(spec), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "2 cells run, 0 already done; 4 of 4 handshakes established" in first.output
    assert (out / "report.md").exists() and (out / "handshakes.csv").exists()
    again = runner.invoke(app, ["experiment", "run", str(spec), "--out", str(out), "--quiet"])
    assert "0 cells run, 2 already done" in again.output


def test_run_defaults_to_results_and_the_spec_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.toml").write_text(SPEC)
    out = runner.invoke(app, ["experiment", "run", "quick.toml", "--repeat", "1", "--quiet"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "results" / "quick" / "handshakes.csv").exists()


def test_a_bad_spec_is_one_error_naming_the_field(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC + "\n[profiles.lossy]\nloss = 120\n")
    out = runner.invoke(app, ["experiment", "run", str(spec)])
    assert out.exit_code == 2
    assert f"error: {spec}: profiles.lossy.loss: must be a percentage from 0 to 100, got 120" in (
        out.output
    )


def test_report_rebuilds_from_the_tables(tmp_path):
    spec = tmp_path / "quick.toml"
    spec.write_text(SPEC)
    out = tmp_path / "res"
    runner.invoke(app, ["experiment", "run", str(spec), "--out", str(out), "--quiet"])
    (out / "report.md").unlink()
    rebuilt = runner.invoke(app, ["experiment", "report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (out / "report.md").read_text().startswith("# quick")
    missing = runner.invoke(app, ["experiment", "report", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no handshakes.csv" in missing.output


def test_list_shows_each_spec_with_its_description(tmp_path):
    (tmp_path / "quick.toml").write_text(SPEC)
    (tmp_path / "other.toml").write_text('[experiment]\ndescription = "another"\n')
    out = runner.invoke(app, ["experiment", "list", "--dir", str(tmp_path)])
    assert out.exit_code == 0
    lines = out.output.splitlines()
    assert lines[0].endswith("another") and "other.toml" in lines[0]
    assert lines[1].endswith("a quick look") and "quick.toml" in lines[1]


def test_list_shows_the_shipped_specs():
    shipped = Path(__file__).resolve().parents[2] / "experiments"
    out = runner.invoke(app, ["experiment", "list", "--dir", str(shipped)])
    assert out.exit_code == 0
    # The names are padded to the longest one (strongswan-scenarios.toml).
    assert re.search(r"hybrid-vs-classical\.toml +Hybrid ML-KEM", out.output)


def test_a_finished_run_of_another_spec_needs_force(tmp_path):
    spec = tmp_path / "quick.toml"
    spec.write_text(SPEC)
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("a quick look", "another look"))
    out = tmp_path / "res"
    runner.invoke(app, ["experiment", "run", str(spec), "--out", str(out), "--quiet"])
    refused = runner.invoke(app, ["experiment", "run", str(other), "--out", str(out), "--quiet"])
    assert refused.exit_code == 2
    assert refused.output.startswith(f"error: --out {out}: holds a finished run of spec {spec}")
    assert len(refused.output.strip().splitlines()) == 1
    forced = runner.invoke(
        app, ["experiment", "run", str(other), "--out", str(out), "--quiet", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert "another look" in (out / "report.md").read_text()


def test_bad_out_paths_are_one_sentence(tmp_path):
    spec = tmp_path / "quick.toml"
    spec.write_text(SPEC)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub", Path("/proc/nope")):
        result = runner.invoke(app, ["experiment", "run", str(spec), "--out", str(out)])
        assert result.exit_code == 2
        assert result.output.startswith(f"error: --out {out}: ")
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output


def test_list_finds_the_shipped_specs_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["experiment", "list"])
    assert out.exit_code == 0, out.output
    assert "hybrid-vs-classical.toml" in out.output and "Hybrid ML-KEM" in out.output
