"""Long-running pqike initiators for the benches, run inside a lab namespace.

``python -m pqike.interop.drivers warm --config left.toml`` is the *warm* initiator of
``pqike bench interop``: one process that has imported pqike and done a first handshake,
then starts one IKE SA (and deletes it again) for each ``go`` line on its standard
input, answering ``ok`` or ``fail <reason>`` on one line. It is what charon is beside
it: a running daemon asked to initiate, so the bench compares handshakes, not Python's
start-up (``pqike initiate``, a new process each time, is the *cold* figure).

``python -m pqike.interop.drivers load --config left.toml --concurrency 16 --seconds 5``
is the load of ``pqike bench capacity``: it keeps ``concurrency`` IKE SAs in their
handshake against the configured responder, starting a new one whenever one settles,
and prints one JSON object with what completed (after a warm-up). SAs are left up:
deleting them would add an exchange to the responder's cost per handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from ..ike.endpoint import IkeEndpoint
from ..ike.sa import IkeSa
from ..io.config import PeerConfig, load_peer_config
from ..io.peer import initiate
from ..io.udp import UdpEndpoint


async def _warm(peer: PeerConfig, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    first = await initiate(peer, timeout=timeout, delete=True)  # imports, memos, key types
    print("ready" if first.established else f"fail {first.failure}", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "quit":
            return
        result = await initiate(peer, timeout=timeout, delete=True)
        print("ok" if result.established else f"fail {result.failure}", flush=True)


async def _load(peer: PeerConfig, concurrency: int, seconds: float, warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    udp = await UdpEndpoint.open(
        IkeEndpoint(None, limits=peer.limits),
        [peer.local_for(peer.remote[0])],
        port=peer.port,
        nat_t_port=None,
    )
    counts = {"established": 0, "failed": 0, "total_established": 0}
    window: dict[str, float] = {}
    done = asyncio.Event()
    tasks: set[asyncio.Task] = set()

    def start() -> None:
        sa = udp.initiate(peer.ike, peer.remote)
        task = loop.create_task(settle(sa))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def settle(sa: IkeSa) -> None:
        watch = udp.watch(sa)
        await watch.wait(30.0)
        udp.unwatch(sa)
        now = loop.time()
        counts["total_established"] += sa.is_established
        if "start" in window and now <= window["end"]:
            counts["established" if sa.is_established else "failed"] += 1
        if now < window.get("end", now + 1):
            start()
        elif not done.is_set():
            done.set()

    begin = loop.time()
    for _ in range(concurrency):
        start()
    await asyncio.sleep(warmup)
    window["start"] = loop.time()
    window["end"] = window["start"] + seconds
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    await asyncio.wait_for(done.wait(), 30.0)
    await udp.close()
    return {
        **counts,
        "seconds": seconds,
        "warmup": window["start"] - begin,
        "concurrency": concurrency,
        "load_cpu_seconds": cpu,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m pqike.interop.drivers``."""
    parser = argparse.ArgumentParser(prog="python -m pqike.interop.drivers")
    sub = parser.add_subparsers(dest="mode", required=True)
    warm = sub.add_parser("warm", help="one IKE SA per 'go' line on standard input")
    warm.add_argument("--config", required=True)
    warm.add_argument("--timeout", type=float, default=15.0)
    load = sub.add_parser("load", help="keep CONCURRENCY handshakes in flight")
    load.add_argument("--config", required=True)
    load.add_argument("--concurrency", type=int, default=16)
    load.add_argument("--seconds", type=float, default=5.0)
    load.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    peer = load_peer_config(args.config)
    if args.mode == "warm":
        asyncio.run(_warm(peer, args.timeout))
    else:
        result = asyncio.run(_load(peer, args.concurrency, args.seconds, args.warmup))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
