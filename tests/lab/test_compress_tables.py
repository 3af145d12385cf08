"""``compress_tables``: the per-handshake tables of a big run are written gzip-compressed,
and everything that reads a run's directory reads them."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from pqike.errors import ConfigurationError
from pqike.lab import build_report, parse_spec, run_experiment
from pqike.lab.metrics import table_path
from pqike.lab.published import comparison

SPEC = """
[experiment]
seed = 5
repetitions = 2
pairs = ["memory"]
compress_tables = true

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"
"x25519+mlkem768" = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

[profiles.lan]
"""


def test_the_per_handshake_tables_are_gzip_and_read_back(tmp_path):
    out = tmp_path / "run"
    result = run_experiment(parse_spec(SPEC), out)
    for name in ("handshakes", "messages", "datagrams"):
        assert not (out / f"{name}.csv").exists()
        packed = out / f"{name}.csv.gz"
        header = gzip.decompress(packed.read_bytes()).split(b"\n", 1)[0]
        assert b"proposal" in header
        assert table_path(out, f"{name}.csv") == packed
    assert (out / "summary.csv").exists()  # the summaries stay plain
    table = pd.read_csv(out / "handshakes.csv.gz")
    assert len(table) == len(result.handshakes) == 4
    # No time stamp in the gzip header (RFC 1952 2.3.1: MTIME zero), so the same table
    # gives the same file.
    assert (out / "messages.csv.gz").read_bytes()[4:8] == bytes(4)
    # The report and the published comparison read the compressed tables.
    assert "x25519+mlkem768" in build_report(out).read_text()
    assert "| `x25519+mlkem768` | IKE_INTERMEDIATE |" in comparison(out)


def test_a_finished_compressed_run_is_not_run_again(tmp_path):
    out = tmp_path / "run"
    run_experiment(parse_spec(SPEC), out)
    again = run_experiment(parse_spec(SPEC), out)
    assert again.cells_run == [] and len(again.handshakes) == 4


def test_compress_tables_must_be_a_boolean():
    with pytest.raises(ConfigurationError) as info:
        parse_spec(SPEC.replace("compress_tables = true", 'compress_tables = "yes"'), source="x")
    assert info.value.field == "experiment.compress_tables"
    assert str(info.value) == "x: experiment.compress_tables: must be true or false, got 'yes'"
