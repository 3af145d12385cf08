"""Cells on several local processes or a Dask cluster: the same tables as one process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from pqike.errors import ConfigurationError
from pqike.lab import parse_spec, run_experiment

SPEC = """
[experiment]
seed = 11
repetitions = 10
pairs = ["memory"]

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"
hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

[profiles.lossy]
delay_ms = 20
loss = 10
"""

# Measured, not drawn: CPU and wall-clock times, and the time to established, which is
# the simulated time with each step's CPU time added.
MEASURED = {"time_to_established_s"}


def _drawn(df: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in df.columns if "cpu" not in c and "wall" not in c and c not in MEASURED]
    return df[keep]


def _same(a, b) -> None:
    for name in ("handshakes", "messages", "datagrams"):
        pd.testing.assert_frame_equal(_drawn(getattr(a, name)), _drawn(getattr(b, name)))


def test_two_local_workers_give_the_tables_of_one_process():
    spec = parse_spec(SPEC)
    one = run_experiment(spec, report=False)
    two = run_experiment(spec, report=False, workers=2)
    # 2 cells of 10 repetitions in chunks of 4: each cell is joined from 3 chunks.
    assert len(two.handshakes) == 20 and two.handshakes["repetition"].tolist() == [
        *range(10),
        *range(10),
    ]
    assert two.handshakes["retransmissions"].sum() > 0  # 10 % loss: the draws matter
    _same(one, two)


def test_a_local_dask_cluster_gives_the_same_tables():
    distributed = pytest.importorskip("distributed")
    spec = parse_spec(SPEC)
    one = run_experiment(spec, report=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dk = run_experiment(spec, report=False, scheduler=cluster.scheduler_address)
    _same(one, dk)


def test_a_parallel_run_saves_cells_and_a_rerun_only_reads_them(tmp_path):
    spec = parse_spec(SPEC)
    first = run_experiment(spec, tmp_path, report=False, workers=2)
    assert sorted(first.cells_run) == sorted(c.id for c in spec.cells())
    again = run_experiment(spec, tmp_path, report=False, workers=2)
    assert again.cells_run == [] and len(again.cells_skipped) == 2
    _same(first, again)


def test_an_unreachable_scheduler_is_one_configuration_error():
    with pytest.raises(ConfigurationError, match="cannot reach the Dask scheduler"):
        run_experiment(parse_spec(SPEC), report=False, scheduler="tcp://127.0.0.1:9")


def test_sigint_during_parallel_cells_stops_cleanly_and_keeps_saved_cells(tmp_path):
    spec = tmp_path / "long.toml"
    spec.write_text(SPEC.replace("repetitions = 10", "repetitions = 4000"))
    out = tmp_path / "out"
    run = subprocess.Popen(
        [
            *(sys.executable, "-c", "from pqike.cli import main; main()"),
            *("experiment", "run", str(spec), "--out", str(out), "--quiet", "--workers", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # both workers are inside their chunks
    run.send_signal(signal.SIGINT)
    try:
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, (stdout, stderr)
    assert "cells are saved" in stderr and "run the same command again" in stderr
    # Nothing goes wrong on the way out: the Ctrl-C waits until every worker has started
    # (a worker killed while multiprocessing starts it would print a traceback).
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not (out / "handshakes.csv").exists()


def test_plots_drawn_by_workers_equal_those_drawn_here(tmp_path):
    import shutil

    from pqike.lab import build_report

    spec = parse_spec(SPEC)
    run_experiment(spec, tmp_path / "two", workers=2)  # the report's plots on 2 processes
    shutil.copytree(tmp_path / "two", tmp_path / "one")
    for png in (tmp_path / "one").glob("*.png"):
        png.unlink()
    build_report(tmp_path / "one", workers=1)
    pngs = sorted(p.name for p in (tmp_path / "two").glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    for name in [*pngs, "report.md", "summary.csv"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
