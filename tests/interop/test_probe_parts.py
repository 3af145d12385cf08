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
