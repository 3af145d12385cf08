"""``pqike bench capacity``: how many handshakes a responder completes per second.

The responders, each in its own lab (:mod:`pqike.interop.lab`): ``pqike respond`` (with
its ``--events`` log, as it runs in the lab) and charon (log level 1). Both are driven
the same way: one ``python -m pqike.interop.drivers load`` process in the initiator's
namespace keeps ``concurrency`` handshakes in flight over real UDP, starting a new one
whenever one settles, for a warm-up and then ``seconds`` that count. The SAs stay up
(no Delete exchange in the responder's cost).

Reported per responder and proposal: completed handshakes per second in the counted
window, and the responder's CPU per handshake (user + system time of its process, all
threads, over the whole run divided by every handshake it completed).

charon is set up not to be penalised by the load: an IKE SA table of 1024 rows in 16
segments instead of one list (``ikesa_table_size``, ``ikesa_table_segments``), and its
DoS protection off (one peer address opens every SA: ``block_threshold`` and
``cookie_threshold`` would refuse or challenge it). pqike's responder gets the same
room (no COOKIE threshold, no per-peer bound).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..constants import ProtocolId
from ..proposal import parse_proposals
from .bench import DEFAULT_PROPOSALS, LabUnavailable
from .lab import Lab, StrongSwanConfig, ensure_strongswan
from .peer import REPO, PqikeResponder, lab_unavailable, write_pqike_config

RESPONDERS = ("strongSwan", "pqike")
_CHARON_ROOM = "\n".join(
    [
        "ikesa_table_size = 1024",
        "ikesa_table_segments = 16",
        "dos_protection = no",
        "block_threshold = 1000000",
        "cookie_threshold = 1000000",
        "init_limit_half_open = 0",
    ]
)
CAVEATS = (
    "the load generator is Python and shares this machine's cores with the responder: "
    "both sides do a handshake's crypto, so the figures are a lower bound on what each "
    "responder could do alone, and they move with the machine's load;",
    "CPU per handshake counts the responder process only (all of charon's threads);",
    "charon runs with an IKE SA table of 1024 rows (16 segments) and DoS protection off, "
    "pqike respond with no COOKIE threshold and its --events log on;",
    "SAs are not deleted: each responder ends holding every SA it made.",
)


@dataclass(frozen=True)
class CapacityResult:
    """One responder under load for one proposal."""

    responder: str
    handshakes: int
    failed: int
    seconds: float
    cpu_per_handshake: float
    """Seconds of responder CPU per completed handshake (the whole run)."""

    @property
    def rate(self) -> float:
        return self.handshakes / self.seconds


@dataclass(frozen=True)
class CapacityReport:
    """Handshakes per second of each responder, per proposal."""

    strongswan: str
    concurrency: int
    esp: str
    results: dict[str, tuple[CapacityResult, ...]]
    seconds: float

    def ratio(self, proposal: str) -> float:
        """pqike's handshakes per second over charon's."""
        by = {r.responder: r for r in self.results[proposal]}
        return by["pqike"].rate / by["strongSwan"].rate

    def format(self) -> str:
        lines = [
            f"responders: pqike respond and {self.strongswan} charon, each in its own lab",
            f"load:       one pqike load process, {self.concurrency} handshakes in flight, "
            f"same for both; ESP {self.esp}",
        ]
        for proposal, results in self.results.items():
            lines += ["", proposal]
            lines.append(
                f"  {'responder':<12}{'hs/s':>10}{'CPU/hs':>12}{'counted':>9}{'failed':>8}"
            )
            for r in results:
                lines.append(
                    f"  {r.responder:<12}{r.rate:>10.0f}{r.cpu_per_handshake * 1e3:>10.3f}ms"
                    f"{r.handshakes:>9}{r.failed:>8}"
                )
            lines.append(f"  pqike / charon handshakes per second: {self.ratio(proposal):.2f}")
        lines += ["", "caveats:"] + [f"  - {c}" for c in CAVEATS]
        lines.append(f"time:       {self.seconds:.1f} s")
        return "\n".join(lines)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads, from /proc (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(
    responder: str, proposal: str, esp: str, concurrency: int, seconds: float, warmup: float
) -> CapacityResult:
    with Lab(prefix="pqcap") as lab:
        if responder == "strongSwan":
            daemon = lab.start_strongswan(
                "right",
                StrongSwanConfig(
                    ike_proposal=proposal,
                    esp_proposal=esp,
                    log_levels={"default": 1},
                    extra_charon=_CHARON_ROOM,
                ),
            )
            assert daemon.process is not None
            pid = daemon.process.pid
        else:
            config = write_pqike_config(
                lab.workdir / "right.toml", lab, "right", ike_proposal=proposal, esp_proposal=esp
            )
            with open(config, "a") as f:
                f.write("\n[responder]\nmax_half_open = 100000\n")
            pq = PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl").start()
            assert pq.process is not None
            pid = pq.process.pid
        left = write_pqike_config(
            lab.workdir / "left.toml", lab, "left", ike_proposal=proposal, esp_proposal=esp
        )
        cpu0 = _cpu_seconds(pid)
        argv = [
            sys.executable,
            "-m",
            "pqike.interop.drivers",
            "load",
            "--config",
            str(left),
            "--concurrency",
            str(concurrency),
            "--seconds",
            f"{seconds:g}",
            "--warmup",
            f"{warmup:g}",
        ]
        run = lab.exec_in(
            "left", argv, capture_output=True, text=True, timeout=seconds + warmup + 120, cwd=REPO
        )
        cpu = _cpu_seconds(pid) - cpu0
        if run.returncode != 0:
            raise RuntimeError(f"the load generator failed: {run.stderr.strip()[-800:]}")
        out = json.loads(run.stdout.strip().splitlines()[-1])
        total = out["total_established"]
        return CapacityResult(
            responder,
            out["established"],
            out["failed"],
            out["seconds"],
            cpu / total if total else float("nan"),
        )


def bench_capacity(
    proposals: Sequence[str] = DEFAULT_PROPOSALS,
    esp: str = "aes256gcm16",
    *,
    concurrency: int = 16,
    seconds: float = 5.0,
    warmup: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> CapacityReport:
    """Drive pqike's and charon's responders the same way (needs root); see the module doc.

    Raises ``LabUnavailable`` when the lab cannot run here.
    """
    if concurrency < 1 or seconds <= 0:
        raise ValueError("concurrency must be at least 1 and seconds positive")
    for text in proposals:
        parse_proposals(text, protocol=ProtocolId.IKE)
    parse_proposals(esp, protocol=ProtocolId.ESP)
    reason = lab_unavailable()
    if reason is not None:
        raise LabUnavailable(f"pqike bench capacity needs the lab: {reason}")
    strongswan = ensure_strongswan(install=True).version()
    started = time.monotonic()
    results: dict[str, tuple[CapacityResult, ...]] = {}
    for proposal in proposals:
        rows = []
        for responder in RESPONDERS:
            if progress is not None:
                progress(f"{proposal}: {responder}")
            rows.append(_run(responder, proposal, esp, concurrency, seconds, warmup))
        results[proposal] = tuple(rows)
    return CapacityReport(strongswan, concurrency, esp, results, time.monotonic() - started)


__all__ = ["CAVEATS", "CapacityReport", "CapacityResult", "bench_capacity"]
