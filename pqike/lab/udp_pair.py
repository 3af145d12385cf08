"""The ``udp`` peer pair: two pqike endpoints over real loopback UDP, in real time.

Each peer is a ``pqike.io.udp.UdpEndpoint`` running on its own thread and event loop,
and ``pqike.lab.relay.ImpairmentRelay`` sits between them on a third, applying the
profile (delay, jitter, loss, MTU, rate) each way::

    initiator (thread 1) --> relay (thread 2) --> responder (thread 3)

Separate threads let ``time.thread_time()`` give each peer's CPU without the relay's or
the other peer's. Times are wall-clock: the time to established is measured from
``initiate`` to the initiator's ``IkeSaEstablished``. Ports are ephemeral (never 500),
so no peer floats to the NAT-T port and every message carries the non-ESP marker, as
strongSwan does on custom ports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from ..handshake import make_config
from ..ike.events import Event, IkeSaEstablished, IkeSaFailed, MessageSent
from ..trace import Trace
from .auth import lab_auth
from .link import DatagramFate
from .peers import INITIATOR_ID, PSK, RESPONDER_ID, HandshakeCase, HandshakeRun
from .relay import ImpairmentRelay

T = TypeVar("T")


class _LoopThread:
    """An event loop running on its own thread; ``call`` runs a coroutine there."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            # Ctrl-C (or a timeout) in the calling thread: the coroutine must not run on.
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel what still runs on the loop, let it unwind, then stop the loop.

        Stopping with tasks pending would leave them to be garbage-collected later with
        asyncio's "Task was destroyed but it is pending!" and their whole repr.
        """

        async def finish() -> None:
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        if self._thread.is_alive() and not self.loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(finish(), self.loop).result(5.0)
            except (TimeoutError, RuntimeError, asyncio.CancelledError):
                pass  # a task that will not unwind must not keep the run from ending
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


async def _thread_time() -> float:
    return time.thread_time()


class UdpPair:
    """pqike <-> pqike over loopback UDP through the impairment relay (wall-clock time)."""

    name = "udp"
    simulated = False

    def unavailable_reason(self) -> str | None:
        try:
            from ..io import udp  # noqa: F401  (only checks that the endpoint exists)
        except ImportError as exc:
            return f"pqike.io.udp cannot be imported ({exc})"
        return None

    def run(self, case: HandshakeCase) -> HandshakeRun:
        from ..ike.endpoint import IkeEndpoint
        from ..io.udp import UdpEndpoint

        profile = case.profile
        host = "::1" if profile.ipv6 else "127.0.0.1"
        common: dict[str, Any] = {
            "fragment_size": profile.fragment_size,
            "retransmit_timeout": case.retransmit_timeout,
            "retransmit_tries": case.retransmit_tries,
            "psk": PSK,
            "preset": case.proposal.preset,
        }
        # The reproducible PKI of pqike.lab.auth, kept on the pair between handshakes;
        # fresh meters for this handshake (each side signs and verifies on its thread).
        auth = lab_auth(
            case.proposal.auth,
            case.proposal.chain,
            INITIATOR_ID,
            RESPONDER_ID,
            vars(self).setdefault("_pkis", {}),
        )
        ini_auth, res_auth = auth.initiator, auth.responder
        init_cfg = make_config(
            case.proposal.ike,
            case.proposal.esp,
            local_id=INITIATOR_ID,
            remote_id=RESPONDER_ID,
            impairments=case.proposal.impair,
            **common,
            **ini_auth,
        )
        resp_cfg = make_config(
            case.proposal.responder or case.proposal.ike,
            case.proposal.esp,
            local_id=RESPONDER_ID,
            impairments=case.proposal.responder_impair,
            **common,
            **res_auth,
        )
        events: dict[str, list[Event]] = {"initiator": [], "responder": []}
        threads = {
            "responder": _LoopThread("pqike-lab-responder"),
            "relay": _LoopThread("pqike-lab-relay"),
            "initiator": _LoopThread("pqike-lab-initiator"),
        }
        endpoints: dict[str, Any] = {}
        relay: ImpairmentRelay | None = None
        try:

            async def open_side(side: str, config) -> tuple[str, int]:
                udp = await UdpEndpoint.open(
                    IkeEndpoint(config),
                    [host],
                    port=0,
                    nat_t_port=None,
                    on_event=lambda sa, ev: events[side].append(ev),
                )
                endpoints[side] = udp
                return (host, udp.port)

            responder_addr = threads["responder"].call(open_side("responder", resp_cfg), 10)
            relay = ImpairmentRelay(
                (host, 0), responder_addr, forward=profile.link(), seed=case.seed
            )
            relay_addr = threads["relay"].call(relay.start(), 10)
            threads["initiator"].call(open_side("initiator", None), 10)
            cpu_r0 = threads["responder"].call(_thread_time(), 10)

            async def handshake() -> tuple[float, float, float, bool]:
                udp = endpoints["initiator"]
                loop = asyncio.get_running_loop()
                start, c0, w0 = loop.time(), time.thread_time(), time.perf_counter()
                sa = udp.initiate(init_cfg, relay_addr)
                settled = await udp.watch(sa).wait(timeout=case.max_time)
                wall = time.perf_counter() - w0
                return start, wall, time.thread_time() - c0, settled and sa.is_established

            start, wall, cpu_i, established = threads["initiator"].call(
                handshake(), case.max_time + 30
            )
            cpu_r = threads["responder"].call(_thread_time(), 10) - cpu_r0
        finally:
            for side in ("initiator", "responder"):
                if side in endpoints:
                    threads[side].call(endpoints[side].close(), 10)
            if relay is not None:
                threads["relay"].loop.call_soon_threadsafe(relay.close)
            for t in threads.values():
                t.stop()

        trace, fates = _trace(events, relay.log if relay else [], start, profile.ipv6)
        est = next((e for e in events["initiator"] if isinstance(e, IkeSaEstablished)), None)
        failure = None
        if not established:
            fails = [
                (side, e)
                for side in ("initiator", "responder")
                for e in events[side]
                if isinstance(e, IkeSaFailed)
            ]
            failure = (
                f"{fails[0][0]}: {fails[0][1].reason}"
                if fails
                else f"not established within {case.max_time:g} s"
            )
        return HandshakeRun(
            established=established,
            failure=failure,
            negotiated=est.suite.describe() if est is not None else None,
            trace=trace,
            simulated=False,
            wall=wall,
            end_time=wall,
            cpu_initiator=cpu_i,
            cpu_responder=cpu_r,
            fates=fates,
            **auth.columns(),
        )


def _trace(events, log, start: float, ipv6: bool) -> tuple[Trace, list[DatagramFate] | None]:
    """One trace from both sides' events (times relative to ``start``) and the fates the
    relay logged, matched to each sender's datagrams in order."""
    sent = [
        (ev.time, order, side, ev)
        for side in ("initiator", "responder")
        for order, ev in enumerate(events[side])
        if isinstance(ev, MessageSent)
    ]
    sent.sort(key=lambda item: (item[0], item[2] != "initiator", item[1]))
    trace = Trace(ipv6=ipv6)
    for t, _, side, ev in sent:
        trace.add(side, replace(ev, time=t - start))
    queues = {
        "initiator": [d for d in log if d.direction == "forward"],
        "responder": [d for d in log if d.direction == "backward"],
    }
    counts = {side: sum(1 for d in trace.datagrams if d.sender == side) for side in queues}
    if any(counts[side] != len(queues[side]) for side in queues):
        return trace, None  # a datagram never reached the relay: no reliable matching
    fates = []
    for d in trace.datagrams:
        r = queues[d.sender].pop(0)
        arrival = r.delivered - start if r.delivered is not None else None
        fates.append(DatagramFate(r.fate, arrival, arrival))
    return trace, fates


__all__ = ["UdpPair"]
