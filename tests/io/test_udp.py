"""Two pqike peers over real UDP sockets on loopback (IPv4 and IPv6, free high ports).

Every test runs its own event loop; the peers are ``UdpEndpoint``s around
``IkeEndpoint``s, exactly what ``pqike respond`` / ``pqike initiate`` run.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from pqike.constants import ExchangeType
from pqike.ike.endpoint import EndpointLimits, IkeEndpoint
from pqike.ike.events import IkeSaDeleted, IkeSaEstablished, MessageSent
from pqike.io.udp import UdpEndpoint

CLASSICAL = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


@pytest.fixture(scope="module")
def initiator_config(initiator_config):
    """The shared one (tests/conftest.py) with 1280-byte fragments and a short timer."""

    def config(proposal, **kw):
        kw.setdefault("retransmit_timeout", 0.5)
        return initiator_config(proposal, fragment_size=1280, **kw)

    return config


@pytest.fixture(scope="module")
def responder_config(responder_config):
    """The shared one (tests/conftest.py) with 1280-byte fragments."""

    def config(proposal, **kw):
        return responder_config(proposal, fragment_size=1280, **kw)

    return config


def keys_of(watch_or_events):
    events = getattr(watch_or_events, "events", watch_or_events)
    return next(e.keys for e in events if isinstance(e, IkeSaEstablished))


async def responder(host, config, *, limits=None):
    return await UdpEndpoint.open(IkeEndpoint(config, limits=limits), [host], port=0, nat_t_port=0)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("proposal", [CLASSICAL, HYBRID])
def test_initiator_and_responder_establish_over_udp(
    host, proposal, initiator_config, responder_config
):
    async def main():
        res = await responder(host, responder_config(proposal))
        res_events = []
        res.on_event = lambda sa, e: res_events.append(e)
        ini = await UdpEndpoint.open(IkeEndpoint(), [host], port=0, nat_t_port=0)
        try:
            sa = ini.initiate(initiator_config(proposal), (host, res.port))
            watch = ini.watch(sa)
            assert await watch.wait(10)
        finally:
            await ini.close()
            await res.close()
        return sa, watch, res_events, ini.stats, res.stats

    sa, watch, res_events, ini_stats, res_stats = asyncio.run(main())
    assert sa.is_established and watch.child is not None
    assert keys_of(watch) == keys_of(res_events)
    sent = [e for e in watch.events if isinstance(e, MessageSent)]
    expected = [ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH]
    if proposal == HYBRID:
        expected.insert(1, ExchangeType.IKE_INTERMEDIATE)
        # 1249 bytes of IKE_INTERMEDIATE do not fit 1280 with the marker: 2 fragments.
        assert sent[1].fragments == 2
    assert [e.exchange_type for e in sent] == expected
    assert ini_stats["datagrams_sent"] == res_stats["datagrams_received"]
    assert res_stats["datagrams_sent"] == ini_stats["datagrams_received"]


def test_both_peers_initiate_to_each_other_at_once(initiator_config, responder_config):
    async def main():
        a = await UdpEndpoint.open(
            IkeEndpoint(responder_config(HYBRID)), ["127.0.0.1"], port=0, nat_t_port=0
        )
        b = await UdpEndpoint.open(
            IkeEndpoint(responder_config(HYBRID)), ["127.0.0.1"], port=0, nat_t_port=0
        )
        try:
            ab = a.initiate(initiator_config(HYBRID), ("127.0.0.1", b.port))
            ba = b.initiate(initiator_config(HYBRID), ("127.0.0.1", a.port))
            assert await a.watch(ab).wait(10) and await b.watch(ba).wait(10)
        finally:
            await a.close()
            await b.close()
        return a, b, ab, ba

    a, b, ab, ba = asyncio.run(main())
    assert ab.is_established and ba.is_established
    assert len(a.endpoint) == 2 and len(b.endpoint) == 2
    assert b.endpoint.find(ab.spi_r).spi_i == ab.spi_i
    assert a.endpoint.find(ba.spi_r).spi_i == ba.spi_i


def test_fifty_concurrent_ike_sas_against_one_responder(initiator_config, responder_config):
    # Fifty at once from one address is what the per-peer defaults (strongSwan's
    # block_threshold 5) refuse: this responder trusts its one busy peer.
    trusting = EndpointLimits(max_half_open_per_peer=None, cookie_threshold_per_peer=None)

    async def main():
        res = await responder("127.0.0.1", responder_config(HYBRID), limits=trusting)
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
        try:
            sas = [
                ini.initiate(initiator_config(HYBRID), ("127.0.0.1", res.port)) for _ in range(50)
            ]
            done = await asyncio.gather(*(ini.watch(sa).wait(20) for sa in sas))
        finally:
            await ini.close()
            await res.close()
        return res, sas, done

    res, sas, done = asyncio.run(main())
    assert all(done)
    assert all(sa.is_established for sa in sas)
    assert len(res.endpoint) == 50 and res.endpoint.half_open == 0
    assert {sa.spi_r for sa in sas} == {sa.spi_r for sa in res.endpoint}


class LossyRelay(asyncio.DatagramProtocol):
    """Forwards between one client and a server, dropping the datagrams numbered in ``drop``."""

    def __init__(self, server, drop):
        self.server = server
        self.drop = set(drop)
        self.count = 0
        self.client = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        index = self.count
        self.count += 1
        if addr[:2] != self.server:
            self.client = addr[:2]
            target = self.server
        else:
            target = self.client
        if index not in self.drop and target is not None:
            self.transport.sendto(data, target)


@pytest.mark.parametrize("victim", [0, 1, 2, 3])
def test_a_lost_datagram_is_retransmitted_and_the_handshake_completes(
    victim, initiator_config, responder_config
):
    """Datagrams 0..3 are IKE_SA_INIT request/response and IKE_AUTH request/response."""

    async def main():
        res = await responder("127.0.0.1", responder_config(CLASSICAL))
        loop = asyncio.get_running_loop()
        relay_transport, relay = await loop.create_datagram_endpoint(
            lambda: LossyRelay(("127.0.0.1", res.port), {victim}), local_addr=("127.0.0.1", 0)
        )
        relay_port = relay_transport.get_extra_info("sockname")[1]
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
        try:
            sa = ini.initiate(
                initiator_config(CLASSICAL, retransmit_timeout=0.2), ("127.0.0.1", relay_port)
            )
            ok = await ini.watch(sa).wait(10)
        finally:
            relay_transport.close()
            await ini.close()
            await res.close()
        return ok, sa, ini.watch(sa), relay.count, res.endpoint.find(sa.spi_r)

    ok, sa, watch, relayed, res_sa = asyncio.run(main())
    assert ok and sa.is_established
    assert sa.stats["retransmissions"] == 1
    assert [e.retransmission for e in watch.events if isinstance(e, MessageSent)].count(True) == 1
    # A lost response costs one more datagram: the responder resends it from its cache.
    lost_response = victim % 2 == 1
    assert relayed == (6 if lost_response else 5)
    assert res_sa.stats.get("retransmitted_requests", 0) == int(lost_response)


def test_invalid_ke_payload_retry_works_on_custom_ports(initiator_config, responder_config):
    async def main():
        res = await responder("127.0.0.1", responder_config("aes256gcm16-prfsha384-ecp256"))
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
        try:
            config = initiator_config(
                "aes256gcm16-prfsha384-x25519-ecp256", retransmit_timeout=0.2, retransmit_tries=1
            )
            sa = ini.initiate(config, ("127.0.0.1", res.port))
            await ini.watch(sa).wait(5)
        finally:
            await ini.close()
            await res.close()
        return sa

    assert asyncio.run(main()).is_established


def test_close_with_delete_tells_the_peer(initiator_config, responder_config):
    async def main():
        res = await responder("127.0.0.1", responder_config(CLASSICAL))
        seen = []
        res.on_event = lambda sa, e: seen.append(e)
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
        sa = ini.initiate(initiator_config(CLASSICAL), ("127.0.0.1", res.port))
        assert await ini.watch(sa).wait(10)
        await ini.close(delete=True, grace=2.0)
        await res.close()
        return sa, seen

    sa, seen = asyncio.run(main())
    assert sa.is_closed
    assert any(isinstance(e, IkeSaDeleted) and e.by_peer for e in seen)


def test_an_unanswered_initiator_times_out_through_the_loop_timer(initiator_config):
    async def main():
        # A bound socket that never answers: every request is lost.
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
        try:
            config = initiator_config(
                CLASSICAL, retransmit_timeout=0.05, retransmit_base=1.0, retransmit_tries=2
            )
            sa = ini.initiate(config, silent.getsockname())
            ok = await ini.watch(sa).wait(5)
        finally:
            await ini.close()
            silent.close()
        return ok, sa, ini.watch(sa)

    ok, sa, watch = asyncio.run(main())
    assert ok and sa.is_closed
    assert "after 2 retransmissions" in watch.failure.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="ports 500 and 4500 need root")
def test_on_ports_500_the_sas_float_to_4500_and_send_from_that_socket(
    initiator_config, responder_config
):
    """RFC 7296 2.23 with force_nat_t: IKE_AUTH leaves from the NAT-T socket."""

    async def main():
        seen = []
        res = await UdpEndpoint.open(
            IkeEndpoint(responder_config(CLASSICAL, force_nat_t=True)),
            ["127.0.0.2"],
            on_datagram=lambda d, data, src, dst: seen.append((d, src[1], dst[1])),
        )
        ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"])
        try:
            sa = ini.initiate(initiator_config(CLASSICAL, force_nat_t=True), ("127.0.0.2", 500))
            ok = await ini.watch(sa).wait(10)
        finally:
            await ini.close()
            await res.close()
        return ok, sa, seen

    ok, sa, seen = asyncio.run(main())
    assert ok and sa.local == ("127.0.0.1", 4500) and sa.remote == ("127.0.0.2", 4500)
    assert seen == [
        ("received", 500, 500),
        ("sent", 500, 500),
        ("received", 4500, 4500),
        ("sent", 4500, 4500),
    ]


def test_peers_on_wildcard_sockets_use_their_real_addresses(initiator_config, responder_config):
    """NAT detection hashes our address: 0.0.0.0 would look like a NAT to both sides."""

    async def main():
        res = await responder("0.0.0.0", responder_config(CLASSICAL))
        seen = []
        res.on_event = lambda sa, e: seen.append((sa, e))
        ini = await UdpEndpoint.open(IkeEndpoint(), ["0.0.0.0"], port=0, nat_t_port=0)
        try:
            sa = ini.initiate(initiator_config(CLASSICAL), ("127.0.0.1", res.port))
            assert await ini.watch(sa).wait(10)
        finally:
            await ini.close()
            await res.close()
        return sa, ini.watch(sa).established, ini.port, res.port, seen

    sa, up, port, res_port, seen = asyncio.run(main())
    assert sa.local == ("127.0.0.1", port)
    assert up is not None and not up.nat_local and not up.nat_remote
    ((res_sa, res_up),) = [(s, e) for s, e in seen if isinstance(e, IkeSaEstablished)]
    assert res_sa.local == ("127.0.0.1", res_port)
    assert not res_up.nat_local and not res_up.nat_remote
