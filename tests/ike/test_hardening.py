"""Issue 10: cookies, protective defaults, replays and the reassembly budget.

Everything here is sans-IO: spoofed peers are just source addresses handed to
``IkeEndpoint.receive_datagram``; time is the ``now`` argument.
"""

from __future__ import annotations

import os
import random

import pytest

from pqike.constants import ExchangeType, NotifyType
from pqike.crypto import auth as ike_auth
from pqike.crypto.protect import encr_key_size, get_cipher
from pqike.errors import InvalidSyntax
from pqike.handshake import make_config
from pqike.ike import IkeSa
from pqike.ike.cookies import COOKIE_LENGTH, CookieJar, scan_sa_init
from pqike.ike.endpoint import EndpointLimits, IkeEndpoint
from pqike.ike.protection import (
    FRAGMENT_OVERHEAD,
    Reassembler,
    ReassemblyBudget,
    ReassemblyLimits,
    protect,
)
from pqike.wire.codec import decode_message, encode_message
from pqike.wire.payloads import IkeHeader, NotifyPayload, VendorIdPayload

PROPOSAL = "aes256gcm16-prfsha384-x25519"
RES = ("192.0.2.2", 500)
INI = ("192.0.2.1", 500)


def initiator_config(**kw):
    return make_config(
        PROPOSAL, local_id="initiator.pqike.example", remote_id="responder.pqike.example", **kw
    )


def responder_config(**kw):
    return make_config(PROPOSAL, local_id="responder.pqike.example", **kw)


def sa_init_request(src=INI):
    """A real IKE_SA_INIT request from a throwaway initiator endpoint."""
    ini = IkeEndpoint()
    sa = ini.initiate(initiator_config(), RES, local=src, now=0.0)
    ((data, _, _),) = ini.datagrams_to_send(now=0.0)
    return ini, sa, data


def with_cookie(request: bytes, cookie: bytes) -> bytes:
    """``request`` with N(COOKIE) put first, as RFC 7296 2.6 wants it."""
    message = decode_message(request)
    h = message.header
    header = IkeHeader(h.spi_i, h.spi_r, 0, h.exchange_type, h.flags, h.message_id)
    return encode_message(header, [NotifyPayload(NotifyType.COOKIE, cookie), *message.payloads])


def pump(a, b, *, now=0.0, rounds=64):
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, local, remote in src.datagrams_to_send(now=now):
                moved = True
                dst.receive_datagram(data, local, local=remote, now=now)
        if not moved:
            return
    raise AssertionError("the endpoints never went quiet")


# ------------------------------------------------------------------ cookies


def test_cookie_jar_round_trip_binds_nonce_address_and_spi():
    jar = CookieJar()
    args = {"nonce_i": b"n" * 32, "ip": "192.0.2.1", "spi_i": b"s" * 8}
    cookie = jar.make(**args, now=5.0)
    assert len(cookie) == COOKIE_LENGTH
    assert jar.verify(cookie, **args, now=6.0)
    for change in ({"nonce_i": b"m" * 32}, {"ip": "192.0.2.9"}, {"spi_i": b"t" * 8}):
        assert not jar.verify(cookie, **{**args, **change}, now=6.0)
    tampered = bytearray(cookie)
    tampered[-1] ^= 1
    assert not jar.verify(bytes(tampered), **args, now=6.0)
    assert not jar.verify(cookie[:-1], **args, now=6.0)
    # Another process (another random secret) cannot check it, nor could it make it.
    assert not CookieJar().verify(cookie, **args, now=6.0)


def test_the_secret_rotates_and_the_previous_one_is_accepted_only_briefly():
    jar = CookieJar(lifetime=120.0, grace=10.0)
    args = {"nonce_i": os.urandom(32), "ip": "2001:db8::1", "spi_i": os.urandom(8)}
    early = jar.make(**args, now=100.0)
    assert jar.verify(early, **args, now=119.0)
    late = jar.make(**args, now=121.0)  # a new period: a new secret and version
    assert late[:4] != early[:4] and late[4:] != early[4:]
    assert jar.verify(early, **args, now=129.9)  # previous secret, within the grace
    assert not jar.verify(early, **args, now=130.0)
    assert jar.verify(late, **args, now=130.0)
    assert not jar.verify(late, **args, now=250.0)  # two periods on: gone
    assert jar.stats["secrets"] == 2


def test_a_fixed_test_key_gives_reproducible_cookies_and_must_be_long():
    args = {"nonce_i": b"n" * 32, "ip": "192.0.2.1", "spi_i": b"s" * 8}
    key = b"a test key, 16+ bytes"
    assert CookieJar(key).make(**args, now=1.0) == CookieJar(key).make(**args, now=2.0)
    assert CookieJar().make(**args, now=1.0) != CookieJar().make(**args, now=1.0)
    with pytest.raises(ValueError, match="cookie_secret"):
        CookieJar(b"short")
    with pytest.raises(Exception, match="cookie_secret"):
        responder_config(cookie_secret=b"short")
    assert responder_config().cookie_secret is None


CONSTANTS = [
    b"pqike-cookie-secret-0",  # the old default
    b"",
    b"\x00" * 16,
    b"\x00" * 32,
    b"secret",
    b"pqike",
]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_a_cookie_forged_with_any_constant_secret_is_refused(constant):
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(cookie_threshold=0))
    _, _, request = sa_init_request()
    message = decode_message(request)
    nonce = next(p for p in message.payloads if type(p).__name__ == "NoncePayload").data
    spi_i = message.header.spi_i
    forged = set()
    for version in (0, 1, 2**32 - 1):
        forged.add(ike_auth.cookie(constant, nonce, INI[0], spi_i, version))
        forged.add(ike_auth.cookie(constant, b"", INI[0], spi_i, version))
    for cookie in forged:
        res.receive_datagram(with_cookie(request, cookie), INI, local=RES, now=0.0)
    assert len(res) == 0 and res.half_open == 0
    assert res.stats["cookies_rejected"] == len(forged)
    assert res.stats.get("responder_sas_created", 0) == 0
    replies = res.datagrams_to_send(now=0.0)
    assert len(replies) == len(forged)
    assert all(
        decode_message(d).notifies()[0].notify_type == NotifyType.COOKIE for d, _, _ in replies
    )


def test_the_sa_without_an_endpoint_uses_a_random_secret_too():
    """``require_cookie`` on a standalone responder IkeSa: its own jar, a random secret."""
    _, _, request = sa_init_request()
    cookies = []
    for _ in range(2):
        res = IkeSa(
            make_config(PROPOSAL, local_id="r.example", psk=b"k", require_cookie=True),
            is_initiator=False,
            local=RES,
            remote=INI,
        )
        res.receive_datagram(request, INI, now=0.0)
        ((reply, _),) = res.datagrams_to_send(now=0.0)
        (notify,) = decode_message(reply).notifies()
        assert notify.notify_type == NotifyType.COOKIE
        cookies.append(notify.data)
    assert cookies[0] != cookies[1]


def test_scan_sa_init_finds_cookie_and_nonce_and_rejects_junk():
    _, _, request = sa_init_request()
    cookie, nonce = scan_sa_init(request)
    assert cookie is None and nonce is not None and len(nonce) == 32
    cookie, nonce2 = scan_sa_init(with_cookie(request, b"c" * 36))
    assert cookie == b"c" * 36 and nonce2 == nonce
    assert scan_sa_init(request[:40]) is None
    assert scan_sa_init(b"") is None
    broken = bytearray(request)
    broken[30:32] = b"\xff\xff"  # first payload length runs past the message
    assert scan_sa_init(bytes(broken)) is None


# ------------------------------------------------------------------ floods


def spoofed_flood(res, count, *, now, seed=1):
    """``count`` IKE_SA_INIT requests from spoofed sources that never answer."""
    draws = random.Random(seed)
    _, _, template = sa_init_request()
    for _ in range(count):
        request = bytearray(template)
        request[0:8] = draws.randbytes(8)  # a new SPIi each time
        src = (f"10.{draws.randrange(256)}.{draws.randrange(256)}.{draws.randrange(1, 255)}", 500)
        res.receive_datagram(bytes(request), src, local=RES, now=now)


def test_a_spoofed_flood_at_default_settings_leaves_legitimate_handshakes_working():
    res = IkeEndpoint(responder_config())  # default EndpointLimits
    limits = res.limits
    legit = IkeEndpoint()
    done = []
    for second in range(10):
        now = float(second)
        spoofed_flood(res, 1000, now=now, seed=second)
        res.datagrams_to_send(now=now)  # the answers go to the spoofed addresses
        sa = legit.initiate(initiator_config(), RES, local=(f"192.0.2.{second + 1}", 500), now=now)
        pump(legit, res, now=now)
        done.append(sa.is_established)
        assert res.half_open <= limits.cookie_threshold
    assert all(done)
    stats = res.stats
    assert stats["cookies_sent"] >= 10_000 - limits.cookie_threshold
    assert stats.get("dropped_half_open_limit", 0) == 0
    assert stats["cookies_accepted"] == 10  # the legitimate initiators came back


def test_one_address_returning_cookies_is_blocked_at_the_per_peer_limit():
    res = IkeEndpoint(responder_config())
    attacker = IkeEndpoint()
    for _ in range(20):
        attacker.initiate(initiator_config(), RES, local=("192.0.2.66", 500), now=0.0)
    # Deliver IKE_SA_INIT and the cookie retries, but never go on to IKE_AUTH.
    for _ in range(3):
        for data, src, dst in attacker.datagrams_to_send(now=0.0):
            if decode_message(data).header.exchange_type == ExchangeType.IKE_SA_INIT:
                res.receive_datagram(data, src, local=dst, now=0.0)
        for data, src, dst in res.datagrams_to_send(now=0.0):
            attacker.receive_datagram(data, src, local=dst, now=0.0)
    assert res.half_open == res.limits.max_half_open_per_peer == 5
    assert res.stats["dropped_peer_limit"] == 15
    assert res.stats["cookies_sent"] >= 15
    # Someone else still gets in.
    legit = IkeEndpoint()
    sa = legit.initiate(initiator_config(), RES, local=INI, now=0.0)
    pump(legit, res)
    assert sa.is_established


def test_cookies_stay_on_for_the_calm_down_delay():
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(cookie_threshold=2))
    spoofed_flood(res, 2, now=0.0)
    assert res.half_open == 2
    res.datagrams_to_send(now=0.0)
    spoofed_flood(res, 1, now=0.0, seed=7)  # over the threshold: a cookie
    assert res.stats["cookies_sent"] == 1
    res.handle_timer(now=31.0)  # the half-open SAs time out
    assert res.half_open == 0
    spoofed_flood(res, 1, now=5.0, seed=8)
    assert res.stats["cookies_sent"] == 2  # within 10 s of the last time over it
    spoofed_flood(res, 1, now=10.5, seed=9)
    assert res.stats["cookies_sent"] == 2 and res.half_open == 1


# ------------------------------------------------------------------ replays


def test_a_replayed_ike_sa_init_is_answered_from_the_cache_not_with_a_new_sa():
    res = IkeEndpoint(responder_config())
    ini, sa, request = sa_init_request()
    res.receive_datagram(request, INI, local=RES, now=0.0)
    (first,) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(first[0], RES, local=INI, now=0.0)
    pump(ini, res)
    assert sa.is_established
    res.handle_timer(now=100.0)
    for now in (50.0, 100.0):  # later, after the SA was up (and even deleted)
        res.receive_datagram(request, INI, local=RES, now=now)
        assert res.datagrams_to_send(now=now) == [first]
    assert res.stats["replays_answered"] == 2 and res.stats["responder_sas_created"] == 1
    # From another address it is not the same request: the per-peer rules apply.
    res.receive_datagram(request, ("192.0.2.77", 500), local=RES, now=100.0)
    assert res.stats["responder_sas_created"] == 2
    # After the replay window the cache has forgotten it.
    res.receive_datagram(request, INI, local=RES, now=100.0 + res.limits.replay_window)
    assert res.stats["replays_answered"] == 2


def test_the_replay_cache_is_bounded():
    res = IkeEndpoint(responder_config(), limits=EndpointLimits(replay_cache_size=3))
    requests = []
    for n in range(5):
        _, _, request = sa_init_request()
        requests.append(request)
        res.receive_datagram(request, (f"192.0.2.{n + 1}", 500), local=RES, now=0.0)
    assert res.replies_cached == 3
    res.datagrams_to_send(now=0.0)


# ------------------------------------------------------------------ reassembly budget


def cipher_and_keys():
    cipher = get_cipher(20, 256, 0)  # AES-GCM-16 with a 256-bit key
    return cipher, os.urandom(encr_key_size(20, 256)), b""


def fragments(cipher, sk_e, sk_a, *, size, mid, spi=b"i" * 8):
    header = IkeHeader(spi, b"r" * 8, 0, ExchangeType.INFORMATIONAL, 0x08, mid)
    payloads = [VendorIdPayload(bytes(min(60_000, size - i))) for i in range(0, size, 60_000)]
    pm = protect(header, payloads, cipher, sk_e, sk_a, fragment_size=1280)
    return [decode_message(m) for m in pm.messages]


def park(reassembler, frags, keys, now, count):
    cipher, sk_e, sk_a = keys
    for f in frags[:count]:
        reassembler.add(f, cipher, sk_e, sk_a, now=now)


def test_the_global_budget_evicts_the_oldest_partial_message_first():
    keys = cipher_and_keys()
    limits = ReassemblyLimits()
    budget = ReassemblyBudget(75_000, per_peer_bytes=None, half_open_bytes=None)
    frags = fragments(*keys, size=40_000, mid=1)
    owners = [Reassembler(limits, budget=budget, peer=f"10.0.0.{n}") for n in range(4)]
    for n, r in enumerate(owners):
        park(r, frags, keys, float(n), 15)  # ~23 KB each, overhead included
    assert budget.used <= 75_000
    assert owners[0].pending_fragments == 0 and owners[0].stats["messages_evicted"] == 1
    assert all(r.pending_fragments == 15 for r in owners[1:])
    assert budget.stats["evicted_total"] == 1
    # A whole message still completes, and gives its memory back.
    cipher, sk_e, sk_a = keys
    whole = None
    for f in frags:
        whole = owners[3].add(f, cipher, sk_e, sk_a, now=4.0) or whole
    assert whole is not None and len(whole.plaintext) > 40_000
    assert owners[3].pending_fragments == 0
    assert budget.used == sum(r._current.cost for r in owners if r._current is not None)


def test_the_per_peer_budget_evicts_that_peers_oldest_message_only():
    keys = cipher_and_keys()
    budget = ReassemblyBudget(10 << 20, per_peer_bytes=30_000, half_open_bytes=None)
    frags = fragments(*keys, size=40_000, mid=1)
    other = Reassembler(ReassemblyLimits(), budget=budget, peer="10.0.0.9")
    park(other, frags, keys, 0.0, 15)
    same = [Reassembler(ReassemblyLimits(), budget=budget, peer="10.0.0.1") for _ in range(2)]
    park(same[0], frags, keys, 1.0, 15)
    park(same[1], frags, keys, 2.0, 15)
    assert same[0].pending_fragments == 0 and same[1].pending_fragments == 15
    assert other.pending_fragments == 15
    assert budget.stats["evicted_peer"] == 1 and budget.peer_bytes("10.0.0.1") <= 30_000
    # One message bigger than the per-peer budget on its own is dropped, not kept.
    with pytest.raises(InvalidSyntax, match="no reassembly memory"):
        park(same[1], fragments(*keys, size=40_000, mid=2), keys, 3.0, 40)
    assert budget.stats["dropped_over_budget"] == 1
    assert budget.peer_bytes("10.0.0.1") == 0


def test_half_open_sas_get_a_smaller_allowance_until_established():
    keys = cipher_and_keys()
    budget = ReassemblyBudget(10 << 20, per_peer_bytes=None, half_open_bytes=20_000)
    r = Reassembler(ReassemblyLimits(), budget=budget, peer="10.0.0.1")
    frags = fragments(*keys, size=40_000, mid=1)
    with pytest.raises(InvalidSyntax, match="before the IKE SA is established"):
        park(r, frags, keys, 0.0, len(frags))
    assert r.pending_fragments == 0 and budget.used == 0
    assert budget.stats["dropped_half_open_allowance"] == 1
    r.established()
    cipher, sk_e, sk_a = keys
    results = [r.add(f, cipher, sk_e, sk_a, now=1.0) for f in fragments(*keys, size=40_000, mid=2)]
    assert results[-1] is not None and budget.used == 0


def test_expired_partials_are_evicted_before_live_ones_and_clear_releases():
    keys = cipher_and_keys()
    budget = ReassemblyBudget(40_000, per_peer_bytes=None, half_open_bytes=None)
    limits = ReassemblyLimits(timeout=5.0)
    frags = fragments(*keys, size=40_000, mid=1)
    stale, live, new = (Reassembler(limits, budget=budget, peer=f"10.0.0.{n}") for n in range(3))
    park(stale, frags, keys, 0.0, 10)
    park(live, frags, keys, 4.0, 10)
    park(new, frags, keys, 6.0, 10)  # stale is past its time-out: it goes first
    assert stale.pending_fragments == 0 and live.pending_fragments == 10
    assert budget.stats["evicted_expired"] == 1 and budget.stats["evicted_total"] == 0
    live.clear()
    assert budget.used == new._current.cost and live.stats["messages_dropped"] == 1


def test_tiny_fragments_are_charged_their_overhead():
    keys = cipher_and_keys()
    budget = ReassemblyBudget(10 << 20, per_peer_bytes=None, half_open_bytes=None)
    r = Reassembler(ReassemblyLimits(), budget=budget, peer="10.0.0.1")
    frags = fragments(*keys, size=4_000, mid=1)
    park(r, frags, keys, 0.0, 2)
    data = sum(len(f.raw) for f in frags[:2])
    assert budget.used >= data + 2 * FRAGMENT_OVERHEAD - 2 * 64


def test_the_endpoint_shares_one_budget_across_its_sas():
    limits = EndpointLimits(reassembly_total=1 << 20, reassembly_half_open=4096)
    res = IkeEndpoint(responder_config(), limits=limits)
    assert res.reassembly_budget.total_bytes == 1 << 20
    assert res.reassembly_budget.half_open_bytes == 4096
    ini = IkeEndpoint()
    sa = ini.initiate(initiator_config(), RES, local=INI, now=0.0)
    pump(ini, res)
    assert sa.is_established


HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def hybrid_pair(limits):
    res = IkeEndpoint(
        make_config(HYBRID, local_id="responder.pqike.example", fragment_size=576), limits=limits
    )
    ini = IkeEndpoint()
    sa = ini.initiate(
        make_config(
            HYBRID,
            local_id="initiator.pqike.example",
            remote_id="responder.pqike.example",
            fragment_size=576,
        ),
        RES,
        local=INI,
        now=0.0,
    )
    return ini, res, sa


def test_the_endpoint_charges_its_sas_partial_messages_to_its_budget():
    ini, res, sa = hybrid_pair(EndpointLimits())
    held = []

    def carry(src, dst, hold_last_fragment):
        for data, local, remote in src.datagrams_to_send(now=0.0):
            hdr = decode_message(data).header
            if hold_last_fragment and hdr.exchange_type == ExchangeType.IKE_INTERMEDIATE:
                held.append((data, local, remote))
                continue
            dst.receive_datagram(data, local, local=remote, now=0.0)

    carry(ini, res, False)  # IKE_SA_INIT
    carry(res, ini, False)
    carry(ini, res, True)  # the fragmented IKE_INTERMEDIATE request: hold it back
    assert len(held) >= 3
    for data, local, remote in held[:-1]:
        res.receive_datagram(data, local, local=remote, now=0.0)
    budget = res.reassembly_budget
    assert budget.partial_messages == 1 and budget.used > 0
    assert budget.peer_bytes(INI[0]) == budget.used
    data, local, remote = held[-1]
    res.receive_datagram(data, local, local=remote, now=0.0)
    assert budget.partial_messages == 0 and budget.used == 0
    pump(ini, res)
    assert sa.is_established


def test_the_endpoint_applies_the_half_open_allowance():
    ini, res, sa = hybrid_pair(EndpointLimits(reassembly_half_open=600))
    pump(ini, res)
    assert not sa.is_established
    assert res.stats["reassembly_dropped_half_open_allowance"] >= 1
    ini, res, sa = hybrid_pair(EndpointLimits(reassembly_half_open=2000))
    pump(ini, res)
    assert sa.is_established
