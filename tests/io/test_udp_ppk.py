"""RFC 9867 (the PPK agreed in IKE_INTERMEDIATE) between two pqike endpoints over real
UDP on loopback, through relays that lose datagrams: the PPK exchange is retransmitted
(RFC 7296 2.1) and answered from the responder's cache, and both sides still mix the
same PPK into the same keys."""

from __future__ import annotations

import asyncio

import pytest

from pqike.ike.endpoint import IkeEndpoint
from pqike.ike.events import IkeKeysDerived, IkeSaEstablished
from pqike.io.udp import UdpEndpoint
from pqike.lab.link import LinkProfile
from pqike.lab.relay import ImpairmentRelay

CLASSICAL = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
PPK = {
    "ppk": bytes(range(32)),
    "ppk_id": b"ppk-1",
    "ppk_mode": "rfc9867",
    "ppk_required": True,
    "fragment_size": 1280,
}


class DroppingRelay(asyncio.DatagramProtocol):
    """Forwards between one client and a server, dropping the datagrams numbered in ``drop``
    (counted over both directions, in the order they reach the relay)."""

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
            self.client, target = addr[:2], self.server
        else:
            target = self.client
        if index not in self.drop and target is not None:
            self.transport.sendto(data, target)


async def _handshake(proposal, initiator_config, responder_config, make_relay):
    """One handshake through the relay ``make_relay(server)`` builds; returns the
    initiator's SA and events, the responder's events and the relay."""
    res_events = []
    res = await UdpEndpoint.open(
        IkeEndpoint(responder_config(proposal, **PPK)),
        ["127.0.0.1"],
        port=0,
        nat_t_port=0,
        on_event=lambda sa, e: res_events.append(e),
    )
    relay, close_relay, address = await make_relay(("127.0.0.1", res.port))
    ini = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
    try:
        sa = ini.initiate(
            initiator_config(proposal, retransmit_timeout=0.2, **PPK), ("127.0.0.1", address[1])
        )
        await ini.watch(sa).wait(20)
        await asyncio.sleep(0.05)  # let the responder process the last request
    finally:
        close_relay()
        await ini.close()
        await res.close()
    return sa, ini.watch(sa).events, res_events, relay


def _agreed_ppk(ini_events, res_events):
    keys = [
        next(e.keys for e in evs if isinstance(e, IkeSaEstablished))
        for evs in (ini_events, res_events)
    ]
    assert keys[0] == keys[1]
    ppk_epochs = [
        [e for e in evs if isinstance(e, IkeKeysDerived) and e.ppk_id]
        for evs in (ini_events, res_events)
    ]
    assert [[e.ppk_id for e in p] for p in ppk_epochs] == [[b"ppk-1"], [b"ppk-1"]]
    assert ppk_epochs[0][0].keys == keys[0]


@pytest.mark.parametrize("proposal", [CLASSICAL, HYBRID])
def test_the_lost_ppk_request_and_response_are_retransmitted(
    proposal, initiator_config, responder_config
):
    # Datagrams as they reach the relay: 0/1 IKE_SA_INIT; then the first IKE_INTERMEDIATE
    # request (the PPK's, with KEi(1) for HYBRID; 2 fragments there) is lost, its
    # retransmission gets through and its response is lost too; the next retransmission
    # is answered from the responder's cache.
    fragments = 2 if proposal == HYBRID else 1
    first_request = set(range(2, 2 + fragments))
    response = 2 + 2 * fragments
    drop = first_request | {response}

    async def make_relay(server):
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            lambda: DroppingRelay(server, drop), local_addr=("127.0.0.1", 0)
        )
        return relay, transport.close, transport.get_extra_info("sockname")

    sa, ini_events, res_events, relay = asyncio.run(
        _handshake(proposal, initiator_config, responder_config, make_relay)
    )
    assert sa.is_established
    _agreed_ppk(ini_events, res_events)
    assert sa.stats["retransmissions"] == 2
    assert relay.count > response


def test_a_lossy_relay_and_the_ppk_still_agree(initiator_config, responder_config):
    lost = 0
    for seed in (1, 2, 3, 4):

        async def make_relay(server, seed=seed):
            relay = ImpairmentRelay(
                ("127.0.0.1", 0), server, forward=LinkProfile(loss=0.3, delay=0.005), seed=seed
            )
            await relay.start()
            return relay, relay.close, relay.address

        sa, ini_events, res_events, relay = asyncio.run(
            _handshake(HYBRID, initiator_config, responder_config, make_relay)
        )
        assert sa.is_established, seed
        _agreed_ppk(ini_events, res_events)
        lost += relay.stats.forward.lost + relay.stats.backward.lost
    assert lost > 0
