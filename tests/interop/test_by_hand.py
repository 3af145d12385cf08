"""interop/README.md, "pqike against strongSwan by hand", as a test.

``python -m pqike.interop up --strongswan-side right`` leaves a charon on the right and a
pqike configuration for the left; the ``pqike initiate`` command it prints must bring
the IKE SA up, and its pcap must dissect in tshark without expert warnings.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pqike.interop.lab import parse_list_sas
from pqike.interop.peer import REPO, charon_errors, lab_unavailable

pytestmark = pytest.mark.interop
_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

PREFIX = "pqmxhand"  # `down` removes every lab with the prefix: this test's own
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pqike.interop", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def run_by_hand(*initiate_options: str) -> tuple[str, subprocess.CompletedProcess, Path, str]:
    """Bring the lab up, run the printed initiate command; the lab's workdir stays
    until ``lab_cli("down", ...)``."""
    up = lab_cli("up", "--prefix", PREFIX, "--strongswan-side", "right", "--ike-proposal", HYBRID)
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    workdir = Path(lines[0].split("(workdir ")[1].rstrip(")"))
    (initiate,) = [line for line in lines if " initiate --config " in line]
    (list_sas,) = [line for line in lines if "--list-sas" in line]
    run = subprocess.run(
        [*shlex.split(initiate), "--no-delete", *initiate_options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    env_assignment, *argv = shlex.split(list_sas)
    name, value = env_assignment.split("=", 1)
    listed = subprocess.run(
        [*argv, "--raw"], capture_output=True, text=True, env={name: value}, timeout=30
    )
    return up.stdout, run, workdir, listed.stdout


def test_the_printed_pqike_command_establishes_with_the_strongswan_responder():
    try:
        printed, run, workdir, listed = run_by_hand()
        log = (workdir / "right" / "charon.log").read_text()
    finally:
        down = lab_cli("down", "--prefix", PREFIX)
    assert down.returncode == 0
    assert "# left: pqike, configuration " in printed
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"established: {HYBRID} SPIs " in run.stdout
    (sa,) = parse_list_sas(listed)
    assert sa.established
    assert f"established: {HYBRID} SPIs {sa.spi_i}_i {sa.spi_r}_r" in run.stdout
    assert charon_errors(log) == []


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_its_pcap_dissects_in_tshark_without_warnings():
    try:
        _, run, workdir, _ = run_by_hand()
        pcap = workdir / "left" / "pqike.pcap"
        frames = subprocess.run(
            ["tshark", "-r", str(pcap)], capture_output=True, text=True, timeout=60
        )
        expert = subprocess.run(
            ["tshark", "-r", str(pcap), "-z", "expert", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        lab_cli("down", "--prefix", PREFIX)
    assert run.returncode == 0, run.stderr
    rows = frames.stdout.splitlines()
    # IKE_SA_INIT, the ML-KEM round (request in two fragments), IKE_AUTH.
    assert len(rows) == 7
    assert all(" ISAKMP " in row for row in rows)
    assert "IKE_AUTH MID=02 Responder Response" in rows[-1]
    # -z expert lists every warning and error; a clean capture prints none.
    assert "Warns" not in expert.stdout and "Errors" not in expert.stdout
    assert "Malformed" not in frames.stdout + expert.stdout
