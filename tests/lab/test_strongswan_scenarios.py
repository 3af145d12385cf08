"""The strongswan-netem scenario table over real charons, in small.

experiments/strongswan-scenarios.toml in a few handshakes: charon <-> charon through the
TUN relay, a clean and a lossy profile, short retransmission timers. The results must
record the strongSwan version the lab ran (``$PQIKE_STRONGSWAN_VERSION`` or 6.0.1), and
the scenario table must split the handshakes by what happened to them. Needs root and
network namespaces; a missing strongSwan build is installed, as in tests/interop.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pqike.interop.lab import ensure_strongswan, strongswan_version
from pqike.lab import parse_spec, run_experiment
from pqike.lab.reproductions import scenario_table
from pqike.lab.strongswan_pairs import strongswan_pairs

from .strongswan_lab import MARKS

pytestmark = MARKS

RETRANSMIT_S = 0.5
SPEC = f"""
[experiment]
seed = 601
repetitions = 4
pairs = ["strongswan"]
published = "strongswan-netem"
max_time_s = 20
retransmit_timeout_s = {RETRANSMIT_S}
retransmit_tries = 5
record_datagrams = false

[proposals]
x25519 = "aes256gcm16-prfsha384-x25519"

[profiles.clean]
delay_ms = 0

[profiles.loss]
loss = [30]
"""


def test_scenarios_over_charon_record_the_version_and_split_the_handshakes(tmp_path):
    ensure_strongswan(install=True)
    spec_path = tmp_path / "scenarios.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / "out"
    run_experiment(parse_spec(SPEC, source=str(spec_path)), out, pairs=strongswan_pairs())

    env = json.loads((out / "environment.json").read_text())
    assert env["strongswan"].endswith(strongswan_version())
    published = (out / "published.md").read_text()
    assert f"Here: {env['strongswan']}, charon <-> charon" in published
    assert (
        "## Beside the published numbers: a strongSwan 6.0.1 netem study"
        in (out / "report.md").read_text()
    )

    hs = pd.read_csv(out / "handshakes.csv")
    table = scenario_table(hs).set_index("profile")
    assert table.loc["clean", "first_try_share"] == 1.0
    lossy = hs[hs["profile"] == "loss_loss30"]
    retried = lossy[lossy["established"].astype(bool) & (lossy["retransmissions"] > 0)]
    # A handshake that needed a retransmission waited out charon's timer at least once.
    assert (retried["time_to_established_s"] >= RETRANSMIT_S).all()
    shares = table.loc["loss_loss30", ["first_try_share", "retransmitted_share", "failed_share"]]
    assert shares.sum() == pytest.approx(1.0)
