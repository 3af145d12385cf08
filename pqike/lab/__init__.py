"""The experiment runner: specs, peer pairs, simulated links, metrics, reports.

    from pqike.lab import load_spec, run_experiment, run_cell

    spec = load_spec("experiments/hybrid-vs-classical.toml")
    result = run_experiment(spec, repeat=5)          # nothing written without out=
    result.summary.query("metric == 'ip_bytes'")[["proposal", "profile", "median"]]
    one = run_cell(spec, spec.cells()[0])            # one configuration's tables

``run_experiment(spec, "results/x")`` writes the tables, plots and ``report.md`` there
and resumes an interrupted run.
"""

from .link import LinkProfile, LinkRun, simulate_handshake
from .metrics import summarize, summarize_phases
from .peers import (
    HandshakeCase,
    HandshakeRun,
    MemoryPair,
    PayloadRecord,
    PeerPair,
)
from .registry import default_pairs
from .relay import ImpairmentRelay
from .report import build_report
from .runner import (
    CellResult,
    ExperimentResult,
    Progress,
    check_pairs,
    handshake_seed,
    run_cell,
    run_experiment,
)
from .spec import (
    PAIR_KINDS,
    Cell,
    ExperimentSpec,
    NetworkProfile,
    ProposalSpec,
    describe_spec,
    load_spec,
    parse_spec,
)
from .strongswan_pairs import StrongSwanPair
from .udp_pair import UdpPair

__all__ = [
    "PAIR_KINDS",
    "Cell",
    "CellResult",
    "ExperimentResult",
    "ExperimentSpec",
    "HandshakeCase",
    "HandshakeRun",
    "ImpairmentRelay",
    "LinkProfile",
    "LinkRun",
    "MemoryPair",
    "NetworkProfile",
    "PayloadRecord",
    "PeerPair",
    "Progress",
    "ProposalSpec",
    "StrongSwanPair",
    "UdpPair",
    "build_report",
    "check_pairs",
    "default_pairs",
    "describe_spec",
    "handshake_seed",
    "load_spec",
    "parse_spec",
    "run_cell",
    "run_experiment",
    "simulate_handshake",
    "summarize",
    "summarize_phases",
]
