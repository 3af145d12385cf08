"""Comparing pairs message by message, from small hand-written tables."""

from __future__ import annotations

import pandas as pd

from pqike.lab.compare import (
    describe_pair,
    log_agreement,
    log_section,
    pair_sides,
    payload_differences,
    payload_section,
)

SA_INIT_REQUEST = [("IKE header", 28), ("SA", 48), ("KE", 40), ("Nonce", 36)]
PQIKE_RESPONSE = [*SA_INIT_REQUEST, ("N(IKEV2_FRAGMENTATION_SUPPORTED)", 8)]
STRONGSWAN_RESPONSE = [
    *SA_INIT_REQUEST,
    ("N(IKEV2_FRAGMENTATION_SUPPORTED)", 8),
    ("N(CHILDLESS_IKEV2_SUPPORTED)", 8),
    ("N(MULTIPLE_AUTH_SUPPORTED)", 8),
]


def tables(strongswan_response=STRONGSWAN_RESPONSE, measured_response=None):
    hs, msgs, parts = [], [], []
    for pair, response in (("memory", PQIKE_RESPONSE), ("pqike-strongswan", strongswan_response)):
        hs.append(
            {
                "proposal": "x25519",
                "pair": pair,
                "profile": "lan",
                "repetition": 0,
                "established": True,
                "retransmissions": 0,
            }
        )
        for index, (is_response, items) in enumerate(((False, SA_INIT_REQUEST), (True, response))):
            size = sum(b for _, b in items)
            if is_response and pair != "memory" and measured_response is not None:
                size = measured_response
            msgs.append(
                {
                    "proposal": "x25519",
                    "pair": pair,
                    "profile": "lan",
                    "repetition": 0,
                    "index": index,
                    "ike_bytes": size,
                }
            )
            for position, (name, size) in enumerate(items):
                parts.append(
                    {
                        "proposal": "x25519",
                        "pair": pair,
                        "profile": "lan",
                        "repetition": 0,
                        "message": index,
                        "sender": "responder" if is_response else "initiator",
                        "exchange": "IKE_SA_INIT",
                        "message_id": 0,
                        "is_response": is_response,
                        "retransmission": False,
                        "position": position,
                        "payload": name,
                        "bytes": size,
                        "protected": False,
                    }
                )
    return pd.DataFrame(parts), pd.DataFrame(msgs), pd.DataFrame(hs)


def test_pair_names_say_who_initiates():
    assert pair_sides("pqike-strongswan") == ("pqike", "strongSwan")
    assert pair_sides("strongswan") == ("strongSwan", "strongSwan")
    assert pair_sides("memory") == ("pqike", "pqike")
    assert describe_pair("strongswan-pqike") == "strongswan-pqike (strongSwan → pqike)"


def test_the_difference_is_named_payload_by_payload():
    diffs = payload_differences(*tables(), reference="memory", profile="lan")

    request, response = diffs.itertuples()
    assert (request.sender, request.difference, request.only_here) == ("pqike", 0, [])
    assert response.sender == "strongSwan"
    assert response.difference == 16
    assert response.only_here == [
        ("N(CHILDLESS_IKEV2_SUPPORTED)", 8),
        ("N(MULTIPLE_AUTH_SUPPORTED)", 8),
    ]
    assert response.only_reference == [] and response.resized == []
    assert diffs["accounted"].all()
    text = "\n".join(payload_section(diffs, reference="memory", profile="lan"))
    assert "every difference is a Notify payload" in text
    assert (
        "| IKE_SA_INIT | response by strongSwan | +16 | N(CHILDLESS_IKEV2_SUPPORTED) (8 B), "
        "N(MULTIPLE_AUTH_SUPPORTED) (8 B) | none | none | yes |"
    ) in text


def test_a_payload_of_another_size_and_a_missing_one_are_named_too():
    changed = [*SA_INIT_REQUEST[:3], ("Nonce", 68)]  # a longer nonce, no FRAG_SUP

    diffs = payload_differences(*tables(changed), reference="memory", profile="lan")

    response = diffs.iloc[1]
    assert response["difference"] == 32 - 8
    assert response["resized"] == [("Nonce", 68, 36)]
    assert response["only_reference"] == [("N(IKEV2_FRAGMENTATION_SUPPORTED)", 8)]
    text = "\n".join(payload_section(diffs, reference="memory", profile="lan"))
    assert "differences other than notifies: Nonce" in text


def test_parts_that_do_not_add_up_to_the_measured_size_are_flagged():
    diffs = payload_differences(*tables(measured_response=999), reference="memory", profile="lan")

    assert list(diffs["accounted"]) == [True, False]


def test_captured_sizes_are_checked_against_each_log():
    datagrams = pd.DataFrame(
        {
            "proposal": ["x25519"] * 4,
            "pair": ["strongswan"] * 4,
            "profile": ["lan"] * 4,
            "repetition": [0] * 4,
            "index": [0, 1, 2, 3],
            "ike_bytes": [248, 256, 316, 261],
            "initiator_log_bytes": [248, 256, 316, 261],
            # The responder never received the third datagram, and logged a different size
            # for the fourth.
            "responder_log_bytes": [248, 256, None, 260],
        }
    )

    agreement = log_agreement(datagrams)

    rows = {r.log: r for r in agreement.itertuples()}
    assert (rows["initiator"].logged, rows["initiator"].equal) == (4, 4)
    assert (rows["responder"].logged, rows["responder"].equal) == (3, 2)
    assert rows["responder"].mismatches == [("x25519", "lan", 0, 3, 261)]
    assert "| strongswan | responder (strongSwan) | 4 | 3 | 2 of 3 |" in "\n".join(
        log_section(agreement)
    )
