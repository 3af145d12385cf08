"""RFC 7383 fragmentation of protected messages: sizes, faults and abuse limits."""

from __future__ import annotations

import pytest

from pqike.constants import ExchangeType
from pqike.handshake import run_handshake
from pqike.ike.protection import protect
from pqike.wire.payloads import KePayload, VendorIdPayload

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
SIZES = [(576, False), (1280, False), (1500, False), (1280, True)]


@pytest.mark.parametrize(("size", "ipv6"), SIZES)
def test_every_datagram_fits_the_fragment_size(size, ipv6):
    result = run_handshake(HYBRID, fragment_size=size, ipv6=ipv6)
    assert result.established
    protected = [d for d in result.trace.datagrams if d.exchange != "IKE_SA_INIT"]
    assert protected and all(d.ip_bytes <= size for d in protected)
    inter = [m for m in result.trace.messages if m.exchange == "IKE_INTERMEDIATE"]
    # The 1184-byte encapsulation key makes a 1249-byte IKE message (1277/1297 bytes as an
    # IPv4/IPv6 datagram): fragmented below that, whole at 1500.
    whole = 1249 + (40 if ipv6 else 20) + 8 + 4
    assert (inter[0].fragments >= 2) == (whole > size)


def test_strongswan_datagram_shape_at_1280():
    """strongSwan <-> strongSwan at 1280, IPv4 only (IKE bytes): s248 r281 s1248 s66 r1153
    s310 r241; interop/README.md has the lab's capture."""
    result = run_handshake(HYBRID, fragment_size=1280)
    t = result.trace
    assert len(t.datagrams) == 7
    shape = [(d.sender[0], d.exchange, d.fragment) for d in t.datagrams]
    assert shape == [
        ("i", "IKE_SA_INIT", 0),
        ("r", "IKE_SA_INIT", 0),
        ("i", "IKE_INTERMEDIATE", 1),
        ("i", "IKE_INTERMEDIATE", 2),
        ("r", "IKE_INTERMEDIATE", 0),
        ("i", "IKE_AUTH", 0),
        ("r", "IKE_AUTH", 0),
    ]
    sizes = [d.udp_bytes for d in t.datagrams]
    # The fragments match strongSwan to the byte; the rest differs only by notifies.
    assert sizes[2:5] == [1248, 66, 1153]


def _faulty(kind, victim):
    held = {}

    def deliver(sender, data, index):
        if index != victim:
            out = [data]
            if sender in held:
                out.append(held.pop(sender))
            return out
        if kind == "lose":
            return []
        if kind == "duplicate":
            return [data, data]
        held[sender] = data
        return []

    return deliver


@pytest.mark.parametrize(("size", "ipv6"), SIZES)
@pytest.mark.parametrize("kind", ["lose", "duplicate", "reorder"])
def test_single_fragment_faults_still_establish(size, ipv6, kind):
    # ML-KEM-1024 in round 2 is fragmented even at 1500 bytes.
    proposal = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
    base = run_handshake(proposal, fragment_size=size, ipv6=ipv6)
    fragments = [i for i, d in enumerate(base.trace.datagrams) if d.fragment]
    assert fragments
    for victim in fragments:
        result = run_handshake(
            proposal, fragment_size=size, ipv6=ipv6, deliver=_faulty(kind, victim)
        )
        assert result.established, (kind, victim, result.failures)


def test_hundreds_of_kilobytes_in_one_message(sa_pair):
    """300 kB of payloads (a payload holds at most 64 kB) go through fragmentation and back."""
    ini, res = sa_pair(HYBRID)
    from pqike.handshake import drive_pair

    drive_pair(ini, res)
    c = ini.gen.crypto
    big = [VendorIdPayload(bytes([i]) * 60_000) for i in range(5)]
    pm = protect(
        _header(ini, ExchangeType.INFORMATIONAL, 9),
        big,
        c.cipher,
        c.keys.sk_ei,
        c.keys.sk_ai,
        fragment_size=1280,
    )
    assert len(pm.messages) > 200
    from pqike.wire.codec import decode_message

    out = None
    for m in reversed(pm.messages):  # arrives backwards
        message = decode_message(m)
        out = res.gen.reassembler.add(message, c.cipher, c.keys.sk_ei, c.keys.sk_ai, now=0.0)
    assert out is not None and out.plaintext == pm.plaintext


def _header(sa, exchange, mid):
    from pqike.wire.payloads import IkeHeader

    return IkeHeader(sa.spi_i, sa.spi_r, 0, exchange, 0x08, mid)


def test_abusive_fragment_stream_stays_bounded(sa_pair):
    """Too many fragments, too big a message, and stale partials are dropped and counted."""
    from pqike.errors import InvalidSyntax
    from pqike.ike.protection import Reassembler, ReassemblyLimits
    from pqike.wire.codec import decode_message

    ini, res = sa_pair(HYBRID)
    from pqike.handshake import drive_pair

    drive_pair(ini, res)
    c = ini.gen.crypto
    k = c.keys
    limits = ReassemblyLimits(max_fragments=128, max_message_size=40_000, timeout=5.0)
    r = Reassembler(limits)

    def fragments(size, mid):
        payloads = [VendorIdPayload(bytes(min(60_000, size - i))) for i in range(0, size, 60_000)]
        pm = protect(
            _header(ini, ExchangeType.INFORMATIONAL, mid),
            payloads,
            c.cipher,
            k.sk_ei,
            k.sk_ai,
            fragment_size=576,
        )
        return [decode_message(m) for m in pm.messages]

    # 1. more fragments announced than allowed: refused before any state is kept
    too_many = fragments(128 * 600, 1)
    with pytest.raises(InvalidSyntax):
        r.add(too_many[0], c.cipher, k.sk_ei, k.sk_ai, now=0.0)
    assert r.pending_fragments == 0 and r.stats["fragments_dropped"] == 1
    # 2. a message growing past the size limit is dropped whole
    big = fragments(50_000, 2)[:100]
    with pytest.raises(InvalidSyntax):
        for f in big[:-1]:
            r.add(f, c.cipher, k.sk_ei, k.sk_ai, now=1.0)
            assert r.pending_bytes <= limits.max_message_size
    assert r.pending_bytes == 0 and r.stats["messages_dropped"] == 1
    # 3. a partial message older than the time-out is forgotten
    partial = fragments(5_000, 3)
    r.add(partial[0], c.cipher, k.sk_ei, k.sk_ai, now=10.0)
    assert r.pending_fragments == 1
    r.expire(now=16.0)
    assert r.pending_fragments == 0 and r.stats["messages_dropped"] == 2
    # 4. forged fragments (bad ICV) never occupy memory
    forged = bytearray(partial[1].raw)
    forged[-1] ^= 1
    with pytest.raises(Exception) as exc:
        r.add(decode_message(bytes(forged)), c.cipher, k.sk_ei, k.sk_ai, now=20.0)
    assert type(exc.value).__name__ == "IntegrityCheckFailed"
    assert r.pending_fragments == 0
    # 5. duplicates are counted, not stored twice
    r.add(partial[0], c.cipher, k.sk_ei, k.sk_ai, now=30.0)
    r.add(partial[0], c.cipher, k.sk_ei, k.sk_ai, now=30.0)
    assert r.pending_fragments == 1 and r.stats["fragments_duplicate"] == 1


def test_classic_mceliece_key_over_a_lossy_link_establishes():
    """issue 6: McEliece-348864's 261 KB key, 221 fragments at 1280, 1 % loss each way.

    The reassembler keeps what arrived across whole-message retransmissions, so each
    retransmission only has to fill the gaps.
    """
    import random

    for seed in range(5):
        rnd = random.Random(seed)
        result = run_handshake(
            "aes256gcm16-prfsha384-x25519-ke1_mceliece348864",
            deliver=lambda sender, data, index, rnd=rnd: [] if rnd.random() < 0.01 else [data],
        )
        assert result.established, (seed, result.failures)
        request = next(m for m in result.trace.messages if m.exchange == "IKE_INTERMEDIATE")
        assert request.fragments > 200


def test_split_ke_payloads_must_be_one_value():
    from pqike.errors import InvalidSyntax
    from pqike.ike.exchanges.common import MAX_KE_DATA
    from pqike.ike.exchanges.common import joined_ke as _joined_ke

    whole = _joined_ke([KePayload(1120, bytes(MAX_KE_DATA)), KePayload(1120, b"xy")])
    assert whole == KePayload(1120, bytes(MAX_KE_DATA) + b"xy")
    with pytest.raises(InvalidSyntax):
        _joined_ke([KePayload(1120, b"short"), KePayload(1120, b"xy")])
    with pytest.raises(InvalidSyntax):
        _joined_ke([KePayload(1120, bytes(MAX_KE_DATA)), KePayload(36, b"xy")])


def test_a_reassembler_is_made_only_when_a_fragment_comes():
    plain = run_handshake("aes256gcm16-prfsha384-x25519")
    assert plain.established
    for sa in (plain.initiator, plain.responder):
        assert sa.gen.reassembly is None  # nothing was fragmented: nothing held for it
        assert sa.stats.get("fragments_accepted", 0) == 0
    # ML-KEM-768's IKE_INTERMEDIATE request does not fit in 1280 bytes (RFC 7383).
    hybrid = run_handshake("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    assert hybrid.established
    responder = hybrid.responder
    assert responder.gen.reassembly is not None
    assert responder.stats["fragments_accepted"] >= 2
    assert responder.stats["messages_reassembled"] >= 1
