"""Published strongSwan message sizes beside the ones an experiment measured.

The figures in ``PUBLISHED`` are strongSwan 6.0 beta's, as charon logged them for a
carol <-> moon connection at ``fragment_size = 1480`` in the README of the
strongX509/docker repository (``pq-strongswan`` directory): the bytes of the packet sent,
or, for a fragmented message, of the message charon reassembled. They are the named
source's figures, never measurements of ours; :func:`comparison` puts each next to the
message pqike sent in a finished experiment (``messages.csv``) and says so.

``python -m pqike.lab.published results/sizes-1480`` writes ``published.md`` there.

Two more published sources are here for the specs that name them (``published`` in
``[experiment]``): ``PAQUIN_TLS``, TLS handshake times under delay and loss from Paquin,
Stebila and Tamvada (``experiments/paquin-grid.toml``), and ``NETEM_SCENARIOS``, a
strongSwan 6.0.1 netem study (``experiments/strongswan-scenarios.toml``). Their
comparisons are written by ``pqike.lab.reproductions`` into ``published.md`` and the
experiment's ``report.md``; the same command rewrites them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .metrics import table_path

SOURCE = (
    "strongSwan 6.0 beta, charon's log at fragment_size 1480 in the README of the "
    "strongX509/docker repository (pq-strongswan)"
)


@dataclass(frozen=True)
class PublishedMessage:
    """One published row: bytes (and fragments, 0 when not fragmented) per direction."""

    what: str
    exchange: str
    initiator: int | None
    initiator_fragments: int
    responder: int | None
    responder_fragments: int
    proposal: str | None
    """The experiment proposal whose message is the counterpart; ``None``: none here."""
    note: str = ""
    also: tuple[tuple[str, str], ...] = ()
    """More counterparts set beside it, each (proposal, note): e.g. another chain."""


PUBLISHED = (
    PublishedMessage("x25519", "IKE_SA_INIT", 292, 0, 325, 0, "x25519"),
    PublishedMessage("Kyber-L3", "IKE_INTERMEDIATE", 1264, 0, 1168, 0, "x25519+mlkem768"),
    PublishedMessage(
        "BIKE-L3", "IKE_INTERMEDIATE", 3168, 3, 3200, 0, None, "BIKE is not available here"
    ),
    PublishedMessage("HQC-L3", "IKE_INTERMEDIATE", 4608, 4, 9104, 7, "x25519+hqc192"),
    PublishedMessage(
        "Dilithium5 certificates",
        "IKE_AUTH",
        9088,
        7,
        9008,
        7,
        "x25519+mlkem768+mldsa87",
        "pqike: ML-DSA-87 (FIPS 204), its certificate and one intermediate CA's (two CERT)",
        (
            (
                "x25519+mlkem768+mldsa87-1cert",
                "pqike: ML-DSA-87 (FIPS 204), its certificate alone, signed by the CA (one CERT)",
            ),
        ),
    ),
    PublishedMessage(
        "FrodoKEM-AES-L3",
        "IKE_FOLLOWUP_KE",
        15728,
        12,
        None,
        0,
        None,
        "FrodoKEM is not available here",
    ),
)


DILITHIUM5_PUBLIC_KEY = 2592
"""Bytes of a Dilithium5 public key (CRYSTALS-Dilithium round-3 specification, v3.1,
Table 2), the algorithm of the published IKE_AUTH."""
DILITHIUM5_SIGNATURE = 4595
"""Bytes of a Dilithium5 signature (the same table)."""


def dilithium5_vs_ml_dsa_87() -> str:
    """One paragraph: Dilithium5 (round 3) against ML-DSA-87 (FIPS 204) in sizes, the
    ML-DSA-87 ones measured with ``cryptography`` here."""
    from cryptography.hazmat.primitives.asymmetric import mldsa

    # A fixed seed: only the lengths matter, and they are the parameter set's.
    key = mldsa.MLDSA87PrivateKey.from_seed_bytes(bytes(32))
    public = len(key.public_key().public_bytes_raw())
    signature = len(key.sign(b"pqike"))
    return (
        f"The published run used Dilithium5 (round 3: public key {DILITHIUM5_PUBLIC_KEY:,} "
        f"bytes, signature {DILITHIUM5_SIGNATURE:,}), pqike ML-DSA-87 (FIPS 204: public key "
        f"{public:,}, signature {signature:,}, as `cryptography` makes them here), so each "
        f"ML-DSA-87 signature is {signature - DILITHIUM5_SIGNATURE:+,} bytes against "
        "Dilithium5's. One Dilithium5 certificate signed with Dilithium5 (at least "
        f"{DILITHIUM5_PUBLIC_KEY + DILITHIUM5_SIGNATURE:,} bytes of key and signature) and "
        f"a Dilithium5 AUTH signature add up to at least "
        f"{DILITHIUM5_PUBLIC_KEY + 2 * DILITHIUM5_SIGNATURE:,} bytes, more than either "
        "published IKE_AUTH message, so that message cannot hold both; pqike's PKI signs "
        "with ML-DSA-87 throughout (CA, intermediate, AUTH), and that, not the 32 bytes "
        "per signature, is what makes its IKE_AUTH larger."
    )


# --- Paquin, Stebila, Tamvada: TLS handshake times under delay and loss ------------------

PAQUIN_SOURCE = (
    'Christian Paquin, Douglas Stebila, Goutam Tamvada, "Benchmarking Post-Quantum '
    'Cryptography in TLS", PQCrypto 2020; numbers from their data files '
    "(github.com/xvzcf/pq-tls-benchmark, emulation-exp/data/kex/*_31p169ms.csv: "
    "percent05 is the median, percent095 the 95th percentile)"
)

PAQUIN_RTT_MS: dict[float, float] = {2.684: 5.6, 15.458: 31.2, 39.224: 78.7, 97.73: 195.7}
"""Their netem one-way delays (ms, set on both ends) and the RTT their ping measured."""

PAQUIN_LOSS_PCT: tuple[float, ...] = (0, 0.1, 0.5, 1, 1.5, 2, 2.5, 3, *range(4, 21))
"""Their loss rates: the lists of their experiment.py (0-3 % in small steps, then 4-20 %
in 1 % steps), the rows of their data files: 25 rates."""


@dataclass(frozen=True)
class PublishedLatency:
    """One published TLS point: median and 95th percentile of the handshake time."""

    scheme: str
    rtt_ms: float
    loss_pct: float
    median_ms: float
    p95_ms: float
    proposal: str | None
    """The IKEv2 proposal of the grid set beside it; ``None``: none here."""
    note: str = ""


_P256 = "P-256 ECDHE is IKEv2 group 19, ecp256"
_KYBER = (
    "Kyber512 (round 2, 90s) beside the grid's nearest hybrid, x25519 + ML-KEM-768 "
    "(ML-KEM-512 is not in the grid); TLS carries the KEM in its first flight, IKEv2 "
    "in an IKE_INTERMEDIATE round trip of its own (RFC 9370)"
)
_FRODO = "FrodoKEM is not available here"

PAQUIN_TLS = (
    PublishedLatency("P-256", 31.2, 0, 63.7, 64.6, "ecp256", _P256),
    PublishedLatency("P-256", 31.2, 10, 64.1, 1311.9, "ecp256", _P256),
    PublishedLatency("P-256+Kyber512", 31.2, 0, 63.8, 64.6, "x25519+mlkem768", _KYBER),
    PublishedLatency("P-256+Kyber512", 31.2, 10, 64.1, 1368.5, "x25519+mlkem768", _KYBER),
    PublishedLatency("P-256+FrodoKEM-640", 31.2, 0, 65.9, 68.0, None, _FRODO),
    PublishedLatency("P-256+FrodoKEM-640", 31.2, 10, 148.4, 1604.1, None, _FRODO),
)


# --- a strongSwan 6.0.1 netem study: delay and loss scenarios ------------------------------

NETEM_SOURCE = (
    "a published strongSwan 6.0.1 netem study (20 trials a scenario, 30 s limit; its "
    "author, IKE proposal, time statistic and netem semantics, one direction or both, "
    "are not stated where its numbers were taken from)"
)


@dataclass(frozen=True)
class PublishedScenario:
    """One published scenario; ``None`` where the source gives no number."""

    name: str
    profiles: tuple[str, ...]
    """The experiment's profiles set beside it."""
    time_ms: float | None = None
    """Time to established of the scenario's handshakes."""
    first_try_share: float | None = None
    """Share established without a retransmission."""
    first_try_ms: float | None = None
    retransmitted_ms: float | None = None
    """Time of the handshakes that needed a retransmission."""
    established_share: float | None = None
    """Share established within the limit, retransmissions included."""
    note: str = ""


NETEM_SCENARIOS = (
    PublishedScenario("clean", ("clean",), time_ms=146.7),
    PublishedScenario("50 ms delay", ("delay_delay50", "rtt_delay25"), time_ms=284.8),
    PublishedScenario("200 ms delay", ("delay_delay200", "rtt_delay100"), time_ms=755.9),
    PublishedScenario(
        "500 ms delay",
        ("delay_delay500", "rtt_delay250"),
        time_ms=1665,
        first_try_share=0.0,
        note="all retransmitted",
    ),
    PublishedScenario(
        "5 % loss", ("loss_loss5",), first_try_share=0.60, first_try_ms=203, retransmitted_ms=4209
    ),
    PublishedScenario("15 % loss", ("loss_loss15",), first_try_share=0.25, retransmitted_ms=8204),
    PublishedScenario(
        "30 % loss", ("loss_loss30",), established_share=0.95, retransmitted_ms=14277
    ),
    PublishedScenario("500 ms + 30 % loss", ("delay500-loss30",), established_share=0.85),
)

SOURCES: dict[str, str] = {"paquin-tls": PAQUIN_SOURCE, "strongswan-netem": NETEM_SOURCE}
"""Published sources a spec may name (``published = "..."``): the report then sets the
source's numbers beside the experiment's (``pqike.lab.reproductions``)."""


def _cell(size: int | None, fragments: int) -> str:
    if size is None:
        return "-"
    return f"{size:,}" + (f" ({fragments})" if fragments else "")


def _measured(messages: pd.DataFrame, proposal: str, exchange: str, sender: str) -> str:
    rows = messages[
        (messages["proposal"] == proposal)
        & (messages["exchange"] == exchange)
        & (messages["sender"] == sender)
        & (messages["phase"] == "handshake")
        & ~messages["retransmission"].astype(str).eq("True")
    ]
    if rows.empty:
        return "-"
    row = rows.iloc[0]
    # charon logs a packet's bytes (the UDP payload, any non-ESP marker included) and,
    # for a fragmented message, the reassembled message's: the same here.
    fragments = int(row["fragments"])
    size = int(row["ike_bytes"]) if fragments else int(row["udp_bytes"])
    return _cell(size, fragments)


def comparison(results: str | Path) -> str:
    """A Markdown table: each published figure beside pqike's message from ``results``."""
    messages = pd.read_csv(table_path(results, "messages.csv"))
    lines = [
        "# Message sizes at fragment size 1480: published strongSwan figures and pqike",
        "",
        f"Published: {SOURCE}. These are that source's figures, not measured here.",
        "pqike: this experiment's `messages.csv`, first repetition, bytes as charon logs",
        "them (the UDP payload of an unfragmented message, the reassembled message of a",
        "fragmented one; fragment counts in parentheses). Written by",
        "`python -m pqike.lab.published`.",
        "",
        "| message | published initiator / responder | pqike proposal | pqike initiator / "
        "responder | note |",
        "|---|---|---|---|---|",
    ]
    for p in PUBLISHED:
        theirs = f"{_cell(p.initiator, p.initiator_fragments)} / "
        theirs += _cell(p.responder, p.responder_fragments)
        if p.proposal is None:
            lines.append(f"| {p.exchange} {p.what} | {theirs} | - | - | {p.note} |")
            continue
        for proposal, note in ((p.proposal, p.note), *p.also):
            if proposal != p.proposal and proposal not in set(messages["proposal"]):
                continue  # an older run without this counterpart
            ours = _measured(messages, proposal, p.exchange, "initiator")
            ours += " / " + _measured(messages, proposal, p.exchange, "responder")
            lines.append(f"| {p.exchange} {p.what} | {theirs} | `{proposal}` | {ours} | {note} |")
    if any(p.what.startswith("Dilithium5") for p in PUBLISHED):
        lines += ["", dilithium5_vs_ml_dsa_87()]
    lines += [
        "",
        "Every proposal of the experiment (no published counterpart for most):",
        "",
        "| pqike proposal | exchange | initiator | responder |",
        "|---|---|---|---|",
    ]
    handshake = messages[messages["phase"] == "handshake"]
    for proposal in dict.fromkeys(handshake["proposal"]):
        for exchange in dict.fromkeys(handshake[handshake["proposal"] == proposal]["exchange"]):
            i = _measured(messages, proposal, exchange, "initiator")
            r = _measured(messages, proposal, exchange, "responder")
            lines.append(f"| `{proposal}` | {exchange} | {i} | {r} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write ``published.md`` into the results directory named by ``argv[0]``: the
    sizes-1480 table, or the comparison with the source its spec names (``published``)."""
    if len(argv) != 1:
        print("usage: python -m pqike.lab.published RESULTS_DIR", file=sys.stderr)
        return 2
    from .reproductions import write_published

    written = write_published(argv[0])
    if written is None:
        out = Path(argv[0]) / "published.md"
        out.write_text(comparison(argv[0]))
        written = out
    print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
