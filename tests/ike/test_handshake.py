"""IKE_SA_INIT + IKE_AUTH between two in-memory pqike peers (RFC 7296 1.2)."""

from __future__ import annotations

import pytest

from pqike.constants import ExchangeType, KeyExchangeMethod, NotifyType
from pqike.handshake import run_handshake
from pqike.ike.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed

CLASSICAL = [
    "aes256gcm16-prfsha384-x25519",
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha256-modp3072",
    "aes256gcm16-prfsha512-x448",
    "chacha20poly1305-prfsha256-x25519",
    "aes256-sha256-ecp384",
    "aes256gcm16-prfsha384-mlkem768",
]


def exchanges(result, sender="initiator"):
    return [
        (m.exchange, m.message_id)
        for m in result.trace.messages
        if m.sender == sender and not m.retransmission
    ]


@pytest.mark.parametrize("proposal", CLASSICAL)
def test_two_exchanges_establish_ike_and_child_sa(proposal):
    result = run_handshake(proposal)
    assert result.established, result.failures
    assert exchanges(result) == [("IKE_SA_INIT", 0), ("IKE_AUTH", 1)]
    ini = next(e for e in result.initiator_events if isinstance(e, IkeSaEstablished))
    res = next(e for e in result.responder_events if isinstance(e, IkeSaEstablished))
    assert ini.keys == res.keys
    assert ini.suite == res.suite
    assert ini.suite.describe() == proposal or proposal.startswith("aes256-sha256")
    c_ini = next(e for e in result.initiator_events if isinstance(e, ChildSaEstablished))
    c_res = next(e for e in result.responder_events if isinstance(e, ChildSaEstablished))
    assert c_ini.keys == c_res.keys and c_ini.spi_i == c_res.spi_i and c_ini.spi_r == c_res.spi_r


def test_esp_proposals_and_transport_mode():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519",
        "aes128-sha256-esn,aes256gcm16",
        initiator_options={"transport_mode": True},
        responder_options={"transport_mode": True},
    )
    assert result.established
    assert result.child.transport_mode
    assert result.child.suite.describe() == "aes128-sha256-esn"
    assert len(result.child.keys.integ_i) == 32


def test_ml_kem_alone_in_ike_sa_init_sends_the_encapsulation_key():
    result = run_handshake("aes256gcm16-prfsha384-mlkem768")
    first = result.trace.messages[0]
    # 1184-byte encapsulation key + 8-byte KE header inside a ~1.3 kB IKE_SA_INIT.
    assert first.exchange == "IKE_SA_INIT" and first.ike_bytes > 1184 + 8 + 28
    assert result.key_exchanges[0].method == KeyExchangeMethod.ML_KEM_768


def test_wrong_psk_ends_in_authentication_failed_on_both_sides():
    result = run_handshake("aes256gcm16-prfsha384-x25519", responder_psk=b"another secret")
    assert not result.established
    for events in (result.initiator_events, result.responder_events):
        failed = [e for e in events if isinstance(e, IkeSaFailed)]
        assert [f.notify for f in failed] == [NotifyType.AUTHENTICATION_FAILED]


def test_responder_asks_for_another_ke_method_and_initiator_retries():
    # The initiator guesses x25519 first; the responder only accepts ecp256.
    result = run_handshake(
        "aes256gcm16-prfsha256-x25519-ecp256", responder_proposal="aes256gcm16-prfsha256-ecp256"
    )
    assert result.established
    sa_init = [m for m in result.trace.messages if m.exchange == "IKE_SA_INIT"]
    assert [m.sender for m in sa_init] == ["initiator", "responder", "initiator", "responder"]
    assert "N" in sa_init[1].payloads and "KE" not in sa_init[1].payloads
    assert result.suite.ke == KeyExchangeMethod.ECP256
    assert result.initiator.stats["invalid_ke_received"] == 1


def test_cookie_challenge_is_answered_with_the_same_request_and_the_cookie():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519", responder_options={"require_cookie": True}
    )
    assert result.established
    sa_init = [m for m in result.trace.messages if m.exchange == "IKE_SA_INIT"]
    assert len(sa_init) == 4
    assert sa_init[2].payloads.startswith("N SA KE")
    # Notify header (4 + 4) and the cookie: a 4-byte secret version and a SHA-256 hash.
    assert sa_init[2].ike_bytes == sa_init[0].ike_bytes + 4 + 4 + 4 + 32


def test_no_common_proposal_ends_with_no_proposal_chosen_on_both_sides():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519", responder_proposal="aes128gcm16-prfsha256-ecp256"
    )
    assert not result.established
    notifies = {(type(e).__name__, e.notify) for e in result.failures}
    assert notifies == {("IkeSaFailed", NotifyType.NO_PROPOSAL_CHOSEN)}
    assert len(result.failures) == 2


def test_nat_detection_sees_no_nat_in_memory():
    result = run_handshake()
    est = next(e for e in result.initiator_events if isinstance(e, IkeSaEstablished))
    assert not est.nat_local and not est.nat_remote


def test_delete_runs_an_informational_exchange():
    result = run_handshake()
    ini, res = result.initiator, result.responder
    ini.delete(now=10.0)
    for data, _ in ini.datagrams_to_send(now=10.0):
        res.receive_datagram(data, ini.local, now=10.0)
    for data, _ in res.datagrams_to_send(now=10.0):
        ini.receive_datagram(data, res.local, now=10.0)
    assert ini.state.name == "DELETED" and res.state.name == "DELETED"


def test_message_ids_count_up_and_the_trace_names_exchanges():
    result = run_handshake()
    rows = [(m.sender, m.exchange, m.message_id, m.is_response) for m in result.trace.messages]
    assert rows == [
        ("initiator", ExchangeType.IKE_SA_INIT.name, 0, False),
        ("responder", ExchangeType.IKE_SA_INIT.name, 0, True),
        ("initiator", ExchangeType.IKE_AUTH.name, 1, False),
        ("responder", ExchangeType.IKE_AUTH.name, 1, True),
    ]


def test_force_nat_t_moves_both_peers_to_port_4500_with_the_marker():
    """RFC 7296 2.23 / RFC 3948 2.2: after IKE_SA_INIT every message carries the marker."""
    result = run_handshake("aes256gcm16-prfsha384-x25519", initiator_options={"force_nat_t": True})
    assert result.established
    assert result.initiator.local[1] == 4500 and result.responder.local[1] == 4500
    assert result.responder.remote[1] == 4500
    auth = [m for m in result.trace.messages if m.exchange == "IKE_AUTH"]
    assert all(m.udp_bytes == m.ike_bytes + 4 for m in auth)
    sa_init = [m for m in result.trace.messages if m.exchange == "IKE_SA_INIT"]
    assert all(m.udp_bytes == m.ike_bytes for m in sa_init)


def test_a_refused_responder_still_knows_the_initiators_spi():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519", responder_proposal="aes128gcm16-prfsha256-ecp256"
    )
    assert result.responder.spi_i == result.initiator.spi_i
