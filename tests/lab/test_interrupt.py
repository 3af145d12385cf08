"""Ctrl-C during real-time (udp) cells: a clean stop, exit 130, no asyncio noise.

The run is a real ``pqike experiment run`` process; SIGINT arrives while a udp handshake
is under way. It must also work when the process was started with SIGINT ignored, as a
shell starts background jobs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

SPEC = """
[experiment]
repetitions = 100
pairs = ["udp"]

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"

# Most of each handshake is spent waiting for the relay: that is where Ctrl-C lands.
[profiles.wan]
delay_ms = 50
"""


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_sigint_during_udp_cells_stops_cleanly(tmp_path, inherited):
    spec = tmp_path / "long.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    run = subprocess.Popen(
        [
            *(sys.executable, "-c", "from pqike.cli import main; main()"),
            *("experiment", "run", str(spec), "--out", str(out), "--quiet"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    deadline = time.monotonic() + 30
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the cell's 100 handshakes of 0.2 s
    run.send_signal(signal.SIGINT)
    try:
        stdout, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, (stdout, stderr)
    assert "interrupted: 0 of 1 cells are saved" in stderr
    assert "Task was destroyed" not in stderr
    assert "Traceback" not in stderr
    assert not (out / "handshakes.csv").exists()
