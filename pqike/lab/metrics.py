"""Metrics of a handshake as table rows, and the per-configuration summary.

Tidy tables come out of a run:

- handshakes: one row per handshake (outcome, counts, bytes at IKE/UDP/IP level, times);
- messages: one row per IKE message sent (retransmissions included);
- datagrams: one row per UDP datagram sent, with what the link did to it;
- payloads (when the spec asks for them): one row per part of each message;
- phases (when the spec has ``phases``): one row per handshake and phase of the SA's
  life (the handshake, then e.g. a Child SA rekey and an IKE SA rekey), each with its
  own bytes, datagrams, round trips, retransmissions, time and CPU.

Messages, datagrams, payloads and phases are keyed by ``proposal, pair, profile,
repetition`` like the handshakes they belong to; messages and datagrams also say their
``phase``, and the handshakes table counts the handshake phase alone. ``summarize``
turns handshakes into one row per configuration and metric: median, 5th/95th
percentile, and the mean with a 95 % Student-t confidence interval, over the
handshakes that established; ``summarize_phases`` does the same per phase, over the
phases that reached their goal.
``bootstrap_interval`` says whether two configurations differ by more than the noise.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .link import DatagramFate
from .peers import HandshakeRun
from .spec import Cell

KEY_COLUMNS = ("proposal", "pair", "profile", "repetition")

SUMMARY_METRICS: tuple[str, ...] = (
    "time_to_established_s",
    "sim_time_s",
    "sim_time_cpu_s",
    "wall_s",
    "ip_bytes",
    "udp_bytes",
    "ike_bytes",
    "datagrams",
    "fragments",
    "round_trips",
    "retransmissions",
    "cpu_initiator_s",
    "cpu_responder_s",
)
"""The handshake columns ``summarize`` describes."""

PHASE_METRICS: tuple[str, ...] = (
    "sim_time_s",
    "sim_time_cpu_s",
    "ip_bytes",
    "udp_bytes",
    "ike_bytes",
    "datagrams",
    "fragments",
    "round_trips",
    "retransmissions",
    "cpu_initiator_s",
    "cpu_responder_s",
)
"""The phase columns ``summarize_phases`` describes."""

HANDSHAKE_PHASE = "handshake"
"""The name of the first phase of every SA's life in ``phases.csv``."""

CONFIG_COLUMNS = (
    "proposal",
    "pair",
    "profile",
    "delay_ms",
    "jitter_ms",
    "loss_pct",
    "mtu",
    "fragment_size",
    "bandwidth_kbps",
    "ipv6",
)


COMPRESSED_SUFFIX = ".gz"
"""What ``compress_tables`` appends to a table's file name (``messages.csv.gz``)."""


def table_path(directory: str | Path, filename: str) -> Path:
    """``directory/filename``, or its gzip-compressed ``filename.gz`` when only that
    exists (a run with ``compress_tables``); pandas reads either."""
    plain = Path(directory) / filename
    packed = plain.with_name(plain.name + COMPRESSED_SUFFIX)
    return packed if not plain.exists() and packed.exists() else plain


def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV table at ``path`` (or its ``.gz``, ``table_path``); an empty frame when
    it is missing or empty (a run that wrote no such rows)."""
    path = Path(path)
    try:
        return pd.read_csv(table_path(path.parent, path.name))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object at ``path``; an empty dict when it is missing, unreadable or not
    an object (a run's metadata that an interrupted run may have left half written)."""
    try:
        value = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def handshake_row(
    experiment: str, cell: Cell, repetition: int, seed: int, run: HandshakeRun
) -> dict[str, Any]:
    """One row of ``handshakes.csv`` for ``run``: the handshake alone, whatever phases
    followed it (they are in ``phase_rows``)."""
    totals = run.trace.totals(phase=HANDSHAKE_PHASE)
    first_sends = [
        m for m in run.trace.messages if not m.retransmission and m.phase == HANDSHAKE_PHASE
    ]
    intermediate = sum(
        1 for m in first_sends if m.exchange == "IKE_INTERMEDIATE" and not m.is_response
    )
    fates = [
        f
        for f, d in zip(run.fates or [], run.trace.datagrams, strict=False)
        if d.phase == HANDSHAKE_PHASE
    ]
    handshake_datagrams = [d for d in run.trace.datagrams if d.phase == HANDSHAKE_PHASE]
    if run.simulated:
        to_established = run.sim_time_cpu if run.established else None
    else:
        to_established = run.wall if run.established else None
    return {
        "experiment": experiment,
        "cell": cell.id,
        "proposal": cell.proposal.name,
        "pair": cell.pair,
        "profile": cell.profile.name,
        "repetition": repetition,
        "seed": seed,
        **cell.profile.as_row(),
        "ike_proposal": cell.proposal.ike,
        "negotiated": run.negotiated,
        "established": run.established,
        "failure": run.failure,
        "intermediate_exchanges": intermediate,
        "messages": totals["messages"],
        "datagrams": totals["datagrams"],
        "fragments": totals["fragments"],
        "fragmented_messages": sum(1 for m in first_sends if m.fragments),
        "round_trips": totals["round_trips"],
        "ike_bytes": totals["ike_bytes"],
        "udp_bytes": totals["udp_bytes"],
        "ip_bytes": totals["ip_bytes"],
        "largest_datagram_ip": max((d.ip_bytes for d in handshake_datagrams), default=0),
        "retransmissions": totals["retransmissions"],
        "datagrams_lost": sum(1 for f in fates if f.fate == "lost"),
        "datagrams_mtu_dropped": sum(1 for f in fates if f.fate == "mtu"),
        "sim_time_s": _round(run.sim_time, 9),
        "sim_time_cpu_s": _round(run.sim_time_cpu, 7),
        "time_to_established_s": _round(to_established, 7),
        "wall_s": _round(run.wall, 7),
        "end_time_s": _round(run.end_time, 9),
        "cpu_initiator_s": _round(run.cpu_initiator, 7),
        "cpu_responder_s": _round(run.cpu_responder, 7),
        "simulated": run.simulated,
        # How the peers authenticated, and the CPU each spent signing its AUTH and
        # checking the peer's (chain and signature; empty for a PSK).
        "auth": cell.proposal.auth,
        "cert_chain": cell.proposal.chain if cell.proposal.auth != "psk" else None,
        "initiator_sign_cpu_s": _round(run.initiator_sign_cpu, 7),
        "initiator_verify_cpu_s": _round(run.initiator_verify_cpu, 7),
        "responder_sign_cpu_s": _round(run.responder_sign_cpu, 7),
        "responder_verify_cpu_s": _round(run.responder_verify_cpu, 7),
    }


def message_rows(cell: Cell, repetition: int, run: HandshakeRun) -> list[dict[str, Any]]:
    """Rows of ``messages.csv``: every message sent in ``run``, in order."""
    n_messages = len(run.trace.messages)
    cpu_times: Sequence[float | None] = run.message_cpu_times or [None] * n_messages
    return [
        {
            "proposal": cell.proposal.name,
            "pair": cell.pair,
            "profile": cell.profile.name,
            "repetition": repetition,
            "index": i,
            "phase": m.phase,
            "sender": m.sender,
            "exchange": m.exchange,
            "message_id": m.message_id,
            "is_response": m.is_response,
            "retransmission": m.retransmission,
            "payloads": m.payloads,
            "ike_bytes": m.ike_bytes,
            "udp_bytes": m.udp_bytes,
            "ip_bytes": m.ip_bytes,
            "datagrams": m.datagrams,
            "fragments": m.fragments,
            "sent_s": _round(m.time, 9),
            "sent_cpu_s": _round(cpu, 7),
        }
        for i, (m, cpu) in enumerate(zip(run.trace.messages, cpu_times, strict=True))
    ]


def datagram_rows(cell: Cell, repetition: int, run: HandshakeRun) -> list[dict[str, Any]]:
    """Rows of ``datagrams.csv``: every datagram sent in ``run`` and its fate."""
    fates: Sequence[DatagramFate | None] = run.fates or [None] * len(run.trace.datagrams)
    extra = run.datagram_columns or {}
    rows = []
    for i, (d, fate) in enumerate(zip(run.trace.datagrams, fates, strict=True)):
        rows.append(
            {
                "proposal": cell.proposal.name,
                "pair": cell.pair,
                "profile": cell.profile.name,
                "repetition": repetition,
                "index": i,
                "phase": d.phase,
                "sender": d.sender,
                "exchange": d.exchange,
                "message_id": d.message_id,
                "is_response": d.is_response,
                "retransmission": d.retransmission,
                "fragment": d.fragment,
                "ike_bytes": d.ike_bytes,
                "udp_bytes": d.udp_bytes,
                "ip_bytes": d.ip_bytes,
                "sent_s": _round(d.time, 9),
                "fate": fate.fate if fate else None,
                "arrival_s": _round(fate.arrival, 9) if fate else None,
                "arrival_cpu_s": _round(fate.arrival_cpu, 7) if fate else None,
                **{name: values[i] for name, values in extra.items()},
            }
        )
    return rows


def phase_rows(
    experiment: str,
    cell: Cell,
    repetition: int,
    seed: int,
    run: HandshakeRun,
    phases: Sequence[str],
) -> list[dict[str, Any]]:
    """Rows of ``phases.csv``: the handshake, then each of ``phases`` (the spec's), one row
    each, in order.

    Times are simulated seconds from the phase's command until both peers were idle
    again (``sim_time_s`` network-only, ``sim_time_cpu_s`` with each step's CPU added);
    bytes and counts are those of the phase's own datagrams, retransmissions included. A
    phase that could not run because an earlier one left no IKE SA gets a row with
    ``ran`` false and empty measurements, so every repetition has every phase.
    """
    fates: Sequence[DatagramFate | None] = run.fates or [None] * len(run.trace.datagrams)
    lost: dict[str, int] = {}
    for d, fate in zip(run.trace.datagrams, fates, strict=True):
        if fate is not None and fate.fate == "lost":
            lost[d.phase] = lost.get(d.phase, 0) + 1
    additional: dict[str, int] = {}
    for m in run.trace.messages:
        # RFC 9370: each additional key exchange is one IKE_INTERMEDIATE (handshake) or
        # IKE_FOLLOWUP_KE (rekey) request.
        if m.exchange in ("IKE_INTERMEDIATE", "IKE_FOLLOWUP_KE"):
            if not m.is_response and not m.retransmission:
                additional[m.phase] = additional.get(m.phase, 0) + 1
    measured = {p.index: p for p in run.phases or []}
    base = {
        "experiment": experiment,
        "cell": cell.id,
        "proposal": cell.proposal.name,
        "pair": cell.pair,
        "profile": cell.profile.name,
        "repetition": repetition,
        "seed": seed,
        **cell.profile.as_row(),
        "ike_proposal": cell.proposal.ike,
        "esp_proposal": cell.proposal.esp,
    }
    rows = []
    for index, name in enumerate([HANDSHAKE_PHASE, *phases]):
        p = measured.get(index)
        if p is None and index == 0:
            # A pair that measures no phases still has its handshake.
            t = run.trace.totals(phase=HANDSHAKE_PHASE)
            row = {
                "phase": name,
                "index": 0,
                "ran": True,
                "ok": run.established,
                "failure": run.failure,
                **{k: t[k] for k in _PHASE_COUNTS},
                "start_s": 0.0,
                "sim_time_s": _round(run.sim_time, 9),
                "sim_time_cpu_s": _round(run.sim_time_cpu, 7),
                "cpu_initiator_s": _round(run.cpu_initiator, 7),
                "cpu_responder_s": _round(run.cpu_responder, 7),
            }
        elif p is None:
            row = {
                "phase": name,
                "index": index,
                "ran": False,
                "ok": False,
                "failure": "not run: no IKE SA was left after an earlier phase",
                **dict.fromkeys(_PHASE_COUNTS),
                "start_s": None,
                "sim_time_s": None,
                "sim_time_cpu_s": None,
                "cpu_initiator_s": None,
                "cpu_responder_s": None,
            }
        else:
            row = {
                "phase": p.name,
                "index": p.index,
                "ran": True,
                "ok": p.ok,
                "failure": p.failure,
                **{k: p.totals[k] for k in _PHASE_COUNTS},
                "start_s": _round(p.start, 9),
                "sim_time_s": _round(p.duration, 9),
                "sim_time_cpu_s": _round(p.duration_cpu, 7),
                "cpu_initiator_s": _round(p.cpu_initiator, 7),
                "cpu_responder_s": _round(p.cpu_responder, 7),
            }
        ran = row["ran"]
        row["additional_exchanges"] = additional.get(name, 0) if ran else None
        row["datagrams_lost"] = lost.get(name, 0) if ran else None
        rows.append({**base, **row})
    return rows


_PHASE_COUNTS = (
    "messages",
    "datagrams",
    "fragments",
    "requests",
    "round_trips",
    "ike_bytes",
    "udp_bytes",
    "ip_bytes",
    "retransmissions",
)


def payload_rows(cell: Cell, repetition: int, run: HandshakeRun) -> list[dict[str, Any]]:
    """Rows of ``payloads.csv``: each part of each message of ``run`` (IKE header, every
    payload, SK overhead), when the pair recorded them; ``message`` is the message's
    ``index`` in ``messages.csv``."""
    if not run.payloads:
        return []
    messages = run.trace.messages
    rows = []
    position = 0
    previous = None
    for p in run.payloads:
        position = position + 1 if p.message == previous else 0
        previous = p.message
        m = messages[p.message]
        rows.append(
            {
                "proposal": cell.proposal.name,
                "pair": cell.pair,
                "profile": cell.profile.name,
                "repetition": repetition,
                "message": p.message,
                "sender": m.sender,
                "exchange": m.exchange,
                "message_id": m.message_id,
                "is_response": m.is_response,
                "retransmission": m.retransmission,
                "position": position,
                "payload": p.name,
                "bytes": p.size,
                "protected": p.protected,
            }
        )
    return rows


# --- statistics ----------------------------------------------------------------------


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with ``df`` degrees of freedom (t >= 0).

    The finite series of Abramowitz & Stegun 26.7.3 / 26.7.4 for integer ``df``.
    """
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    s = math.sin(theta)
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term = math.cos(theta)
        total = term
        for k in range(3, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term = 1.0
    total = 1.0
    for k in range(2, df - 1, 2):
        term *= c2 * (k - 1) / k
        total += term
    return s * total


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p >= 0.5) of Student's t with ``df`` degrees of freedom.

    Cached: a summary asks for the same few (p, df) pairs hundreds of times, and each
    answer is a 100-step bisection over a series of ``df`` terms."""
    if not 0.5 <= p < 1.0 or df < 1:
        raise ValueError("t_quantile needs 0.5 <= p < 1 and df >= 1")
    if df > 2000:  # the normal limit is within 1e-4 here
        return statistics.NormalDist().inv_cdf(p)
    mass = 2.0 * p - 1.0
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, df) < mass:
        high *= 2.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if _t_two_sided_mass(mid, df) < mass:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


_QUANTILES = (0.5, 0.05, 0.95)


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean with its 95 % t interval, median, p5, p95, min and max of ``values``."""
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(float(v)))
    n = len(xs)
    out = dict.fromkeys(
        ("mean", "ci95_low", "ci95_high", "median", "p5", "p95", "min", "max"), math.nan
    )
    out["n"] = n
    if n == 0:
        return out
    mean = statistics.fmean(xs)
    if n > 1:
        half = t_quantile(0.975, n - 1) * statistics.stdev(xs) / math.sqrt(n)
    else:
        half = math.nan
    # One numpy call for the three (linear interpolation, what Series.quantile does):
    # three pandas quantiles were half of a whole run's CPU for short cells.
    median, p5, p95 = np.quantile(np.asarray(xs), _QUANTILES)
    out.update(
        mean=mean,
        ci95_low=mean - half,
        ci95_high=mean + half,
        median=float(median),
        p5=float(p5),
        p95=float(p95),
        min=xs[0],
        max=xs[-1],
    )
    return out


BOOTSTRAP_RESAMPLES = 2000
"""Resamples ``bootstrap_interval`` draws by default."""


def bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    ratio: bool = False,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b`` (or over it, with ``ratio``) and its percentile
    bootstrap interval: ``(estimate, low, high)``.

    Each side is resampled with replacement on its own, ``resamples`` times, from a
    generator seeded with ``seed``, so the same tables always give the same interval.
    The difference is outside the noise when the interval excludes 0 (1 for a ratio).
    NaN when a side has no values (or, for a ratio, when ``b``'s mean is 0).
    """
    xs = np.array([float(v) for v in a if v is not None and not math.isnan(float(v))])
    ys = np.array([float(v) for v in b if v is not None and not math.isnan(float(v))])
    if not len(xs) or not len(ys) or (ratio and ys.mean() == 0):
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ma = xs[rng.integers(0, len(xs), (resamples, len(xs)))].mean(axis=1)
    mb = ys[rng.integers(0, len(ys), (resamples, len(ys)))].mean(axis=1)
    if ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = ma / mb
        estimate = xs.mean() / ys.mean()
    else:
        draws = ma - mb
        estimate = xs.mean() - ys.mean()
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return (float(estimate), float(low), float(high))


def outside_noise(interval: tuple[float, float, float], *, ratio: bool = False) -> bool:
    """Whether a ``bootstrap_interval`` excludes no difference (0, or 1 for a ratio)."""
    _, low, high = interval
    if math.isnan(low) or math.isnan(high):
        return False
    none = 1.0 if ratio else 0.0
    return low > none or high < none


def summarize(handshakes: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (proposal, pair, profile) and metric.

    Statistics are over the handshakes that established; ``handshakes``,
    ``established`` and ``success_rate`` say how many that is, ``retransmitted_share``
    how many of all the handshakes needed at least one retransmission.
    """
    return _summary(
        handshakes,
        CONFIG_COLUMNS,
        SUMMARY_METRICS,
        ok="established",
        counts=("handshakes", "established"),
    )


def summarize_phases(phases: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration, phase and metric of ``phases.csv``: n, mean with its
    95 % interval, median, p5, p95, min and max over the phases that reached their goal
    (``ok``); ``runs``, ``ok`` and ``success_rate`` say how many that is out of all the
    repetitions, ``retransmitted_share`` how many needed a retransmission."""
    return _summary(
        phases,
        (*CONFIG_COLUMNS, "phase", "index"),
        PHASE_METRICS,
        ok="ok",
        counts=("runs", "ok"),
    )


def _summary(
    frame: pd.DataFrame,
    keys: Sequence[str],
    metrics: Sequence[str],
    *,
    ok: str,
    counts: tuple[str, str],
) -> pd.DataFrame:
    columns = [
        *keys,
        *counts,
        "success_rate",
        "retransmitted_share",
        "metric",
        "n",
        "mean",
        "ci95_low",
        "ci95_high",
        "median",
        "p5",
        "p95",
        "min",
        "max",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    group_by = ["proposal", "pair", "profile", *(k for k in keys if k in ("phase", "index"))]
    rows = []
    for _, group in frame.groupby(group_by, sort=False):
        first = group.iloc[0]
        good = group[group[ok].astype(bool)]
        base = {c: first[c] for c in keys}
        base.update(
            {
                counts[0]: len(group),
                counts[1]: len(good),
                "success_rate": len(good) / len(group),
                "retransmitted_share": float((group["retransmissions"] > 0).mean())
                if "retransmissions" in group
                else math.nan,
            }
        )
        for metric in metrics:
            if metric not in good:
                continue
            stats = describe(good[metric].tolist())
            rows.append({**base, "metric": metric, **stats})
    return pd.DataFrame(rows, columns=columns)


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "HANDSHAKE_PHASE",
    "KEY_COLUMNS",
    "PHASE_METRICS",
    "SUMMARY_METRICS",
    "bootstrap_interval",
    "datagram_rows",
    "describe",
    "handshake_row",
    "message_rows",
    "outside_noise",
    "payload_rows",
    "phase_rows",
    "summarize",
    "summarize_phases",
    "t_quantile",
]
