"""IkeEndpoint: many IKE SAs behind one port pair, routed by SPI (RFC 7296 2.6, 3.1).

Two endpoints talk in memory: ``pump`` carries every queued datagram across until both
are quiet, with a ``deliver`` hook for loss and duplication.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.constants import ExchangeType, NotifyType
from pqike.errors import LocalProtocolError
from pqike.ike.endpoint import EndpointLimits, IkeEndpoint
from pqike.ike.events import (
    ChildSaEstablished,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    MessageSent,
)
from pqike.ike.states import IkeSaState
from pqike.wire.codec import decode_header, decode_message
from pqike.wire.payloads import NotifyPayload

PROPOSAL = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
INI = ("192.0.2.1", 500)
RES = ("192.0.2.2", 500)


def pump(a, b, *, now=0.0, deliver=None, rounds=64):
    """Carry datagrams a <-> b until neither has anything to send; return them all."""
    carried = []
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, local, remote in src.datagrams_to_send(now=now):
                carried.append((data, local, remote))
                moved = True
                for d in deliver(data) if deliver else [data]:
                    dst.receive_datagram(d, local, local=remote, now=now)
        if not moved:
            return carried
    raise AssertionError("the endpoints never went quiet")


def carry_between_sas(a, b, *, now=0.0, rounds=16):
    """Carry datagrams between two bare ``IkeSa`` objects (no endpoint, no event read)
    until neither has anything to send."""
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, _ in src.datagrams_to_send(now=now):
                dst.receive_datagram(data, src.local, now=now)
                moved = True
        if not moved:
            return
    raise AssertionError("the SAs never went quiet")


def events(endpoint):
    out = []
    while (item := endpoint.next_event()) is not None:
        out.append(item)
    return out


def first_sa_init(endpoint, now=0.0):
    """The IKE_SA_INIT request an initiator endpoint queued, with its addresses."""
    (item,) = endpoint.datagrams_to_send(now=now)
    return item


def test_one_responder_endpoint_serves_many_ike_sas_routed_by_their_spis(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sas = [ini.initiate(initiator_config(), RES, local=INI, now=0.0) for _ in range(5)]
    pump(ini, res)
    assert all(sa.is_established for sa in sas)
    assert len(res) == 5 and res.half_open == 0
    responders = {sa.spi_r: res.find(sa.spi_r) for sa in sas}
    assert all(r is not None and r.is_established for r in responders.values())
    assert {r.spi_i for r in responders.values()} == {sa.spi_i for sa in sas}
    up = [(sa, e) for sa, e in events(res) if isinstance(e, IkeSaEstablished)]
    assert sorted(e.spi_r for _, e in up) == sorted(responders)
    assert all(sa is responders[e.spi_r] for sa, e in up)
    assert res.stats["responder_sas_created"] == 5


def test_initiator_events_come_with_their_sa_and_the_child_sa(initiator_config, responder_config):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    pump(ini, res)
    kinds = [type(e) for owner, e in events(ini) if owner is sa]
    assert IkeSaEstablished in kinds and ChildSaEstablished in kinds


def test_retransmitted_ike_sa_init_goes_to_the_sa_that_answered_it(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    res.receive_datagram(data, local, local=remote, now=1.0)
    answers = res.datagrams_to_send(now=1.0)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert len(res) == 1 and res.stats["responder_sas_created"] == 1
    (sa,) = res
    assert sa.stats["retransmitted_requests"] == 1


def test_the_same_spi_from_another_peer_is_another_ike_sa(initiator_config, responder_config):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    res.receive_datagram(data, ("192.0.2.99", 500), local=remote, now=0.0)
    assert len(res) == 2
    assert res.stats["responder_sas_created"] == 2


def test_cookie_exchange_keeps_no_state_until_the_cookie_comes_back(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(require_cookie=True))
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    (reply, _, _) = res.datagrams_to_send(now=0.0)[0]
    assert decode_message(reply).notifies()[0].notify_type == NotifyType.COOKIE
    assert len(res) == 0 and res.half_open == 0
    ini.receive_datagram(reply, RES, local=INI, now=0.0)
    pump(ini, res)
    assert sa.is_established
    assert len(res) == 1
    assert res.stats["stateless_replies"] == 1


def test_invalid_ke_payload_answer_keeps_no_state_and_the_retry_succeeds(
    initiator_config, responder_config
):
    ini = IkeEndpoint()
    res = IkeEndpoint(responder_config("aes256gcm16-prfsha384-ecp256"))
    sa = ini.initiate(
        initiator_config("aes256gcm16-prfsha384-x25519-ecp256"), RES, local=INI, now=0.0
    )
    pump(ini, res)
    assert sa.is_established
    assert len(res) == 1 and res.stats["stateless_replies"] == 1


def test_no_proposal_chosen_is_reported_but_the_sa_is_not_kept(initiator_config, responder_config):
    ini = IkeEndpoint()
    res = IkeEndpoint(responder_config("aes128gcm16-prfsha256-ecp256"))
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    pump(ini, res)
    assert sa.is_closed
    assert len(res) == 0
    (failed,) = [e for _, e in events(res) if isinstance(e, IkeSaFailed)]
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN


def test_junk_esp_keepalives_and_unknown_spis_are_dropped_and_counted(
    initiator_config, responder_config
):
    res = IkeEndpoint(responder_config())
    marker_ports = (("198.51.100.7", 4500), ("192.0.2.2", 4500))
    peer, local = marker_ports
    res.receive_datagram(b"\x00" * 10, ("198.51.100.7", 500), local=RES, now=0.0)
    res.receive_datagram(b"\x01" * 40, ("198.51.100.7", 500), local=RES, now=0.0)  # version 0
    res.receive_datagram(b"\xff", peer, local=local, now=0.0)
    res.receive_datagram(b"\x12\x34\x56\x78" + b"\x00" * 40, peer, local=local, now=0.0)
    ini = IkeEndpoint()
    ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, src, dst = first_sa_init(ini)
    as_auth = bytearray(data)
    as_auth[8:16] = b"\x11" * 8  # a made-up SPIr
    as_auth[18] = ExchangeType.IKE_AUTH
    res.receive_datagram(bytes(as_auth), src, local=dst, now=0.0)
    stats = res.stats
    assert stats["dropped_junk"] == 2
    assert stats["nat_keepalives"] == 1
    assert stats["dropped_esp"] == 1
    assert stats["dropped_unknown_spi"] == 1
    assert len(res) == 0 and res.datagrams_to_send(now=0.0) == []


def sa_init_header(body: bytes) -> bytes:
    """An IKE_SA_INIT request header (SPIr 0, Initiator flag) in front of ``body``."""
    length = (28 + len(body)).to_bytes(4, "big")
    return b"\x11" * 8 + b"\x00" * 8 + b"\x21\x20\x22\x08" + b"\x00" * 4 + length + body


junk = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"\x00" * 4 + b),
    st.binary(max_size=200).map(sa_init_header),
    st.binary(max_size=200).map(lambda b: b"\x00" * 4 + sa_init_header(b)),
)


@settings(max_examples=400, deadline=None)
@given(junk, st.sampled_from([500, 4500]))
def test_junk_never_raises_and_never_leaves_state_behind(responder_config, data, port):
    res = IkeEndpoint(responder_config())
    res.receive_datagram(data, ("198.51.100.7", port), local=("192.0.2.2", port), now=0.0)
    assert len(res) == 0 and res.half_open == 0 and res.get_timer() is None
    assert len(res.datagrams_to_send(now=0.0)) <= 1  # at most one stateless error notify


def test_stateless_replies_on_marker_ports_carry_the_marker(initiator_config, responder_config):
    res = IkeEndpoint(responder_config(require_cookie=True))
    ini = IkeEndpoint()
    ini.initiate(initiator_config(), ("192.0.2.2", 15500), local=("192.0.2.1", 15600), now=0.0)
    data, src, dst = first_sa_init(ini)
    assert data[:4] == b"\x00" * 4
    res.receive_datagram(data, src, local=dst, now=0.0)
    (reply, _, _) = res.datagrams_to_send(now=0.0)[0]
    assert reply[:4] == b"\x00" * 4
    assert decode_message(reply[4:]).notifies()[0].notify_type == NotifyType.COOKIE


def test_an_initiator_only_endpoint_ignores_ike_sa_init_requests(initiator_config):
    a, b = IkeEndpoint(), IkeEndpoint()
    a.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, src, dst = first_sa_init(a)
    b.receive_datagram(data, src, local=dst, now=0.0)
    assert len(b) == 0 and b.stats["dropped_no_config"] == 1


def test_config_for_chooses_per_local_address_and_may_refuse_a_peer(
    initiator_config, responder_config
):
    v4 = responder_config()
    seen = []

    def config_for(local, remote):
        seen.append((local, remote))
        return v4 if remote[0] != "192.0.2.66" else None

    ini, res = IkeEndpoint(), IkeEndpoint(config_for)
    good = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    refused = ini.initiate(initiator_config(), RES, local=("192.0.2.66", 500), now=0.0)
    pump(ini, res)
    assert good.is_established and not refused.is_established
    assert seen[0] == (RES, INI)
    assert res.stats["dropped_no_config"] == 1


def send_sa_inits(res, count, config, peer_ip=lambda n: "192.0.2.1"):
    """Start ``count`` handshakes with ``config`` against ``res``; deliver only their
    IKE_SA_INIT."""
    ini = IkeEndpoint()
    for n in range(count):
        ini.initiate(config, RES, local=(peer_ip(n), 500), now=0.0)
    for data, src, dst in ini.datagrams_to_send(now=0.0):
        res.receive_datagram(data, src, local=dst, now=0.0)
    return ini


def test_half_open_sas_are_capped(initiator_config, responder_config):
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(max_half_open=2))
    send_sa_inits(res, 3, initiator_config())
    assert res.half_open == 2 and len(res) == 2
    assert res.stats["dropped_half_open_limit"] == 1


def test_half_open_sas_are_capped_per_peer_address(initiator_config, responder_config):
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(max_half_open_per_peer=1))
    send_sa_inits(res, 4, initiator_config(), peer_ip=lambda n: f"192.0.2.{10 + n // 2}")
    assert res.half_open == 2
    assert res.stats["dropped_peer_limit"] == 2


def test_cookies_are_demanded_once_the_threshold_of_half_open_sas_is_reached(
    initiator_config, responder_config
):
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(cookie_threshold=1))
    send_sa_inits(res, 1, initiator_config())
    assert res.half_open == 1
    ini = IkeEndpoint()
    late = ini.initiate(initiator_config(), RES, local=("192.0.2.20", 500), now=0.0)
    data, src, dst = first_sa_init(ini)
    res.receive_datagram(data, src, local=dst, now=0.0)
    (reply, _, _) = res.datagrams_to_send(now=0.0)[-1]
    assert decode_message(reply).notifies()[0].notify_type == NotifyType.COOKIE
    assert res.half_open == 1
    ini.receive_datagram(reply, RES, local=("192.0.2.20", 500), now=0.0)
    pump(ini, res)
    assert late.is_established


def test_half_open_sas_time_out_and_closed_sas_are_forgotten(initiator_config, responder_config):
    limits = EndpointLimits(closed_linger=10.0)
    res = IkeEndpoint(responder_config(half_open_timeout=30.0), limits=limits)
    send_sa_inits(res, 1, initiator_config())
    res.datagrams_to_send(now=0.0)
    assert res.get_timer() == 30.0
    res.handle_timer(now=30.0)
    (sa,) = res
    assert sa.state == IkeSaState.FAILED and res.half_open == 0
    assert res.get_timer() == 40.0
    res.handle_timer(now=40.0)
    assert len(res) == 0 and res.get_timer() is None
    assert res.stats["sas_forgotten"] == 1


def test_a_lost_ike_sa_init_is_retransmitted_on_the_endpoint_timer(initiator_config):
    ini = IkeEndpoint()
    config = initiator_config(retransmit_timeout=2.0)
    ini.initiate(config, RES, local=INI, now=0.0)
    first = first_sa_init(ini)
    assert ini.get_timer() == 2.0
    ini.handle_timer(now=1.9)
    assert ini.datagrams_to_send(now=1.9) == []
    ini.handle_timer(now=2.0)
    assert ini.datagrams_to_send(now=2.0) == [first]
    assert ini.get_timer() == 2.0 + 2.0 * 1.8


def test_lost_ike_auth_response_is_answered_again_from_the_cache(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sa = ini.initiate(initiator_config(retransmit_timeout=1.0), RES, local=INI, now=0.0)
    auth_responses = []

    def lose_first_auth_response(data):
        hdr = decode_header(data)
        if hdr.exchange_type == ExchangeType.IKE_AUTH and hdr.is_response:
            auth_responses.append(data)
            return [] if len(auth_responses) == 1 else [data]
        return [data]

    pump(ini, res, deliver=lose_first_auth_response)
    assert not sa.is_established
    ini.handle_timer(now=1.0)
    pump(ini, res, now=1.0, deliver=lose_first_auth_response)
    assert sa.is_established
    assert auth_responses[0] == auth_responses[1]


def test_delete_through_the_endpoint_and_both_sides_forget_the_sa(
    initiator_config, responder_config
):
    limits = EndpointLimits(closed_linger=5.0)
    ini = IkeEndpoint(limits=limits)
    res = IkeEndpoint(responder_config(), limits=limits)
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    pump(ini, res)
    events(ini)
    ini.delete(sa, now=1.0)
    pump(ini, res, now=1.0)
    assert sa.state == IkeSaState.DELETED
    assert any(isinstance(e, IkeSaDeleted) and e.by_peer for _, e in events(res))
    ini.handle_timer(now=6.0)
    res.handle_timer(now=6.0)
    assert len(ini) == 0 and len(res) == 0


def test_after_nat_t_floating_datagrams_leave_from_the_nat_t_port(
    initiator_config, responder_config
):
    ini = IkeEndpoint()
    res = IkeEndpoint(responder_config(force_nat_t=True))
    sa = ini.initiate(initiator_config(force_nat_t=True), RES, local=INI, now=0.0)
    carried = pump(ini, res)
    assert sa.is_established
    ports = [(local[1], remote[1]) for _, local, remote in carried]
    assert ports[:2] == [(500, 500), (500, 500)]
    assert set(ports[2:]) == {(4500, 4500)}
    assert all(data[:4] == b"\x00" * 4 for data, _, _ in carried[2:])
    (responder,) = res
    assert responder.local == ("192.0.2.2", 4500)


def test_hybrid_handshake_with_fragments_through_endpoints(initiator_config, responder_config):
    ini = IkeEndpoint()
    res = IkeEndpoint(responder_config(HYBRID))
    sa = ini.initiate(initiator_config(HYBRID), RES, local=INI, now=0.0)
    carried = pump(ini, res)
    assert sa.is_established
    sent = [e for _, e in events(ini) if isinstance(e, MessageSent)]
    assert [e.exchange_type for e in sent] == [
        ExchangeType.IKE_SA_INIT,
        ExchangeType.IKE_INTERMEDIATE,
        ExchangeType.IKE_AUTH,
    ]
    assert sent[1].fragments == 2
    assert len(carried) == 7


def test_established_responder_sas_do_not_keep_the_half_open_index(
    initiator_config, responder_config
):
    res = IkeEndpoint(responder_config())
    ini = IkeEndpoint()
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    request = first_sa_init(ini)
    res.receive_datagram(request[0], request[1], local=request[2], now=0.0)
    for data, local, remote in res.datagrams_to_send(now=0.0):
        ini.receive_datagram(data, local, local=remote, now=0.0)
    pump(ini, res)
    assert sa.is_established
    assert res.half_open == 0
    # A stray copy (or a replay) of the old IKE_SA_INIT after IKE_AUTH gets the cached
    # response again and opens no new half-open SA.
    (answer,) = [d for d, _, _ in ini_answers(res, request, now=1.0)]
    assert decode_header(answer).spi_r == sa.spi_r
    assert len(res) == 1 and res.half_open == 0
    assert res.stats["replays_answered"] == 1 and res.stats["responder_sas_created"] == 1


def ini_answers(res, request, *, now):
    res.receive_datagram(request[0], request[1], local=request[2], now=now)
    return res.datagrams_to_send(now=now)


def test_an_endpoint_refuses_to_delete_a_foreign_sa(initiator_config):
    a, b = IkeEndpoint(), IkeEndpoint()
    sa = a.initiate(initiator_config(), RES, local=INI, now=0.0)
    with pytest.raises(LocalProtocolError):
        b.delete(sa, now=0.0)


def test_a_cookie_threshold_of_zero_demands_a_cookie_from_every_new_peer(
    initiator_config, responder_config
):
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(cookie_threshold=0))
    ini = send_sa_inits(res, 3, initiator_config())
    replies = res.datagrams_to_send(now=0.0)
    assert len(replies) == 3 and len(res) == 0
    for data, _, _ in replies:
        assert decode_message(data).notifies()[0].notify_type == NotifyType.COOKIE
    for data, local, remote in replies:
        ini.receive_datagram(data, local, local=remote, now=0.0)
    pump(ini, res)
    assert len(res) == 3 and all(sa.is_established for sa in res)


def test_notify_payloads_in_stateless_replies_are_unprotected(initiator_config, responder_config):
    res = IkeEndpoint(responder_config(require_cookie=True))
    send_sa_inits(res, 1, initiator_config())
    (reply, _, _) = res.datagrams_to_send(now=0.0)[0]
    message = decode_message(reply)
    assert message.header.spi_r == b"\x00" * 8
    assert isinstance(message.payloads[0], NotifyPayload)


def test_the_responder_derives_its_ike_sa_init_keys_after_the_response_is_queued(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sa_i = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    (response,) = res.datagrams_to_send(now=0.0)
    sa_r = res.find(decode_header(response[0]).spi_r)
    assert sa_r is not None and sa_r.gen.crypto is None  # no SKEYSEED yet
    kinds = [type(e).__name__ for _, e in events(res)]  # reading the events derives them
    assert kinds[-2:] == ["KeyExchangeCompleted", "IkeKeysDerived"]
    assert sa_r.gen.crypto is not None
    ini.receive_datagram(response[0], remote, local=local, now=0.0)
    assert sa_i.gen.crypto is not None and sa_i.gen.crypto.keys == sa_r.gen.crypto.keys
    pump(ini, res)
    assert sa_i.is_established and sa_r.is_established


def test_a_responder_that_is_not_asked_for_events_derives_its_keys_on_the_next_datagram(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sa_i = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    for _ in range(8):  # no next_event() on either side
        moved = False
        for src, dst in ((ini, res), (res, ini)):
            for data, local, remote in src.datagrams_to_send(now=0.0):
                dst.receive_datagram(data, local, local=remote, now=0.0)
                moved = True
        if not moved:
            break
    assert sa_i.is_established and res.find(sa_i.spi_r).is_established


def test_prepared_responder_key_pairs_are_fresh_for_every_ike_sa(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    assert len(res.prepared_keys) == 0
    publics = []
    for _ in range(3):
        sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
        data, local, remote = first_sa_init(ini)
        res.receive_datagram(data, local, local=remote, now=0.0)
        (response,) = res.datagrams_to_send(now=0.0)
        events(res)  # after the response: the next key pair is made
        assert len(res.prepared_keys) == 1
        ini.receive_datagram(response[0], remote, local=local, now=0.0)
        pump(ini, res)
        assert sa.is_established
        ke = next(p for p in decode_message(response[0]).payloads if p.payload_type == 34)
        publics.append(ke.data)
    assert len(set(publics)) == 3  # a prepared key pair is used once


def test_a_secret_that_fails_after_the_response_left_fails_the_sa_without_raising(
    initiator_config, responder_config, monkeypatch
):
    # respond_later checks the KE data before the answer, so its finish step cannot
    # fail for real; if it ever did, the SA must fail quietly, not the driver.
    from pqike.crypto.kex import XdhExchange
    from pqike.errors import InvalidSyntax

    def broken(self, peer_data):
        data, _ = original(self, peer_data)

        def finish():
            raise InvalidSyntax("all-zero shared secret after all")

        return data, finish

    original = XdhExchange.respond_later
    monkeypatch.setattr(XdhExchange, "respond_later", broken)
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    assert len(res.datagrams_to_send(now=0.0)) == 1  # the answer left
    failed = [e for _, e in events(res) if isinstance(e, IkeSaFailed)]
    assert len(failed) == 1 and "all-zero" in failed[0].reason and failed[0].round == 0
    assert res.half_open == 0 and all(sa.is_closed for sa in res)


def _to_intermediate_request(ini, res, initiator_config, responder_config, proposal=HYBRID):
    """Run IKE_SA_INIT (events read) and return the two SAs and the initiator's
    IKE_INTERMEDIATE request datagrams, not yet delivered."""
    sa_i = ini.initiate(initiator_config(proposal), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    res.receive_datagram(data, local, local=remote, now=0.0)
    (response,) = res.datagrams_to_send(now=0.0)
    events(res)
    sa_r = res.find(decode_header(response[0]).spi_r)
    ini.receive_datagram(response[0], remote, local=local, now=0.0)
    requests = ini.datagrams_to_send(now=0.0)
    events(ini)
    return sa_i, sa_r, requests


def test_the_responder_updates_its_keys_after_its_intermediate_response_is_queued(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(HYBRID))
    sa_i, sa_r, requests = _to_intermediate_request(ini, res, initiator_config, responder_config)
    before = sa_r.gen.crypto.keys
    for data, local, remote in requests:
        res.receive_datagram(data, local, local=remote, now=0.0)
    answer = res.datagrams_to_send(now=0.0)
    assert answer  # the KEr answer is queued with the old keys, nothing derived yet
    assert sa_r.gen.crypto.keys is before and sa_r.hs.epoch == 0
    assert sa_r.hs.int_auth_i == b"" and sa_r.hs.int_auth_r == b""
    kinds = [type(e).__name__ for _, e in events(res)]  # reading the events runs the rest
    assert kinds[-5:] == [
        "MessageSent",
        "IntAuthComputed",  # the request's, then the response's, both with the old SK_p
        "IntAuthComputed",
        "KeyExchangeCompleted",
        "IkeKeysDerived",
    ]
    assert sa_r.gen.crypto.keys != before and sa_r.hs.epoch == 1
    for data, local, remote in answer:
        ini.receive_datagram(data, remote, local=local, now=0.0)
    # Both sides chained the same IntAuth and moved to the same keys.
    assert (sa_i.hs.int_auth_i, sa_i.hs.int_auth_r) == (sa_r.hs.int_auth_i, sa_r.hs.int_auth_r)
    assert sa_i.gen.crypto.keys == sa_r.gen.crypto.keys
    pump(ini, res)
    assert sa_i.is_established and sa_r.is_established


@pytest.mark.parametrize("ppk", [False, True], ids=["addke", "addke+ppk9867"])
def test_an_intermediate_responder_not_asked_for_events_has_its_keys_for_the_next_request(
    ppk, initiator_config, responder_config
):
    # IkeSa alone, no endpoint, no next_event on either side: the deferred IntAuth and
    # key update (and PPK mix) run when the IKE_AUTH request arrives, before it is opened.
    from pqike.handshake import ppk_options
    from pqike.ike.sa import IkeSa

    options = ppk_options("psk+ppk9867") if ppk else {}
    sa_i = IkeSa(initiator_config(HYBRID, **options), is_initiator=True, local=INI, remote=RES)
    sa_r = IkeSa(responder_config(HYBRID, **options), is_initiator=False, local=RES, remote=INI)
    sa_i.initiate(now=0.0)
    carry_between_sas(sa_i, sa_r)
    assert sa_i.is_established and sa_r.is_established
    assert sa_i.gen.crypto.keys == sa_r.gen.crypto.keys


def test_a_timer_call_runs_the_deferred_intermediate_key_update(initiator_config, responder_config):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(HYBRID))
    _, sa_r, requests = _to_intermediate_request(ini, res, initiator_config, responder_config)
    for data, local, remote in requests:
        sa_r.receive_datagram(data, local, local=remote, now=0.0)  # the SA, no endpoint
    sa_r.datagrams_to_send(now=0.0)
    assert sa_r.has_deferred and sa_r.hs.epoch == 0
    sa_r.handle_timer(now=0.0)
    assert not sa_r.has_deferred and sa_r.hs.epoch == 1


def test_a_retransmitted_intermediate_request_gets_the_same_answer_and_one_key_update(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(HYBRID))
    sa_i, sa_r, requests = _to_intermediate_request(ini, res, initiator_config, responder_config)
    for data, local, remote in requests:
        res.receive_datagram(data, local, local=remote, now=0.0)
    answer = res.datagrams_to_send(now=0.0)
    for data, local, remote in requests:  # again, before anyone read an event
        res.receive_datagram(data, local, local=remote, now=0.1)
    again = res.datagrams_to_send(now=0.1)
    assert [d for d, _, _ in again] == [d for d, _, _ in answer]
    assert sa_r.hs.epoch == 1 and sa_r.stats["retransmitted_requests"] >= 1
    updates = [e for _, e in events(res) if type(e).__name__ == "IkeKeysDerived"]
    assert len(updates) == 1
    for data, local, remote in answer:
        ini.receive_datagram(data, remote, local=local, now=0.1)
    pump(ini, res, now=0.1)
    assert sa_i.is_established and sa_r.is_established


def test_a_bad_ml_kem_key_is_still_answered_invalid_syntax_before_anything_deferred(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(HYBRID))
    config = initiator_config(HYBRID, impairments=frozenset({"bad-mlkem-key"}))
    sa_i = ini.initiate(config, RES, local=INI, now=0.0)
    pump(ini, res)
    failed_i = [e for _, e in events(ini) if isinstance(e, IkeSaFailed)]
    failed_r = [e for _, e in events(res) if isinstance(e, IkeSaFailed)]
    assert not sa_i.is_established
    assert len(failed_r) == 1 and failed_r[0].round == 1
    assert failed_r[0].notify == NotifyType.INVALID_SYNTAX
    assert len(failed_i) == 1 and failed_i[0].notify == NotifyType.INVALID_SYNTAX


def test_the_initiator_makes_its_round_key_pair_while_it_waits_and_uses_it_once(
    initiator_config, responder_config
):
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config(HYBRID))
    sa_i = ini.initiate(initiator_config(HYBRID), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    assert sa_i.has_deferred and sa_i.hs.next_kex is None  # after the request left
    events(ini)
    prepared = sa_i.hs.next_kex
    assert prepared is not None and prepared.method == 36  # ML-KEM-768 (IANA 36)
    res.receive_datagram(data, local, local=remote, now=0.0)
    (response,) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(response[0], remote, local=local, now=0.0)
    assert sa_i.hs.rounds.kex is prepared and sa_i.hs.next_kex is None
    pump(ini, res)
    assert sa_i.is_established


def test_a_prepared_round_key_pair_of_another_method_is_not_used(
    initiator_config, responder_config
):
    # We prefer ML-KEM-768 for round 1; the responder takes only ML-KEM-1024.
    offered = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_mlkem1024"
    ini, res = (
        IkeEndpoint(),
        IkeEndpoint(responder_config("aes256gcm16-prfsha384-x25519-ke1_mlkem1024")),
    )
    sa_i = ini.initiate(initiator_config(offered), RES, local=INI, now=0.0)
    data, local, remote = first_sa_init(ini)
    events(ini)
    assert sa_i.hs.next_kex is not None and sa_i.hs.next_kex.method == 36
    res.receive_datagram(data, local, local=remote, now=0.0)
    (response,) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(response[0], remote, local=local, now=0.0)
    assert sa_i.hs.rounds.kex is not None and sa_i.hs.rounds.kex.method == 37  # ML-KEM-1024
    pump(ini, res)
    assert sa_i.is_established


def test_the_responder_installs_the_first_child_sa_before_its_ike_auth_answer_is_queued(
    initiator_config, responder_config
):
    # Not deferred like the key work: once the answer is on the wire the initiator may use
    # the Child SA at once (charon, too, installs it before it sends IKE_AUTH's answer).
    ini, res = IkeEndpoint(), IkeEndpoint(responder_config())
    sa_i = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    sa_r = None
    answer = []
    for _ in range(8):  # until the responder has queued its IKE_AUTH answer
        for data, local, remote in ini.datagrams_to_send(now=0.0):
            res.receive_datagram(data, local, local=remote, now=0.0)
        answer = res.datagrams_to_send(now=0.0)
        sa_r = sa_r or res.find(decode_header(answer[0][0]).spi_r)  # IKE_SA_INIT: port 500
        if sa_r.is_established:
            break
        events(res)
        for data, local, remote in answer:
            ini.receive_datagram(data, remote, local=local, now=0.0)
    assert sa_r is not None and sa_r.is_established
    assert len(sa_r.children) == 1 and sa_r.peer_id is not None  # no event read yet
    kinds = [type(e).__name__ for _, e in events(res)]
    assert kinds.index("IkeSaEstablished") < kinds.index("ChildSaEstablished")
    for data, local, remote in answer:
        ini.receive_datagram(data, remote, local=local, now=0.0)
    assert sa_i.is_established
    (child_i,) = sa_i.children.values()
    (child_r,) = sa_r.children.values()
    assert (child_i.spi_in, child_i.spi_out) == (child_r.spi_out, child_r.spi_in)


@pytest.mark.parametrize("command", ["rekey_child", "delete", "rekey"])
def test_a_command_right_after_ike_auth_finds_the_responder_complete(
    command, initiator_config, responder_config
):
    # IkeSa alone, no event read: whatever work the handshake left for after its last
    # message is done before the command (IkeSa.defer), so the command finds it complete.
    from pqike.ike.sa import IkeSa

    sa_i = IkeSa(initiator_config(), is_initiator=True, local=INI, remote=RES)
    sa_r = IkeSa(responder_config(), is_initiator=False, local=RES, remote=INI)
    sa_i.initiate(now=0.0)
    carry_between_sas(sa_i, sa_r, now=1.0)
    assert sa_r.is_established
    getattr(sa_r, command)(now=1.0)
    assert not sa_r.has_deferred and len(sa_r.children) == 1
    carry_between_sas(sa_i, sa_r, now=1.0)
    if command == "delete":
        assert sa_i.is_closed and sa_r.is_closed
    else:
        assert sa_i.is_established and sa_r.is_established
        assert sa_i.stats.get("dropped", 0) == 0 and sa_r.stats.get("dropped", 0) == 0
