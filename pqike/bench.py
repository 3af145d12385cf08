"""``pqike bench handshake``: a whole in-memory handshake against its crypto floor.

The anchor is the "crypto floor": the cryptographic operations that one handshake
performs (key pairs, encapsulations and DH results of every round, SKEYSEED and prf+
for each key update on both sides, encryption and decryption of each protected message
or fragment at its real size, AUTH and IntAuth PRFs, NAT detection hashes, Child SA
KEYMAT), called straight on the crypto layer with no protocol around them. Both are
measured in the same run, interleaved, so machine noise hits them alike. The ratio
says what the protocol machinery (codec, state machine, events) costs on top.

Both are timed as one region each, with the same clock: the floor from its first key
pair to its last KEYMAT; the handshake from making the two ``IkeSa`` objects to both
being established, with every datagram handed over and every event read. Outside both
regions: what a process does once (the configurations, parsed from the proposal
strings, and the floor's plan of sizes), and the ``Trace`` that ``run_handshake``
keeps for reports.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from .constants import ExchangeType
from .crypto import auth as ike_auth
from .crypto.kex import DEFAULT_REGISTRY
from .crypto.keys import IkeKeys, derive_child_keys, initial_ike_keys, updated_ike_keys
from .crypto.prf import get_prf
from .crypto.protect import encr_key_size, get_cipher, integ_key_size
from .handshake import (
    INITIATOR_ADDRESS,
    RESPONDER_ADDRESS,
    HandshakeResult,
    make_config,
    run_handshake,
)
from .ike.config import IkeConfiguration
from .ike.sa import IkeSa


@dataclass(frozen=True)
class _Plan:
    """The crypto work of one handshake, read off a reference run."""

    prf_id: int
    cipher: tuple[int, int | None, int]
    esp: tuple[int, int | None, int]
    methods: tuple[int, ...]
    protected_plaintexts: tuple[int, ...]
    intermediate_sizes: tuple[int, ...]
    sa_init_sizes: tuple[int, int]
    nonce_size: int


def _plan(result: HandshakeResult) -> _Plan:
    suite = result.suite
    child = result.child
    assert suite is not None and child is not None and suite.prf is not None
    cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
    overhead = cipher.encrypted_size(0)
    sizes = []
    inter = []
    sa_init = [0, 0]
    for m in result.trace.messages:
        if m.retransmission:
            continue
        if m.exchange == ExchangeType.IKE_SA_INIT.name:
            sa_init[int(m.is_response)] = m.ike_bytes
            continue
        frag_rows = [
            d
            for d in result.trace.datagrams
            if (d.sender, d.message_id, d.is_response, d.exchange)
            == (m.sender, m.message_id, m.is_response, m.exchange)
        ]
        header = 28 + (8 if m.fragments else 4)
        for d in frag_rows:
            sizes.append(max(d.ike_bytes - header - overhead, 0))
        if m.exchange == ExchangeType.IKE_INTERMEDIATE.name:
            inter.append(m.ike_bytes)
    methods = tuple([suite.ke or 0] + [method for _, method in suite.rounds])
    return _Plan(
        suite.prf,
        (suite.encr, suite.key_bits, suite.integ),
        (child.suite.encr, child.suite.key_bits, child.suite.integ),
        methods,
        tuple(sizes),
        tuple(inter),
        (sa_init[0], sa_init[1]),
        32,
    )


def crypto_floor(plan: _Plan) -> None:
    """Perform exactly the cryptographic operations of one handshake described by ``plan``."""
    prf = get_prf(plan.prf_id)
    cipher = get_cipher(*plan.cipher)
    ni, nr = os.urandom(plan.nonce_size), os.urandom(plan.nonce_size)
    spi_i, spi_r = os.urandom(8), os.urandom(8)
    sizes = {"encr_key_size": cipher.key_size, "integ_key_size": cipher.integ_key_size}
    keys_i: IkeKeys | None = None
    keys_r: IkeKeys | None = None
    for method in plan.methods:
        ini = DEFAULT_REGISTRY.create(method)
        res = DEFAULT_REGISTRY.create(method)
        data_r, secret_r = res.respond(ini.public_data())
        secret_i = ini.complete(data_r)
        # Each side derives its own keys: RFC 7296 2.14 first, RFC 9370 2.2.2 after.
        if keys_i is None or keys_r is None:
            keys_i = initial_ike_keys(prf, secret_i, ni, nr, spi_i, spi_r, **sizes)
            keys_r = initial_ike_keys(prf, secret_r, ni, nr, spi_i, spi_r, **sizes)
        else:
            keys_i = updated_ike_keys(prf, keys_i, secret_i, ni, nr, spi_i, spi_r, **sizes)
            keys_r = updated_ike_keys(prf, keys_r, secret_r, ni, nr, spi_i, spi_r, **sizes)
    assert keys_i is not None
    for n in plan.protected_plaintexts:
        aad = os.urandom(32)
        body = cipher.encrypt(keys_i.sk_ei, keys_i.sk_ai, aad, bytes(n))
        cipher.decrypt(keys_i.sk_ei, keys_i.sk_ai, aad, body)
    for size in plan.intermediate_sizes:  # each side chains IntAuth over every message
        octets = bytes(size)
        for _ in range(2):
            ike_auth.int_auth(prf, keys_i.sk_pi, b"", octets)
    id_body = b"\x02\x00\x00\x00initiator.pqike.example"
    for size in (*plan.sa_init_sizes, *plan.sa_init_sizes):  # compute and verify, both sides
        octets = ike_auth.signed_octets(bytes(size), nr, prf, keys_i.sk_pi, id_body)
        ike_auth.psk_auth(prf, b"pqike-demo-psk", octets)
    for _ in range(8):  # NAT_DETECTION hashes sent and checked
        ike_auth.nat_detection_hash(spi_i, spi_r, "192.0.2.1", 500)
    esp = plan.esp
    for _ in range(2):
        derive_child_keys(
            prf,
            keys_i.sk_d,
            ni,
            nr,
            encr_key_size=encr_key_size(esp[0], esp[1]),
            integ_key_size=integ_key_size(esp[2]),
        )


@dataclass(frozen=True)
class BenchReport:
    proposal: str
    runs: int
    handshake_median: float
    floor_median: float
    udp_bytes: int
    datagrams: int

    @property
    def ratio(self) -> float:
        return self.handshake_median / self.floor_median

    def format(self) -> str:
        return "\n".join(
            [
                f"proposal:            {self.proposal}",
                f"runs:                {self.runs} (interleaved handshake / floor)",
                f"handshake CPU:       {self.handshake_median * 1e3:.3f} ms median (both sides, "
                f"{self.datagrams} datagrams, {self.udp_bytes} UDP bytes: two new IkeSa "
                "to both established, every event read)",
                f"crypto floor CPU:    {self.floor_median * 1e3:.3f} ms median "
                "(the same handshake's crypto operations alone, one region too)",
                f"ratio:               {self.ratio:.2f} (handshake / crypto floor; goal <= 1.5)",
            ]
        )


def handshake_region(
    initiator_config: IkeConfiguration, responder_config: IkeConfiguration
) -> bool:
    """One whole handshake between two new ``IkeSa`` objects, driven with no bookkeeping
    (the region ``bench_handshake`` times): every datagram is delivered at once, every
    event read. True when both ends are established."""
    local, remote = INITIATOR_ADDRESS[4], RESPONDER_ADDRESS[4]
    initiator = IkeSa(initiator_config, is_initiator=True, local=local, remote=remote)
    responder = IkeSa(responder_config, is_initiator=False, local=remote, remote=local)
    initiator.initiate(now=0.0)
    for _ in range(64):
        moved = False
        for data, dst in initiator.datagrams_to_send(now=0.0):
            responder.receive_datagram(data, local, now=0.0, local=dst)
            moved = True
        for data, dst in responder.datagrams_to_send(now=0.0):
            initiator.receive_datagram(data, remote, now=0.0, local=dst)
            moved = True
        while initiator.next_event() is not None:
            pass
        while responder.next_event() is not None:
            pass
        if not moved:
            break
    return initiator.is_established and responder.is_established


def bench_handshake(proposal: str, esp: str = "aes256gcm16", *, runs: int = 200) -> BenchReport:
    """Time ``runs`` in-memory handshakes and ``runs`` crypto floors, interleaved."""
    reference = run_handshake(proposal, esp)
    if not reference.established:
        raise RuntimeError(f"the reference handshake failed: {reference.failures}")
    plan = _plan(reference)
    ini_config = make_config(
        proposal, esp, local_id="initiator.pqike.example", remote_id="responder.pqike.example"
    )
    res_config = make_config(proposal, esp, local_id="responder.pqike.example")
    hs: list[float] = []
    fl: list[float] = []
    clock = time.process_time
    for _ in range(3):  # warm caches on both paths
        handshake_region(ini_config, res_config)
        crypto_floor(plan)
    for _ in range(runs):
        t0 = clock()
        ok = handshake_region(ini_config, res_config)
        hs.append(clock() - t0)
        if not ok:
            raise RuntimeError("a timed handshake failed")
        t0 = clock()
        crypto_floor(plan)
        fl.append(clock() - t0)
    t = reference.trace.totals()
    return BenchReport(
        proposal, runs, statistics.median(hs), statistics.median(fl), t["udp_bytes"], t["datagrams"]
    )


# --- pqike bench memory --------------------------------------------------------------------

MEMORY_TARGET = 10 * 1024
"""Bytes per established IKE SA that one responder process may hold (the 10 KB goal)."""


@dataclass(frozen=True)
class MemoryReport:
    """Memory a responder ``IkeEndpoint`` holds per established IKE SA."""

    proposal: str
    sas: int
    established: int
    traced: bool
    bytes_per_sa: float
    """Python heap (tracemalloc) or resident set growth per SA, above the idle endpoint."""
    peak_bytes: int
    rss_bytes_per_sa: float
    seconds: float

    @property
    def ratio(self) -> float:
        return self.bytes_per_sa / MEMORY_TARGET

    def format(self) -> str:
        what = "Python heap (tracemalloc)" if self.traced else "resident set (RSS)"
        lines = [
            f"proposal:            {self.proposal}",
            f"IKE SAs:             {self.established} established of {self.sas}, held by one "
            "responder IkeEndpoint (initiators discarded)",
            f"per SA:              {self.bytes_per_sa:,.0f} bytes of {what} above the idle "
            "endpoint",
            f"ratio:               {self.ratio:.2f} (per SA / {MEMORY_TARGET:,} bytes; goal <= 1)",
        ]
        if self.traced:
            lines.append(
                f"RSS growth per SA:   {self.rss_bytes_per_sa:,.0f} bytes (includes tracemalloc's "
                "own bookkeeping; run with --rss for RSS alone)"
            )
        lines.append(f"time:                {self.seconds:.1f} s")
        return "\n".join(lines)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: the figure is reported as 0
        return 0


def _establish_into(endpoint, config, *, now: float) -> bool:
    """One in-memory initiator against ``endpoint``; the initiator is dropped afterwards."""

    local, remote = ("198.51.100.1", 500), ("198.51.100.2", 500)
    initiator = IkeSa(config, is_initiator=True, local=local, remote=remote)
    initiator.initiate(now=now)
    for _ in range(64):
        moved = False
        for data, dst in initiator.datagrams_to_send(now=now):
            endpoint.receive_datagram(data, initiator.local, local=dst, now=now)
            moved = True
        for data, src, dst in endpoint.datagrams_to_send(now=now):
            initiator.receive_datagram(data, src, now=now, local=dst)
            moved = True
        while endpoint.next_event() is not None:
            pass
        while initiator.next_event() is not None:
            pass
        if not moved:
            break
    return initiator.is_established


def bench_memory(
    sas: int = 10_000,
    proposal: str = "aes256gcm16-prfsha384-x25519",
    esp: str = "aes256gcm16",
    *,
    traced: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> MemoryReport:
    """Hold ``sas`` established IKE SAs in one responder endpoint and measure the growth.

    With ``traced`` the figure is tracemalloc's count of Python allocations (what the
    objects themselves take, exact, but blind to OpenSSL's own heap); without it, the
    growth of the resident set (everything, page-granular, noisier). ``progress(done,
    total)`` is called after every hundredth SA and after the last one.
    """
    import gc
    import tracemalloc

    from .ike.endpoint import IkeEndpoint

    responder = make_config(proposal, esp, local_id="responder.pqike.example")
    initiator = make_config(
        proposal, esp, local_id="initiator.pqike.example", remote_id="responder.pqike.example"
    )
    warm = IkeEndpoint(responder)
    for _ in range(20):  # module caches, key exchange backends, allocator arenas
        _establish_into(warm, initiator, now=0.0)
    del warm
    endpoint = IkeEndpoint(responder)
    gc.collect()
    t0 = time.perf_counter()
    if traced:
        tracemalloc.start()
    base, rss0 = (tracemalloc.get_traced_memory()[0] if traced else 0), _rss()
    established = 0
    now = 0.0
    for i in range(sas):
        established += _establish_into(endpoint, initiator, now=now)
        now += 0.001
        if progress is not None and ((i + 1) % 100 == 0 or i + 1 == sas):
            progress(i + 1, sas)
    # What an established SA costs in the steady state: the endpoint's bounded cache of
    # IKE_SA_INIT answers (for replays, EndpointLimits.replay_window) is let expire first.
    endpoint.handle_timer(now=now + endpoint.limits.replay_window)
    gc.collect()
    rss1 = _rss()
    if traced:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        per_sa = (current - base) / max(sas, 1)
    else:
        peak = 0
        per_sa = (rss1 - rss0) / max(sas, 1)
    seconds = time.perf_counter() - t0
    if len(endpoint) != established:
        raise RuntimeError(f"the endpoint holds {len(endpoint)} IKE SAs, not {established}")
    return MemoryReport(
        proposal, sas, established, traced, per_sa, peak, (rss1 - rss0) / max(sas, 1), seconds
    )
