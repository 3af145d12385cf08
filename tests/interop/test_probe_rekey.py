"""The probe's Child SA rekey rows against strongSwan 6.0.1: charon rekeys a Child SA
with ADDKE against a pqike responder carrying the impairment (RFC 9370 2.2.4)."""

from __future__ import annotations

import pytest

from pqike.interop.lab import Lab, ensure_strongswan
from pqike.interop.peer import lab_unavailable
from pqike.interop.probe import CASES, probe_one

pytestmark = pytest.mark.interop

_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


def test_without_the_notify_charon_keeps_its_sas_and_does_not_rekey(strongswan, tmp_path):
    with Lab(prefix="pqpt") as lab:
        row = probe_one(lab, CASES["omit-addke-notify"], "responder", tmp_path)
    assert row.strongswan_established is False
    assert "ADDITIONAL_KEY_EXCHANGE notify missing" in row.strongswan_log
    assert row.strongswan_notify == ""
    assert row.strongswan_after == "IKE SA ESTABLISHED (child INSTALLED)"
    assert row.pqike_outcome.startswith("established; no rekey result: answered")
    assert not row.finding


def test_a_notify_on_the_last_followup_is_ignored_and_the_rekey_completes(strongswan, tmp_path):
    with Lab(prefix="pqpt") as lab:
        row = probe_one(lab, CASES["addke-notify-on-last"], "responder", tmp_path)
    assert row.strongswan_established is True
    assert row.strongswan_after == "IKE SA ESTABLISHED (child INSTALLED)"
    assert row.pqike_outcome == "established; rekeyed"
    assert row.pqike_pair == "rekeyed"
