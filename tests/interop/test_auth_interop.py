"""RFC 8784 PPK against strongSwan 6.0.1, both directions, keys compared with charon's
log as in test_matrix, with x25519+ML-KEM-768; a wrong PPK must end in
AUTHENTICATION_FAILED. (The certificate cases are not here yet: see the branch report.)"""

from __future__ import annotations

import pytest

from pqike.interop.lab import Lab, ensure_strongswan
from pqike.interop.peer import (
    PqikeResponder,
    charon_errors,
    lab_unavailable,
    run_pqike_initiator,
    strongswan_child_keys,
    strongswan_ike_keys,
    write_pqike_config,
)

pytestmark = pytest.mark.interop
_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

PREFIX = "pqau"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
PPK_HEX = "5f1d0c6e2a9b8c7d6e5f4a3b2c1d0e0f112233445566778899aabbccddeeff00"


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


def run(lab, direction, sw, pq, ike=HYBRID, fragment_size=1280, expect_up=True):
    """pqike on the left when it initiates, on the right when charon does."""
    if direction == "pqike":
        charon = lab.start_strongswan(
            "right", ike_proposal=ike, fragment_size=fragment_size, **sw("right")
        )
        cfg = write_pqike_config(
            lab.workdir / "left.toml",
            lab,
            "left",
            ike_proposal=ike,
            fragment_size=fragment_size,
            auth=pq("left"),
        )
        out = run_pqike_initiator(lab, "left", cfg, lab.workdir / "left.jsonl")
        log = charon.log()
        return list(out.events), log, out.stdout + out.stderr
    cfg = write_pqike_config(
        lab.workdir / "right.toml",
        lab,
        "right",
        ike_proposal=ike,
        fragment_size=fragment_size,
        auth=pq("right"),
    )
    responder = PqikeResponder(lab, "right", cfg, lab.workdir / "right.jsonl").start()
    charon = lab.start_strongswan(
        "left", ike_proposal=ike, fragment_size=fragment_size, **sw("left")
    )
    result = charon.initiate(timeout=15, check=False)
    events = responder.wait_for(
        lambda ev: any(e["event"] in ("child_sa_established", "ike_sa_failed") for e in ev)
    )
    return events, result.log, responder.stop()


def agreed(events, log, output):
    ike = next((e for e in events if e["event"] == "ike_sa_established"), None)
    child = next((e for e in events if e["event"] == "child_sa_established"), None)
    assert ike is not None and child is not None, f"{events}\n{output[-2000:]}\n{log[-3000:]}"
    assert strongswan_ike_keys(log) == ike["keys"]
    assert strongswan_child_keys(log) == child["keys"]
    assert charon_errors(log) == []


@pytest.mark.parametrize("required", [True, False], ids=["mandatory", "optional"])
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_ppk_rfc_8784_with_ml_kem(strongswan, direction, required):
    ppk_sw = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    ppk_pq = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    with Lab(prefix=PREFIX) as lab:
        events, log, output = run(lab, direction, lambda s: ppk_sw, lambda s: ppk_pq)
    agreed(events, log, output)
    assert "using PPK for PPK_ID 'ppk-lab'" in log


def _failed_both(events, log, output):
    failed = [e for e in events if e["event"] == "ike_sa_failed"]
    assert failed and failed[0]["notify_name"] == "AUTHENTICATION_FAILED", (events, output[-2000:])
    assert "AUTHENTICATION_FAILED" in log or "AUTH_FAILED" in log, log[-3000:]
    return failed[0]["reason"]


@pytest.mark.parametrize("required", [True, False], ids=["mandatory", "optional"])
@pytest.mark.parametrize("direction", ["pqike", "strongswan"])
def test_a_wrong_ppk_ends_in_authentication_failed(strongswan, direction, required):
    sw = {"ppk_hex": PPK_HEX, "ppk_id": "ppk-lab", "ppk_required": required}
    pq = {"ppk_hex": "00" * 32, "ppk_id": "ppk-lab", "ppk_required": required}
    with Lab(prefix=PREFIX) as lab:
        events, log, output = run(lab, direction, lambda s: sw, lambda s: pq)
    _failed_both(events, log, output)
