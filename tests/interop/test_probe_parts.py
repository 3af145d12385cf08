"""pqike.interop.probe without namespaces: the parts that read charon and pqike."""

from __future__ import annotations

from pqike.ike.impair import IMPAIRMENTS
from pqike.interop.probe import CASES, ProbeRow, charon_sent_notifies, pqike_pair_reaction


def test_every_impairment_is_a_probe_case():
    assert set(CASES) == set(IMPAIRMENTS)


def test_charon_sent_notifies_reads_generated_messages():
    log = (
        "2026-01-01 00:00:00.000001 09[ENC] <conn|1> generating IKE_AUTH response 2 "
        "[ N(AUTH_FAILED) ]\n"
        "2026-01-01 00:00:00.000002 09[ENC] <conn|1> parsed IKE_AUTH request 2 [ N(INVAL_SYN) ]\n"
        "2026-01-01 00:00:00.000003 09[ENC] <conn|1> generating IKE_SA_INIT response 0 "
        "[ SA KE No N(NATD_S_IP) ]\n"
    )
    assert charon_sent_notifies(log) == ["AUTH_FAILED (IKE_AUTH response)"]


def test_the_pqike_pair_reaction_names_the_notify():
    reaction = pqike_pair_reaction(CASES["wrong-int-auth"], "initiator")
    assert reaction.startswith("failed: AUTHENTICATION_FAILED")
    row = ProbeRow("x", "initiator", True, "", "", "established", reaction)
    assert row.finding


def test_every_case_is_probed():
    assert not [c.name for c in CASES.values() if c.skip]


def test_the_addke_notify_cases_rekey_a_child_sa_in_the_pqike_pair():
    # Both fire only in a CREATE_CHILD_SA with ADDKE, so the pair runs a Child SA rekey.
    omit = pqike_pair_reaction(CASES["omit-addke-notify"], "responder")
    assert omit.startswith("rekey failed: INVALID_SYNTAX")
    assert "ADDITIONAL_KEY_EXCHANGE is missing" in omit
    assert pqike_pair_reaction(CASES["addke-notify-on-last"], "responder") == "rekeyed"
    row = ProbeRow("x", "responder", True, "", "", "established; rekeyed", omit)
    assert row.finding
