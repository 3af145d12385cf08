"""Plots and ``report.md`` of an experiment, computed from its CSV tables alone.

``build_report(out)`` reads ``handshakes.csv`` and ``messages.csv`` (and ``run.json``,
``environment.json`` when present), rewrites ``summary.csv``, draws the PNG plots with
matplotlib's Agg backend and writes ``report.md``. Every number in the report is
computed here from the tables; nothing is typed by hand.

Every profile and every peer pair of the spec appears in every section that is about
profiles or pairs. Byte counts are taken at one *reference* profile, and the report says
which one and why: the loss- and jitter-free profile with the smallest one-way delay, or,
when no profile is free of loss and jitter, the least impaired one (there the bytes are
those of handshakes that needed no retransmission). Times are reported as the mean with
its 95 % confidence interval, the median, p5 and p95 and the share of handshakes that
needed a retransmission, in every profile. A difference between two proposals is called
a finding only when the 95 % bootstrap interval of the difference of their means
(``pqike.lab.metrics.bootstrap_interval``) excludes zero; otherwise the report says it is
within the noise.

When the spec has ``phases`` (rekeys after each handshake), ``phases.csv`` gives the
section *What post-quantum costs over an SA's life*: the handshake, one Child SA rekey
and one IKE SA rekey per proposal and profile, their cost per hour at strongSwan's
default rekey times, the overhead against the baseline with its interval, and the plot
``lifetime_costs.png``; ``phase_summary.csv`` is rewritten with ``summary.csv``.

When ``handshakes.csv`` holds more than one authentication kind (its ``auth`` column), the
section *Where the bytes go: key exchange against authentication* and its plot come from
``pqike.lab.auth_report``.

What the report calls *time to established* is ``time_to_established_s``: for
simulated pairs the virtual time until both peers are established with each step's
measured CPU added, for real peers the wall time. *Network-only* time is
``sim_time_s``, which is exact and repeatable for a seed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

from . import auth_report
from .compare import (
    log_agreement,
    log_findings,
    log_section,
    payload_differences,
    payload_findings,
    payload_section,
)
from .metrics import (
    BOOTSTRAP_RESAMPLES,
    HANDSHAKE_PHASE,
    KEY_COLUMNS,
    bootstrap_interval,
    describe,
    outside_noise,
    read_json,
    read_table,
    summarize,
    summarize_phases,
    table_path,
)
from .report_versions import versions_section

PLOTS = {
    "bytes": "bytes_per_exchange.png",
    "delay": "latency_vs_delay.png",
    "cdf": "latency_cdf.png",
    "overhead": "overhead_vs_baseline.png",
    "pairs": "pairs_compared.png",
    "lifetime": "lifetime_costs.png",
    "auth": auth_report.PLOT,
}
"""The PNG files ``build_report`` draws (a plot without data is left out)."""

_EXCHANGES = ("IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH", "INFORMATIONAL")
_ADDKE = re.compile(r"(?:^|-)ke(\d)_([a-z0-9]+)")
_PROFILE_COLUMNS = ("delay_ms", "jitter_ms", "loss_pct", "mtu", "fragment_size", "bandwidth_kbps")
_SHAPE = ("jitter_ms", "mtu", "fragment_size", "bandwidth_kbps", "ipv6")
_NOT_DELAY = ("jitter_ms", "loss_pct", "mtu", "fragment_size", "bandwidth_kbps", "ipv6")
_FRAGMENT_SHAPE = ("fragment_size", "mtu", "ipv6")
_TIME = "time_to_established_s"
_NON_ESP_MARKER = 4
# A percentile bootstrap of fewer handshakes than this per side is no test of anything.
_MIN_SAMPLE = 10
_UDP_HEADER = 8
# Values spanning more than this factor get a logarithmic axis.
_LOG_SPAN = 10.0
# Line styles and markers cycle independently of the colours, so two proposals whose lines
# coincide still look different.
_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

CHILD_REKEY_TIME_S = 3600.0
"""strongSwan's default ``children.<child>.rekey_time`` (1 h): Child SA rekeys per hour."""
IKE_REKEY_TIME_S = 14400.0
"""strongSwan's default IKE ``rekey_time`` (4 h); the handshake is amortised over it too."""
# What the per-hour figures add up, per repetition: the same run's phases.
_HOURLY = ("ip_bytes", "datagrams", "cpu_initiator_s", "cpu_responder_s")


@dataclass
class _Data:
    hs_all: pd.DataFrame
    hs: pd.DataFrame
    ok: pd.DataFrame
    msgs: pd.DataFrame
    meta: dict[str, Any]
    env: dict[str, Any]
    pair: str
    """The pair the per-profile sections are about (``memory`` when the spec has it)."""
    proposals: list[str]
    profiles: pd.DataFrame
    """Every profile of the run (any pair), indexed by name, in spec order."""
    names: list[str]
    """The profiles ``pair`` ran, in spec order."""
    baseline: str
    highlight: str | None
    ref: str
    ref_reason: str
    """Why ``ref`` is the reference profile (one clause)."""
    delay_groups: list[tuple[str, list[str]]]
    """Profiles that differ only in one-way delay: (what they share, names by delay)."""
    shape_groups: list[tuple[tuple, list[str]]]
    """Profiles with the same fragment size, MTU and IP version: (shape, names)."""
    datagrams: pd.DataFrame
    payloads: pd.DataFrame
    diffs: pd.DataFrame
    """Payload differences of each pair against pqike <-> pqike (``pqike.lab.compare``)."""
    diff_reference: str | None
    agreement: pd.DataFrame
    """Captured datagram sizes against the peers' own logs."""
    phases: pd.DataFrame
    """``phases.csv`` of ``pair`` (empty when the spec has no phases)."""
    phase_msgs: pd.DataFrame
    """The messages of ``pair`` sent after the handshake, in the phases."""
    every_message: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``messages.csv`` whole: every pair and phase."""
    phases_all: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``phases.csv`` whole: every pair."""
    disjoint: bool = False
    """Each proposal ran on one pair only (IKEv1 proposals on ``strongswan-ikev1``, the
    others on IKEv2 pairs): ``pair`` names them all and the sections read every pair."""


# --- entry point --------------------------------------------------------------------


def build_report(
    out: str | Path,
    *,
    workers: int = 1,
    summary: pd.DataFrame | None = None,
    pool: Executor | None = None,
) -> Path:
    """Rebuild ``summary.csv``, the plots and ``report.md`` in ``out``; return the report.

    Needs ``handshakes.csv`` (and ``messages.csv`` for the per-exchange numbers) in
    ``out``; raises ``FileNotFoundError`` when the handshakes table is missing. With
    ``workers`` above 1 the plots are drawn in that many processes (or on ``pool``, the
    caller's started workers) while this one writes the tables and the text;
    ``summary`` is ``summarize`` of the handshakes when the caller has it.
    """
    # Imported here: the package's import must leave pqike.lab.published unimported, so
    # that `python -m pqike.lab.published` runs it cleanly as __main__.
    from .reproductions import write_published

    out = Path(out)
    if not table_path(out, "handshakes.csv").exists() and (out / "report.md").exists():
        # A grid kept without its per-handshake table: what can be rebuilt then is the
        # comparison with its published source (from its own table).
        published = write_published(out)
        if published is not None:
            return _replace_published(out / "report.md", published)
    keys = [key for key, _ in _PLOTTERS]
    with contextlib.ExitStack() as stack:
        # The plots are the slow part of a report, independent of each other and of the
        # tables: with workers they are drawn there while this process writes the rest.
        futures = None
        if pool is None and workers > 1:
            from .pool import worker_pool

            pool = stack.enter_context(worker_pool(min(workers, len(keys))))
        if pool is not None:
            futures = [pool.submit(_draw_in_worker, str(out), key) for key in keys]
        data = _load(out)
        (summarize(data.hs_all) if summary is None else summary).to_csv(
            out / "summary.csv", index=False
        )
        phases_all = read_table(out / "phases.csv")
        if not phases_all.empty:
            summarize_phases(phases_all).to_csv(out / "phase_summary.csv", index=False)
        if futures is None:
            done = [_draw(data, out, key) for key in keys]
            text = None
        else:
            # The text needs to know only which plots exist: it is written now, while
            # the workers draw, as if every plot it mentions were drawn, and written
            # again below in the rare case that one it mentions was not.
            guess = _PlotsGuess({key: PLOTS[key] for key in keys})
            text = _markdown(data, guess)
            done = [future.result() for future in futures]
    drawn = {key: PLOTS[key] if ok else None for key, ok in zip(keys, done, strict=True)}
    if text is None or not guess.holds_for(drawn):
        text = _markdown(data, drawn)
    report = out / "report.md"
    report.write_text(text, "utf-8")
    published = write_published(out)
    if published is not None:
        _replace_published(report, published)
    return report


class _PlotsGuess(dict[str, str | None]):
    """The plots the text is written with before they are drawn, noting what the text
    asks of them: the text depends on the plots only through those answers, so it is the
    text of the plots actually drawn when every answer given agrees with them."""

    def __init__(self, guess: dict[str, str | None]) -> None:
        super().__init__(guess)
        self.asked: set[str] = set()
        self.asked_all = False

    def __getitem__(self, key: str) -> str | None:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None, /) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    # Anything that reads the whole mapping makes every plot count as asked.
    def __iter__(self) -> Iterator[str]:
        self.asked_all = True
        return super().__iter__()

    def keys(self) -> Any:
        self.asked_all = True
        return super().keys()

    def values(self) -> Any:
        self.asked_all = True
        return super().values()

    def items(self) -> Any:
        self.asked_all = True
        return super().items()

    def holds_for(self, drawn: dict[str, str | None]) -> bool:
        """Whether every answer given agrees with ``drawn``."""
        asked = set(dict.keys(self)) if self.asked_all else self.asked
        return all(dict.get(self, key) == drawn.get(key) for key in asked)


_PUBLISHED_HEADING = "## Beside the published numbers"


def _replace_published(report: Path, published: Path) -> Path:
    """End ``report`` with ``published`` (headings one level down), in place of the
    comparison it ended with: a reproduction's report closes with its source's numbers."""
    text = report.read_text("utf-8")
    text = text.split(f"\n{_PUBLISHED_HEADING}", 1)[0].rstrip("\n")
    body = re.sub(r"^#", "##", published.read_text("utf-8"), flags=re.MULTILINE)
    report.write_text(f"{text}\n\n{body}", "utf-8")
    return report


def _draw(data: _Data, out: Path, key: str) -> bool:
    """Draw plot ``key`` into ``out``; remove a stale file when there is nothing to draw."""
    path = out / PLOTS[key]
    ok = dict(_PLOTTERS)[key](data, path)
    if not ok and path.exists():
        path.unlink()
    return ok


def _draw_in_worker(out: str, key: str) -> bool:
    return _draw(_loaded(out), Path(out), key)


@functools.lru_cache(maxsize=1)
def _loaded(out: str) -> _Data:
    # A worker that draws several plots of one report reads the tables once.
    return _load(Path(out))


_MESSAGE_COLUMNS = (
    *KEY_COLUMNS,
    "index",
    "phase",
    "sender",
    "exchange",
    "message_id",
    "is_response",
    "retransmission",
    "payloads",
    "ike_bytes",
    "udp_bytes",
    "ip_bytes",
    "datagrams",
    "fragments",
    "sent_s",
    "sent_cpu_s",
)
"""The columns of ``messages.csv`` (``pqike.lab.metrics.message_rows``)."""


def _load(out: Path) -> _Data:
    hs_all = pd.read_csv(table_path(out, "handshakes.csv"))
    if hs_all.empty:
        raise ValueError(f"{out / 'handshakes.csv'} has no handshakes")
    hs_all["established"] = hs_all["established"].astype(bool)
    # The sections about the handshake read its messages alone; rekeys after it (when
    # the spec has phases) are in their own section, from phases.csv.
    every_message = read_table(out / "messages.csv")
    if every_message.empty:
        # A spec with record_messages = false has no messages table: the sections that
        # read messages find none and say what they can from handshakes.csv.
        every_message = pd.DataFrame(columns=list(_MESSAGE_COLUMNS))
    msgs_all = _handshake_only(every_message)
    meta = read_json(out / "run.json")
    env = read_json(out / "environment.json")
    pairs = list(dict.fromkeys(hs_all["pair"]))
    pair = "memory" if "memory" in pairs else pairs[0]
    # An IKEv1 pair beside IKEv2 pairs runs proposals of its own: with every proposal on
    # one pair, the sections compare proposals across pairs.
    disjoint = len(pairs) > 1 and int(hs_all.groupby("proposal")["pair"].nunique().max()) == 1
    if disjoint:
        pair = ", ".join(pairs)
        hs_all["_pair"] = pair
    column = "_pair" if disjoint else "pair"
    if disjoint:
        for table in (msgs_all, every_message):
            if not table.empty:
                table["_pair"] = pair
    hs = hs_all[hs_all[column] == pair].copy()
    if not msgs_all.empty:
        msgs = msgs_all[msgs_all[column] == pair].copy()
    else:
        msgs = msgs_all
    proposals = list(dict.fromkeys(hs["proposal"]))
    profiles = hs_all.groupby("profile", sort=False)[[*_PROFILE_COLUMNS, "ipv6"]].first()
    order = [p["name"] for p in meta.get("profiles", []) if isinstance(p, dict)]
    if set(order) >= set(profiles.index):
        profiles = profiles.loc[[n for n in order if n in profiles.index]]
    names = [str(n) for n in profiles.index if n in set(hs["profile"])]
    baseline = meta.get("baseline")
    if baseline not in proposals:
        baseline = proposals[0]
    highlight = meta.get("highlight")
    if highlight not in proposals:
        highlight = next((p for p in proposals if p != baseline), None)
    ref, reason = _reference(profiles.loc[names])
    datagrams = _handshake_only(read_table(out / "datagrams.csv"))
    payloads = read_table(out / "payloads.csv")
    phases_all = read_table(out / "phases.csv")
    phases = phases_all
    phase_msgs = every_message.iloc[0:0]
    if not phases.empty:
        phases = phases[phases["pair"].isin(pairs) if disjoint else phases["pair"] == pair]
        phases = phases.copy()
        phases["ok"] = phases["ok"].astype(bool)
        if "phase" in every_message:
            phase_msgs = every_message[
                (every_message[column] == pair) & (every_message["phase"] != HANDSHAKE_PHASE)
            ]
    present = set(payloads["pair"]) if not payloads.empty else set()
    diff_reference = next((p for p in ("memory", "udp") if p in present), None)
    diffs = (
        payload_differences(payloads, msgs_all, hs_all, reference=diff_reference, profile=ref)
        if diff_reference is not None
        else pd.DataFrame()
    )
    return _Data(
        hs_all,
        hs,
        hs[hs["established"]],
        msgs,
        meta,
        env,
        pair,
        proposals,
        profiles,
        names,
        baseline,
        highlight,
        ref,
        reason,
        _delay_groups(profiles.loc[names]),
        _shape_groups(profiles.loc[names]),
        datagrams,
        payloads,
        diffs,
        diff_reference,
        log_agreement(datagrams),
        phases,
        phase_msgs,
        every_message,
        phases_all,
        disjoint,
    )


def _handshake_only(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the handshake phase (all rows of tables without a ``phase`` column)."""
    if table.empty or "phase" not in table:
        return table
    return table[table["phase"] == HANDSHAKE_PHASE].reset_index(drop=True)


def _clean(profiles: pd.DataFrame) -> pd.DataFrame:
    return profiles[
        (profiles["loss_pct"] == 0)
        & (profiles["jitter_ms"] == 0)
        & (profiles["bandwidth_kbps"].isna())
    ]


def _key(row: pd.Series, columns: Sequence[str]) -> tuple:
    return tuple(None if pd.isna(row[c]) else row[c] for c in columns)


def _reference(profiles: pd.DataFrame) -> tuple[str, str]:
    """The profile bytes are counted at, and why it is that one.

    A loss- and jitter-free profile (without a rate limit) when there is one: the
    smallest one-way delay among those of the most common shape. Otherwise the least
    impaired profile: least loss, then least jitter, then no rate limit, then the smallest
    delay.
    """
    clean = _clean(profiles)
    if not clean.empty:
        shapes = [_key(row, _SHAPE) for _, row in clean.iterrows()]
        common = max(shapes, key=shapes.count)
        same = clean[[s == common for s in shapes]].sort_values("delay_ms", kind="stable")
        why = "the loss- and jitter-free profile with the smallest one-way delay"
        if len(set(shapes)) > 1:
            why += " among those of the most common MTU and fragment size"
        return str(same.index[0]), (
            why + "; no handshake there needs a retransmission, so its bytes and round trips "
            "are the protocol's own"
        )
    ranked = profiles.assign(_limited=profiles["bandwidth_kbps"].notna()).sort_values(
        ["loss_pct", "jitter_ms", "_limited", "delay_ms"], kind="stable"
    )
    return str(ranked.index[0]), (
        "the least impaired profile (least loss, then least jitter, then the smallest "
        "one-way delay), because no profile is free of loss and jitter; its bytes are "
        "counted over the handshakes that needed no retransmission"
    )


def _groups(profiles: pd.DataFrame, columns: Sequence[str]) -> list[tuple[tuple, list[str]]]:
    groups: dict[tuple, list[str]] = {}
    for name, row in profiles.iterrows():
        groups.setdefault(_key(row, columns), []).append(str(name))
    return list(groups.items())


def _delay_groups(profiles: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Profiles equal but for the one-way delay, each group sorted by delay."""
    out = []
    for _, names in _groups(profiles, _NOT_DELAY):
        names = sorted(names, key=lambda n: float(profiles.loc[n, "delay_ms"]))
        label = ", ".join(_profile_text(profiles, names[0]).split(", ")[1:])
        p = profiles.loc[names[0]]
        if not p["loss_pct"] and not p["jitter_ms"] and pd.isna(p["bandwidth_kbps"]):
            label = "no loss or jitter, " + label
        out.append((label, names))
    return out


def _shape_groups(profiles: pd.DataFrame) -> list[tuple[tuple, list[str]]]:
    return _groups(profiles, _FRAGMENT_SHAPE)


def _impaired(profiles: pd.DataFrame, name: str) -> bool:
    p = profiles.loc[name]
    return bool(p["loss_pct"] or p["jitter_ms"])


# --- small helpers -------------------------------------------------------------------


def _median(frame: pd.DataFrame, column: str) -> float:
    values = frame[column].dropna() if column in frame else pd.Series(dtype=float)
    return float(values.median()) if len(values) else math.nan


def _at(frame: pd.DataFrame, proposal: str, profile: str) -> pd.DataFrame:
    return frame[(frame["proposal"] == proposal) & (frame["profile"] == profile)]


def _time(seconds: float) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    if abs(seconds) >= 10:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1:
        return f"{seconds:.3f} s"
    return f"{seconds * 1000:.1f} ms"


def _bytes(n: float) -> str:
    return "n/a" if n is None or math.isnan(n) else f"{round(n):,}"


def _pct(ratio: float) -> str:
    return "n/a" if ratio is None or math.isnan(ratio) else f"{ratio * 100:+.0f} %"


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole}" if whole else "none"


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}"


def _profile_text(profiles: pd.DataFrame, name: str) -> str:
    p = profiles.loc[name]
    parts = [f"{_num(p['delay_ms'])} ms one-way delay"]
    if p["jitter_ms"]:
        parts.append(f"±{_num(p['jitter_ms'])} ms jitter")
    if p["loss_pct"]:
        parts.append(f"{_num(p['loss_pct'])} % loss")
    if not pd.isna(p["bandwidth_kbps"]):
        parts.append(f"{_num(p['bandwidth_kbps'])} kbit/s")
    parts.append(f"MTU {int(p['mtu'])}")
    parts.append(f"fragment size {int(p['fragment_size'])}")
    if bool(p["ipv6"]):
        parts.append("IPv6")
    return ", ".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _rounds_of(negotiated: Any) -> list[str]:
    """Methods of the additional key exchanges in round order, from a negotiated suite."""
    if not isinstance(negotiated, str):
        return []
    found = sorted((int(n), m) for n, m in _ADDKE.findall(negotiated) if m != "none")
    return [m for _, m in found]


def _clean_handshakes(data: _Data, profile: str) -> pd.DataFrame:
    """Established handshakes at ``profile`` without a retransmission (or all established)."""
    ok = data.ok[data.ok["profile"] == profile]
    clean = ok[ok["retransmissions"] == 0]
    return clean if not clean.empty else ok


def _messages_of(data: _Data, handshakes: pd.DataFrame) -> pd.DataFrame:
    if data.msgs.empty or handshakes.empty:
        return data.msgs.iloc[0:0]
    keys = handshakes[["proposal", "profile", "repetition"]]
    return data.msgs.merge(keys, on=["proposal", "profile", "repetition"])


def _first_handshake_messages(data: _Data, proposal: str, profile: str) -> pd.DataFrame:
    """First sends of one clean handshake of ``proposal`` at ``profile``."""
    hs = _clean_handshakes(data, profile)
    hs = hs[hs["proposal"] == proposal]
    if hs.empty:
        hs = data.hs[(data.hs["profile"] == profile) & (data.hs["proposal"] == proposal)]
    if hs.empty or data.msgs.empty:
        return data.msgs.iloc[0:0]
    m = _messages_of(data, hs.iloc[[0]])
    return m[~m["retransmission"].astype(bool)]


def _names_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _interval(stats: dict[str, float], fmt=None) -> str:
    """``mean [low, high]`` of a ``describe`` result."""
    fmt = fmt or _time
    if math.isnan(stats["ci95_low"]):
        return fmt(stats["mean"])
    return f"{fmt(stats['mean'])} [{fmt(stats['ci95_low'])}, {fmt(stats['ci95_high'])}]"


def _stats(data: _Data, proposal: str, profile: str, hs: pd.DataFrame | None = None) -> dict:
    """Time to established at one configuration: ``describe`` plus outcome counts."""
    at = _at(data.hs if hs is None else hs, proposal, profile)
    ok = at[at["established"]]
    out: dict[str, Any] = describe(ok[_TIME].tolist() if _TIME in ok else [])
    out.update(
        handshakes=len(at),
        established=len(ok),
        retransmitted=int((at["retransmissions"] > 0).sum()),
        mean_retransmissions=float(at["retransmissions"].mean()) if len(at) else math.nan,
        lost=float(at["datagrams_lost"].mean()) if "datagrams_lost" in at and len(at) else math.nan,
        network=_median(ok, "sim_time_s"),
        network_mean=float(ok["sim_time_s"].mean()) if len(ok) else math.nan,
        ip_bytes_mean=float(ok["ip_bytes"].mean()) if len(ok) else math.nan,
    )
    return out


def _difference(
    data: _Data, a: str, b: str, profile: str, metric: str = _TIME, *, ratio: bool = False
) -> tuple[float, float, float]:
    """Bootstrap interval of mean(a) - mean(b) (or a / b) at ``profile``."""
    xa = _at(data.ok, a, profile)
    xb = _at(data.ok, b, profile)
    return bootstrap_interval(xa[metric].tolist(), xb[metric].tolist(), ratio=ratio)


def _verdict(
    interval: tuple[float, float, float], counts: Sequence[int], *, ratio: bool = False
) -> str:
    """``outside the noise`` / ``within the noise``; with fewer than ``_MIN_SAMPLE``
    handshakes on a side the bootstrap cannot tell, and the verdict says so."""
    if math.isnan(interval[1]):
        return "n/a"
    if min(counts) < _MIN_SAMPLE:
        return f"too few handshakes to tell (fewer than {_MIN_SAMPLE})"
    return "outside the noise" if outside_noise(interval, ratio=ratio) else "within the noise"


def _counts(data: _Data, a: str, b: str, profile: str) -> tuple[int, int]:
    return len(_at(data.ok, a, profile)), len(_at(data.ok, b, profile))


def _fixed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _signed_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return ("+" if seconds >= 0 else "-") + _time(abs(seconds))


def _ratio_text(interval: tuple[float, float, float]) -> str:
    est, low, high = interval
    if math.isnan(est):
        return "n/a"
    return f"{_pct(est - 1)} [{_pct(low - 1)}, {_pct(high - 1)}]"


def _fragment_limit(fragment_size: int, ipv6: bool) -> int:
    """Largest IKE message sent unfragmented at ``fragment_size``: IP and UDP headers and
    the 4-byte non-ESP marker come off, the marker even on port 500 (as strongSwan does,
    so one fragment size fits either port)."""
    return int(fragment_size) - (40 if ipv6 else 20) - _UDP_HEADER - _NON_ESP_MARKER


def _log_axis(values: Sequence[float]) -> bool:
    finite = [v for v in values if v is not None and not math.isnan(v) and v > 0]
    return bool(finite) and max(finite) / min(finite) > _LOG_SPAN


# --- analyses ------------------------------------------------------------------------


def _group_reference(data: _Data, names: Sequence[str]) -> str:
    """Where a group of profiles' bytes are counted: the reference profile if it is in the
    group, else the group's least impaired profile."""
    if data.ref in names:
        return data.ref
    return _reference(data.profiles.loc[list(names)])[0]


def _bytes_per_exchange(data: _Data, profile: str | None = None) -> pd.DataFrame:
    """Median IP bytes per exchange and proposal at ``profile`` (default: the reference),
    over the handshakes that needed no retransmission."""
    m = _messages_of(data, _clean_handshakes(data, profile or data.ref))
    if m.empty:
        return pd.DataFrame()
    per = m.groupby(["proposal", "repetition", "exchange"], sort=False)["ip_bytes"].sum()
    med = per.groupby(["proposal", "exchange"], sort=False).median().unstack("exchange")
    cols = [e for e in _EXCHANGES if e in med.columns]
    cols += [c for c in med.columns if c not in cols]
    rows = [p for p in data.proposals if p in med.index]
    return med.loc[rows, cols].fillna(0)


def _config_rows(data: _Data) -> list[list[Any]]:
    rows = []
    for p in data.proposals:
        for prof in data.names:
            at = _at(data.hs, p, prof)
            ok = at[at["established"]]
            neg = ok["negotiated"].iloc[0] if len(ok) else "-"
            cpu = ok["cpu_initiator_s"] + ok["cpu_responder_s"]
            rows.append(
                [
                    p,
                    f"`{prof}`",
                    f"`{neg}`",
                    _num(_median(ok, "round_trips")),
                    _num(_median(ok, "datagrams")),
                    _num(_median(ok, "fragments")),
                    _bytes(_median(ok, "ike_bytes")),
                    _bytes(_median(ok, "ip_bytes")),
                    _bytes(float(ok["ip_bytes"].mean()) if len(ok) else math.nan),
                    _bytes(_median(ok, "largest_datagram_ip")),
                    _time(float(cpu.median()) if len(cpu.dropna()) else math.nan),
                    _share(int((at["retransmissions"] > 0).sum()), len(at)),
                    _share(len(ok), len(at)),
                ]
            )
    return rows


def _round_costs(data: _Data) -> pd.DataFrame:
    """IP bytes and datagrams of each IKE_INTERMEDIATE round, by key exchange method."""
    rows = []
    for p in data.proposals:
        ok = _at(data.ok, p, data.ref)
        if ok.empty:
            continue
        methods = _rounds_of(ok["negotiated"].iloc[0])
        m = _first_handshake_messages(data, p, data.ref)
        inter = m[m["exchange"] == "IKE_INTERMEDIATE"]
        for k, (_, g) in enumerate(inter.groupby("message_id", sort=True)):
            if k >= len(methods):
                break
            rows.append(
                {
                    "proposal": p,
                    "round": k + 1,
                    "method": methods[k],
                    "ip_bytes": int(g["ip_bytes"].sum()),
                    "datagrams": int(g["datagrams"].sum()),
                }
            )
    return pd.DataFrame(rows, columns=["proposal", "round", "method", "ip_bytes", "datagrams"])


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (NaN when xs do not vary)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if not (math.isnan(x) or math.isnan(y))]
    if len({x for x, _ in pts}) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    num = sum((x - mx) * (y - my) for x, y in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return num / den


def _round_latency(data: _Data) -> list[dict[str, Any]]:
    """Per profile: time added per round trip, fitted over the proposals."""
    out = []
    for prof in data.names:
        xs, ys_net, ys_cpu = [], [], []
        for p in data.proposals:
            ok = _at(data.ok, p, prof)
            if ok.empty:
                continue
            xs.append(_median(ok, "round_trips"))
            ys_net.append(_median(ok, "sim_time_s"))
            ys_cpu.append(_median(ok, _TIME))
        out.append(
            {
                "profile": prof,
                "delay_ms": float(data.profiles.loc[prof, "delay_ms"]),
                "network": _slope(xs, ys_net),
                "with_cpu": _slope(xs, ys_cpu),
                "proposals": len(xs),
            }
        )
    return out


def _fragmentation(data: _Data) -> list[dict[str, Any]]:
    """Per proposal and (fragment size, MTU, IP version): which messages fragment, sizes,
    success over every profile of that shape."""
    out = []
    for (frag, mtu, ipv6), names in data.shape_groups:
        where = _group_reference(data, names)
        for p in data.proposals:
            m = _first_handshake_messages(data, p, where)
            hs = data.hs[(data.hs["proposal"] == p) & (data.hs["profile"].isin(names))]
            fragmented = [
                f"{row.exchange} {'response' if row.is_response else 'request'} "
                f"({int(row.fragments)})"
                for row in m.itertuples()
                if row.fragments
            ]
            protected = m[m["exchange"] != "IKE_SA_INIT"]
            init = m[(m["exchange"] == "IKE_SA_INIT") & (~m["is_response"].astype(bool))]
            init_resp = m[(m["exchange"] == "IKE_SA_INIT") & (m["is_response"].astype(bool))]
            out.append(
                {
                    "proposal": p,
                    "profiles": names,
                    "fragment_size": int(frag),
                    "mtu": int(mtu),
                    "ipv6": bool(ipv6),
                    "limit": _fragment_limit(int(frag), bool(ipv6)),
                    "fragmented": fragmented,
                    "largest": _median(hs[hs["established"]], "largest_datagram_ip"),
                    "largest_message": float(protected["ike_bytes"].max())
                    if len(protected)
                    else math.nan,
                    "sa_init_request": float(init["ip_bytes"].max()) if len(init) else math.nan,
                    "sa_init_response": float(init_resp["ip_bytes"].max())
                    if len(init_resp)
                    else math.nan,
                    "established": int(hs["established"].sum()),
                    "handshakes": len(hs),
                    "mtu_drops": int(hs["datagrams_mtu_dropped"].sum()),
                }
            )
    return out


# --- plots ---------------------------------------------------------------------------


def _rotate(ax: Any) -> None:
    for label in ax.get_xticklabels():
        label.set_rotation(25)
        label.set_horizontalalignment("right")
        label.set_fontsize(8)


def _plot_bytes(data: _Data, path: Path) -> bool:
    """IP bytes of each exchange and of the whole handshake per proposal, grouped bars with
    the p5-p95 range over the handshakes; a log axis when the sizes span decades."""
    table = _bytes_per_exchange(data)
    if table.empty:
        return False
    m = _messages_of(data, _clean_handshakes(data, data.ref))
    per = m.groupby(["proposal", "repetition", "exchange"], sort=False)["ip_bytes"].sum()
    totals = per.groupby(["proposal", "repetition"], sort=False).sum()
    columns = [c for c in table.columns if (table[c] > 0).any()]
    series = [*columns, "total"]
    values = {c: table[c] for c in columns}
    values["total"] = table.sum(axis=1)
    log = _log_axis([v for s in values.values() for v in s])
    n = len(table)
    fig, ax = plt.subplots(figsize=(9.5, max(3.2, 0.32 * n * len(series) / 2 + 1.6)))
    height = 0.8 / len(series)
    for j, name in enumerate(series):
        ys = [i + (j - (len(series) - 1) / 2) * height for i in range(n)]
        low, high = [], []
        for p in table.index:
            if name == "total":
                draws = (
                    totals.xs(p, level="proposal") if p in totals.index.get_level_values(0) else []
                )
            else:
                draws = (
                    per.xs((p, name), level=("proposal", "exchange"))
                    if ((p, name) in per.droplevel("repetition").index)
                    else []
                )
            d = describe(list(draws))
            v = values[name][p]
            low.append(max(0.0, v - d["p5"]) if d["n"] else 0.0)
            high.append(max(0.0, d["p95"] - v) if d["n"] else 0.0)
        ax.barh(
            ys,
            values[name],
            height=height,
            label=name,
            xerr=[low, high],
            capsize=2,
            error_kw={"elinewidth": 0.8},
            color="black" if name == "total" else None,
            alpha=0.85 if name == "total" else 1.0,
        )
    for i, total in enumerate(values["total"]):
        ax.text(
            total * (1.08 if log else 1.01),
            i + (len(series) - 1) / 2 * height,
            f"{round(total):,}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(range(n), list(table.index), fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(right=max(values["total"]) * 4)
    else:
        ax.set_xlim(right=max(values["total"]) * 1.12)
    ax.set_xlabel(
        "IP bytes, both directions" + (" (log scale)" if log else "") + "; bars: median, "
        "whiskers: p5-p95 over the handshakes"
    )
    ax.set_title(
        f"Bytes per exchange at `{data.ref}` ({_profile_text(data.profiles, data.ref)})",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(series), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _style(index: int) -> dict[str, Any]:
    return {
        "linestyle": _STYLES[index % len(_STYLES)],
        "marker": _MARKERS[index % len(_MARKERS)],
    }


def _plot_delay(data: _Data, path: Path) -> bool:
    """Mean time to established against one-way delay, one panel per group of profiles
    that differ only in delay (groups with at least two delays).

    Delays sit at evenly spaced positions and each proposal is shifted a little sideways,
    so lines with equal values stay apart; thick bars are the 95 % interval of the mean,
    thin ones p5-p95.
    """
    groups = [(label, names) for label, names in data.delay_groups if len(names) > 1]
    if not groups:
        return False
    fig, axes = plt.subplots(
        1, len(groups), figsize=(max(8.0, 5.6 * len(groups)), 4.8), squeeze=False
    )
    # A small sideways shift: enough to keep equal points apart, not to mislead the eye.
    width = 0.32 / max(1, len(data.proposals))
    for ax, (label, names) in zip(axes.flat, groups, strict=True):
        everything = []
        for k, p in enumerate(data.proposals):
            xs, mean, ci, spread = [], [], [[], []], [[], []]
            for i, prof in enumerate(names):
                s = describe(_at(data.ok, p, prof)[_TIME].tolist())
                if not s["n"]:
                    continue
                xs.append(i + (k - (len(data.proposals) - 1) / 2) * width)
                mean.append(s["mean"] * 1000)
                lo = s["ci95_low"] if not math.isnan(s["ci95_low"]) else s["mean"]
                hi = s["ci95_high"] if not math.isnan(s["ci95_high"]) else s["mean"]
                ci[0].append((s["mean"] - lo) * 1000)
                ci[1].append((hi - s["mean"]) * 1000)
                spread[0].append(max(0.0, s["mean"] - s["p5"]) * 1000)
                spread[1].append(max(0.0, s["p95"] - s["mean"]) * 1000)
                everything += [s["p5"] * 1000, s["p95"] * 1000]
            if not xs:
                continue
            style = _style(k)
            line = ax.errorbar(
                xs,
                mean,
                yerr=ci,
                capsize=4,
                elinewidth=2.2,
                markersize=5,
                label=p,
                **style,
            )
            ax.errorbar(
                xs,
                mean,
                yerr=spread,
                fmt="none",
                ecolor=line[0].get_color(),
                elinewidth=0.8,
                alpha=0.6,
                capsize=1.5,
            )
        ax.set_xticks(
            range(len(names)),
            [f"{_num(data.profiles.loc[n, 'delay_ms'])} ms" for n in names],
        )
        ax.set_xlabel("one-way delay")
        if _log_axis(everything):
            ax.set_yscale("log")
        ax.set_ylabel("time to established (ms)")
        ax.set_title(label, fontsize=8)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    fig.suptitle(
        "Mean time to established (thick bars: 95 % CI of the mean; thin: p5-p95)", fontsize=9
    )
    rows = math.ceil(len(labels) / 3)
    fig.tight_layout(rect=(0, 0.05 + 0.04 * rows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_cdf(data: _Data, path: Path) -> bool:
    profiles = list(data.names)
    if data.ok.empty:
        return False
    cols = min(3, len(profiles))
    rows = math.ceil(len(profiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, prof in zip(axes.flat, profiles, strict=False):
        values = data.ok[data.ok["profile"] == prof][_TIME].dropna()
        for k, p in enumerate(data.proposals):
            xs = sorted(_at(data.ok, p, prof)[_TIME].dropna() * 1000)
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=p, linestyle=_STYLES[k % len(_STYLES)])
        if len(values) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{prof}\n{_profile_text(data.profiles, prof)}", fontsize=7)
        ax.set_xlabel("time to established (ms)", fontsize=8)
        ax.set_ylabel("fraction of handshakes", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(profiles) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 4), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _overhead_bars(
    ax: Any, groups: list[str], bars: list[tuple[str, list[tuple[float, float, float]]]]
) -> bool:
    """Grouped bars of ratios with their bootstrap intervals; a bar whose interval holds 1
    (no difference) is hatched and pale. Ratios reaching ten times the baseline are drawn
    as ratios on a log axis (1 = the baseline), others as percentages; returns which."""
    width = 0.8 / max(1, len(bars))
    # More bars than the default ten colours: tab20, so no two profiles share a colour.
    palette = plt.get_cmap("tab20").colors if len(bars) > 10 else [None] * len(bars)
    estimates = [iv[0] for _, vals in bars for iv in vals if not math.isnan(iv[0])]
    log = bool(estimates) and max(estimates) >= _LOG_SPAN
    for j, (label, values) in enumerate(bars):
        xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(groups))]
        heights = [(iv[0] if log else (iv[0] - 1) * 100) for iv in values]
        err = [
            [max(0.0, (iv[0] - iv[1]) * (1 if log else 100)) for iv in values],
            [max(0.0, (iv[2] - iv[0]) * (1 if log else 100)) for iv in values],
        ]
        noise = [not outside_noise(iv, ratio=True) for iv in values]
        drawn = ax.bar(
            xs,
            heights,
            width=width,
            label=label,
            yerr=err,
            capsize=2,
            error_kw={"elinewidth": 0.8},
            color=palette[j % len(palette)],
        )
        for rect, pale in zip(drawn, noise, strict=True):
            if pale:
                rect.set_alpha(0.35)
                rect.set_hatch("//")
    ax.set_xticks(range(len(groups)), groups)
    _rotate(ax)
    if log:
        ax.set_yscale("log")
        ax.axhline(1, color="black", linewidth=0.8)
    else:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
    return log


def _plot_overhead(data: _Data, path: Path) -> bool:
    """Bytes and mean time to established of every proposal relative to the baseline, in
    every profile, with 95 % bootstrap intervals (hatched: within the noise)."""
    others = [p for p in data.proposals if p != data.baseline]
    base = _at(data.ok, data.baseline, data.ref)
    if not others or base.empty:
        return False
    if len(others) > 6:
        # Many proposals: one panel above the other, each as wide as its labels need.
        fig, (left, right) = plt.subplots(2, 1, figsize=(max(10.0, 0.62 * len(others) + 3), 10.5))
    else:
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1, 1.6]}
        )
    clean = _clean_handshakes(data, data.ref)
    byte_ratios = [
        bootstrap_interval(
            clean[clean["proposal"] == p]["ip_bytes"].tolist(),
            clean[clean["proposal"] == data.baseline]["ip_bytes"].tolist(),
            ratio=True,
        )
        for p in others
    ]
    log = _overhead_bars(left, others, [(f"`{data.ref}`", byte_ratios)])
    left.set_ylabel(
        f"IP bytes relative to {data.baseline}" + (" (ratio, log scale)" if log else " (%)")
    )
    left.set_title(f"Bytes at `{data.ref}` (no retransmission)", fontsize=8)

    def judged(p: str, prof: str) -> tuple[float, float, float]:
        r = _difference(data, p, data.baseline, prof, ratio=True)
        # Too few handshakes to tell: drawn without an interval, hatched like noise.
        enough = min(_counts(data, p, data.baseline, prof)) >= _MIN_SAMPLE
        return r if enough else (r[0], math.nan, math.nan)

    bars = [(prof, [judged(p, prof) for p in others]) for prof in data.names]
    log = _overhead_bars(right, others, bars)
    right.set_ylabel(
        f"mean time to established relative to {data.baseline}"
        + (" (ratio, log scale)" if log else " (%)")
    )
    right.set_title(
        "Time, by profile (bars: 95 % bootstrap CI; hatched: within the noise)", fontsize=8
    )
    right.legend(fontsize=7, title="profile", title_fontsize=7, ncol=1 + len(bars) // 7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_pairs(data: _Data, path: Path) -> bool:
    """IP bytes and mean time to established per proposal, one bar per peer pair, in every
    profile more than one pair ran; bars carry the 95 % interval of the mean."""
    pairs = list(dict.fromkeys(data.hs_all["pair"]))
    if len(pairs) < 2:
        return False
    ok = data.hs_all[data.hs_all["established"]]
    shared = [
        str(p)
        for p in data.profiles.index
        if data.hs_all[data.hs_all["profile"] == p]["pair"].nunique() > 1
    ]
    if not shared:
        return False
    first = data.ref if data.ref in shared else shared[0]
    panels = [("ip_bytes", first)] + [(_TIME, p) for p in shared]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    width = 0.8 / len(pairs)
    proposals = list(dict.fromkeys(data.hs_all["proposal"]))
    for ax, (metric, prof) in zip(axes.flat, panels, strict=False):
        scale = 1000 if metric.endswith("_s") else 1
        everything = []
        for j, pair in enumerate(pairs):
            values, err = [], [[], []]
            for p in proposals:
                at = ok[(ok["proposal"] == p) & (ok["pair"] == pair) & (ok["profile"] == prof)]
                s = describe(at[metric].tolist())
                values.append(s["mean"] * scale)
                half_low = s["mean"] - s["ci95_low"] if not math.isnan(s["ci95_low"]) else 0
                half_high = s["ci95_high"] - s["mean"] if not math.isnan(s["ci95_high"]) else 0
                err[0].append(half_low * scale)
                err[1].append(half_high * scale)
                everything.append(s["mean"] * scale)
            xs = [i + (j - (len(pairs) - 1) / 2) * width for i in range(len(proposals))]
            ax.bar(xs, values, width=width, label=pair, yerr=err, capsize=2)
        ax.set_xticks(range(len(proposals)), proposals)
        _rotate(ax)
        if _log_axis(everything):
            ax.set_yscale("log")
        if metric == "ip_bytes":
            ax.set_ylabel("IP bytes per handshake (mean)")
            ax.set_title(f"Bytes at `{prof}`", fontsize=9)
        else:
            ax.set_ylabel("time to established (ms, mean, 95 % CI)")
            ax.set_title(f"Time at `{prof}` ({_profile_text(data.profiles, prof)})", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.08 / rows, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --- an SA's life (phases.csv) -------------------------------------------------------


def _phase_order(data: _Data) -> list[str]:
    """The phases of the run, handshake first, in the spec's order."""
    ph = data.phases
    if ph.empty:
        return []
    return [str(n) for n in ph.sort_values("index", kind="stable")["phase"].drop_duplicates()]


_PHASE_LABELS = {
    HANDSHAKE_PHASE: "handshake",
    "child": "Child SA rekey",
    "ike": "IKE SA rekey",
    "new-child": "new Child SA",
    "liveness": "liveness check",
    "delete-child": "Child SA delete",
    "delete": "IKE SA delete",
}


def _phase_label(name: str) -> str:
    """``Child SA rekey`` for ``child``; ``(responder)`` when the responder starts it."""
    side, _, what = name.rpartition(":")
    label = _PHASE_LABELS.get(what, what)
    return f"{label} ({side})" if side else label


def _phase_of(names: Sequence[str], what: str) -> str | None:
    """The first phase that is a ``what`` (``child``, ``ike``), whoever started it."""
    return next((n for n in names if n.rpartition(":")[2] == what), None)


def _per_hour(data: _Data) -> pd.DataFrame:
    """Per repetition whose handshake, Child SA rekey and IKE SA rekey all reached their
    goal: the cost per hour at strongSwan's default rekey times, from that one run.

    ``<metric>`` is one Child SA rekey + a quarter of an IKE SA rekey + a quarter of the
    handshake (amortised over one IKE SA lifetime); ``<metric>_steady`` leaves the
    handshake out. Composing each repetition's own phases keeps the spread between runs
    for the intervals.
    """
    names = _phase_order(data)
    child, ike = _phase_of(names, "child"), _phase_of(names, "ike")
    if child is None or ike is None:
        return pd.DataFrame()
    ph = data.phases[data.phases["phase"].isin([HANDSHAKE_PHASE, child, ike])]
    keys = ["proposal", "profile", "repetition"]
    wide = ph.set_index([*keys, "phase"])[["ok", *_HOURLY]].unstack("phase")
    complete = wide["ok"].reindex(columns=[HANDSHAKE_PHASE, child, ike]).fillna(False)
    wide = wide[complete.astype(bool).all(axis=1)]
    if wide.empty:
        return pd.DataFrame()
    child_rate = 3600.0 / CHILD_REKEY_TIME_S
    ike_rate = 3600.0 / IKE_REKEY_TIME_S
    out = pd.DataFrame(index=wide.index)
    for metric in _HOURLY:
        steady = wide[(metric, child)] * child_rate + wide[(metric, ike)] * ike_rate
        out[f"{metric}_steady"] = steady
        out[metric] = steady + wide[(metric, HANDSHAKE_PHASE)] * ike_rate
    return out.reset_index()


def _phase_stats(data: _Data, proposal: str, profile: str, phase: str, metric: str) -> dict:
    at = _at(data.phases, proposal, profile)
    at = at[(at["phase"] == phase) & at["ok"]]
    return describe(at[metric].tolist() if metric in at else [])


def _cpu_both(frame: pd.DataFrame) -> list[float]:
    return (frame["cpu_initiator_s"] + frame["cpu_responder_s"]).tolist()


def _unanswered_deletes(data: _Data) -> pd.DataFrame:
    """IKE SA rekeys that ended on an unanswered retransmission of the old IKE SA's
    Delete: its response was lost, and the peer, which deleted that SA on the first
    request, answers no retransmission, so the sender retries until it gives up."""
    m = data.phase_msgs
    if m.empty:
        return pd.DataFrame()
    ike = [n for n in _phase_order(data) if n.rpartition(":")[2] == "ike"]
    m = m[m["phase"].isin(ike)]
    keys = ["proposal", "profile", "repetition", "phase"]
    last = m.sort_values("index").groupby(keys, sort=False).tail(1)
    hit = last[
        (last["exchange"] == "INFORMATIONAL")
        & ~last["is_response"].astype(bool)
        & last["retransmission"].astype(bool)
    ]
    return data.phases.merge(hit[keys], on=keys)


def _plot_lifetime(data: _Data, path: Path) -> bool:
    """IP bytes and CPU (both peers) of the handshake, each phase and one hour at
    strongSwan's default rekey times, per proposal at the reference profile: bars are
    means, whiskers their 95 % interval; log axes when the values span decades."""
    names = _phase_order(data)
    if len(names) < 2:
        return False
    hourly = _per_hour(data)
    groups = [*names, "per hour"] if not hourly.empty else names
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / max(1, len(data.proposals))
    for ax, (label, scale) in zip(
        axes, (("IP bytes, both directions", 1.0), ("CPU, both peers (ms)", 1000.0)), strict=True
    ):
        everything: list[float] = []
        for k, p in enumerate(data.proposals):
            means, err = [], [[], []]
            for g in groups:
                if g == "per hour":
                    at = _at(hourly, p, data.ref)
                    values = (
                        at["ip_bytes"].tolist()
                        if scale == 1.0
                        else (at["cpu_initiator_s"] + at["cpu_responder_s"]).tolist()
                    )
                else:
                    at = _at(data.phases, p, data.ref)
                    at = at[(at["phase"] == g) & at["ok"]]
                    values = at["ip_bytes"].tolist() if scale == 1.0 else _cpu_both(at)
                d = describe(values)
                mean = d["mean"] * scale
                means.append(mean)
                low = d["ci95_low"] if not math.isnan(d["ci95_low"]) else d["mean"]
                high = d["ci95_high"] if not math.isnan(d["ci95_high"]) else d["mean"]
                err[0].append(max(0.0, d["mean"] - low) * scale if d["n"] else 0.0)
                err[1].append(max(0.0, high - d["mean"]) * scale if d["n"] else 0.0)
                everything.append(mean)
            xs = [i + (k - (len(data.proposals) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, means, width=width, label=p, yerr=err, capsize=3)
        ax.set_xticks(
            range(len(groups)), [g if g == "per hour" else _phase_label(g) for g in groups]
        )
        _rotate(ax)
        if _log_axis(everything):
            ax.set_yscale("log")
            label += " (log scale)"
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3, which="both")
        if len(groups) > len(names):
            ax.axvline(len(names) - 0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[0].set_title("Bytes of each part of an SA's life", fontsize=9)
    axes[1].set_title("CPU of each part of an SA's life (this machine)", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.suptitle(
        f"At `{data.ref}` ({_profile_text(data.profiles, data.ref)}); per hour: one Child SA "
        "rekey + 1/4 IKE SA rekey + 1/4 handshake; bars: mean, whiskers: 95 % CI",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _lifetime_section(data: _Data, plots: dict[str, str | None]) -> list[str]:
    """What post-quantum costs over an SA's life: only for runs with phases."""
    names = _phase_order(data)
    if len(names) < 2:
        return []
    lines = [
        "## What post-quantum costs over an SA's life",
        "",
        "From `phases.csv`: after every handshake the same two peers ran "
        + ", then ".join(f"`{n}`" for n in names[1:])
        + " over the same link. Each phase is measured from its command until both peers "
        "are idle again, with every datagram it sent (retransmissions included); times add "
        "the CPU of every step, as *time to established* does.",
        "",
    ]
    if plots.get("lifetime"):
        lines += [f"![Bytes and CPU over an SA's life]({plots['lifetime']})", ""]
    rows = []
    for prof in data.names:
        for p in data.proposals:
            for n in names:
                at = _at(data.phases, p, prof)
                at = at[at["phase"] == n]
                ok = at[at["ok"]]
                if at.empty:
                    continue
                # Real pairs (strongSwan) measure no CPU: their phases' wall-clock time
                # is in sim_time_s, their handshake's in handshakes.csv.
                col = "sim_time_cpu_s" if ok["sim_time_cpu_s"].notna().any() else "sim_time_s"
                t = describe(ok[col].tolist())
                timed = (
                    f"{_interval(t)} (median {_time(t['median'])}, p95 {_time(t['p95'])})"
                    if t["n"]
                    else "n/a (handshakes.csv)"
                )
                rows.append(
                    [
                        f"`{prof}`",
                        p,
                        _phase_label(n),
                        _share(len(ok), len(at)),
                        _interval(describe(ok["ip_bytes"].tolist()), _bytes),
                        _fixed(float(ok["datagrams"].mean())) if len(ok) else "n/a",
                        _num(_median(ok, "round_trips")),
                        timed,
                        _time(float(ok["cpu_initiator_s"].mean())) if len(ok) else "n/a",
                        _time(float(ok["cpu_responder_s"].mean())) if len(ok) else "n/a",
                        _share(int((at["retransmissions"] > 0).sum()), len(at)),
                    ]
                )
    lines += [
        "Each part of the SA's life, per proposal and profile: means with their 95 % "
        "interval in brackets over the phases that reached their goal, round trips as the "
        "median.",
        "",
        _table(
            [
                "profile",
                "proposal",
                "phase",
                "ok",
                "IP bytes",
                "datagrams",
                "round trips",
                "time until both idle",
                "CPU initiator",
                "CPU responder",
                "with a retransmission",
            ],
            rows,
        ),
        "",
    ]
    tail = _unanswered_deletes(data)
    if not tail.empty:
        ike = data.phases[data.phases["phase"].isin(set(tail["phase"]))]
        lines += [
            f"In {_share(len(tail), len(ike))} IKE SA rekeys (all proposals and profiles) "
            "the response to the Delete of the old IKE SA was lost. The peer had deleted "
            "that SA on the first request and answers no retransmission, so the sender "
            "retransmitted the Delete until it gave up, and the phase took "
            f"{_time(float(tail['sim_time_s'].median()))} (median) until both were idle; "
            "the new IKE SA was already established on both sides. These few runs make "
            "the long tail and the wide intervals of the IKE SA rekey's time; its median "
            "and p95 tell the common case.",
            "",
        ]
    hourly = _per_hour(data)
    if hourly.empty:
        lines += [
            "No cost per hour: it needs a `child` and an `ike` phase that reached their goal "
            "after a handshake that did.",
            "",
        ]
        return lines
    lines += [
        "### Per hour at strongSwan's default rekey times",
        "",
        f"strongSwan rekeys a Child SA after `rekey_time` = {_num(CHILD_REKEY_TIME_S / 3600)} h "
        f"and the IKE SA after `rekey_time` = {_num(IKE_REKEY_TIME_S / 3600)} h, so an hour "
        "costs one Child SA rekey and a quarter of an IKE SA rekey (*steady*). The *per "
        "hour* columns also add a quarter of the handshake: **we assume the connection is "
        "set up anew once per IKE SA lifetime (4 h)**. That is an upper bound: with "
        "strongSwan's default `reauth_time = 0` a connection is set up once and then only "
        "rekeyed, so over a long-lived connection the cost per hour tends to the steady "
        "figure. One Child SA per IKE SA; strongSwan rekeys up to `rand_time` early (10 % "
        "of the lifetime by default), so real rekeys come up to about 11 % more often. Each "
        "repetition's own phases are added up, so the intervals (95 %, Student t) carry the "
        "spread between runs, retransmissions included.",
        "",
    ]
    rows = []
    for prof in data.names:
        for p in data.proposals:
            at = _at(hourly, p, prof)
            if at.empty:
                continue
            rows.append(
                [
                    f"`{prof}`",
                    p,
                    str(len(at)),
                    _interval(describe(at["ip_bytes"].tolist()), _bytes),
                    _interval(describe(at["ip_bytes_steady"].tolist()), _bytes),
                    _fixed(float(at["datagrams"].mean())),
                    _interval(describe(at["cpu_initiator_s"].tolist())),
                    _interval(describe(at["cpu_responder_s"].tolist())),
                ]
            )
    lines += [
        _table(
            [
                "profile",
                "proposal",
                "runs",
                "IP bytes per hour",
                "steady (no handshake)",
                "datagrams per hour",
                "CPU initiator per hour",
                "CPU responder per hour",
            ],
            rows,
        ),
        "",
    ]
    others = [p for p in data.proposals if p != data.baseline]
    rows = []
    for prof in data.names:
        base = _at(hourly, data.baseline, prof)
        for p in others:
            at = _at(hourly, p, prof)
            if at.empty or base.empty:
                continue
            counts = (len(at), len(base))
            ratio = bootstrap_interval(
                at["ip_bytes"].tolist(), base["ip_bytes"].tolist(), ratio=True
            )
            diff = bootstrap_interval(at["ip_bytes"].tolist(), base["ip_bytes"].tolist())
            cpu = bootstrap_interval(_cpu_both(at), _cpu_both(base), ratio=True)
            rows.append(
                [
                    f"`{prof}`",
                    p,
                    f"{_signed_bytes(diff[0])} [{_signed_bytes(diff[1])}, "
                    f"{_signed_bytes(diff[2])}]",
                    _ratio_text(ratio),
                    _verdict(ratio, counts, ratio=True),
                    _ratio_text(cpu),
                    _verdict(cpu, counts, ratio=True),
                ]
            )
    if rows:
        lines += [
            f"Overhead per hour (with the handshake) against {data.baseline}, with the 95 % "
            "bootstrap interval of the difference and of the ratio of the means:",
            "",
            _table(
                [
                    "profile",
                    "proposal",
                    "IP bytes per hour",
                    "relative",
                    "bytes: difference",
                    "CPU (both peers) relative",
                    "CPU: difference",
                ],
                rows,
            ),
            "",
        ]
        h = data.highlight
        base, hi = _at(hourly, data.baseline, data.ref), _at(hourly, h, data.ref)
        if h is not None and not base.empty and not hi.empty:
            hb, bb = float(hi["ip_bytes"].mean()), float(base["ip_bytes"].mean())
            lines += [
                f"In short, at `{data.ref}`: {h} costs {_bytes(hb)} IP bytes per hour against "
                f"{_bytes(bb)} for {data.baseline} ({_bytes(hb * 24)} against "
                f"{_bytes(bb * 24)} a day), of which the handshake's quarter is "
                f"{_bytes(hb - float(hi['ip_bytes_steady'].mean()))} against "
                f"{_bytes(bb - float(base['ip_bytes_steady'].mean()))}.",
                "",
            ]
    return lines


def _plot_auth(data: _Data, path: Path) -> bool:
    """Key-exchange against authentication bytes, when the run has several auth kinds."""
    if not auth_report.applies(data.hs):
        return False
    return auth_report.plot(data.hs, data.msgs, data.profiles.loc[data.names], path)


def _auth_section(data: _Data, plots: dict[str, str | None]) -> list[str]:
    """*Where the bytes go: key exchange against authentication* (``auth_report``),
    when the run has more than one authentication kind."""
    if not auth_report.applies(data.hs):
        return []
    return auth_report.section(data.hs, data.msgs, data.profiles.loc[data.names], plots.get("auth"))


def _signed_bytes(n: float) -> str:
    if math.isnan(n):
        return "n/a"
    return ("+" if n >= 0 else "-") + _bytes(abs(n))


# --- the report ----------------------------------------------------------------------


_PLOTTERS: tuple[tuple[str, Callable[[_Data, Path], bool]], ...] = (
    ("bytes", _plot_bytes),
    ("delay", _plot_delay),
    ("cdf", _plot_cdf),
    ("overhead", _plot_overhead),
    ("pairs", _plot_pairs),
    ("lifetime", _plot_lifetime),
    ("auth", _plot_auth),
)
"""Every plot of a report: its key in ``PLOTS`` and the function that draws it (False
when the run has nothing for it to show)."""


def _markdown(data: _Data, plots: dict[str, str | None]) -> str:
    meta, env = data.meta, data.env
    name = meta.get("experiment") or env.get("experiment") or "experiment"
    hs = data.hs_all
    lines = [f"# {name}", ""]
    if meta.get("description"):
        lines += [str(meta["description"]), ""]
    machine = env.get("machine", {}) if isinstance(env.get("machine"), dict) else {}
    packages = env.get("packages", {}) if isinstance(env.get("packages"), dict) else {}
    reps = int(hs.groupby(["proposal", "pair", "profile"]).size().max())
    lines += [
        "Generated by `pqike experiment report` from the tables in this directory; every "
        "number below is computed from `handshakes.csv` and `messages.csv` (and "
        "`datagrams.csv`, `payloads.csv` where they are used).",
        "",
        f"- Spec: `{meta.get('source', env.get('spec', '?'))}` (SHA-256 "
        f"`{str(meta.get('spec_sha256', env.get('spec_sha256', '?')))[:16]}…`), "
        f"seed {meta.get('seed', env.get('seed', '?'))}.",
        f"- {len(hs)} handshakes: {hs['proposal'].nunique()} proposals x "
        f"{hs['pair'].nunique()} peer pair(s) ({', '.join(dict.fromkeys(hs['pair']))}) x "
        f"{len(data.profiles)} network profiles x up to {reps} repetitions; "
        f"{int(hs['established'].sum())} established.",
    ]
    if machine:
        lines.append(
            f"- Machine: {machine.get('cpu', '?')} ({machine.get('cpus', '?')} CPUs), "
            f"{machine.get('platform', '?')}; Python {env.get('python', '?')}, "
            f"pqike {packages.get('pqike', '?')}, cryptography {packages.get('cryptography', '?')}"
            f" ({env.get('openssl') or 'OpenSSL ?'})."
        )
    lines.append(
        "- Profiles: "
        + "; ".join(f"`{n}` ({_profile_text(data.profiles, n)})" for n in data.profiles.index)
        + "."
    )
    lines += [
        f"- Baseline: **{data.baseline}**"
        + (f"; highlighted: **{data.highlight}**" if data.highlight else "")
        + f". Reference profile for byte counts: `{data.ref}` "
        f"({_profile_text(data.profiles, data.ref)}), chosen as {data.ref_reason}.",
        "",
        _time_definition(set(map(str, data.hs_all["pair"].unique()))),
        "Statistics are over the handshakes that established. Times are given as the mean "
        "with its 95 % confidence interval in brackets, with the median and p95 beside it: "
        "under loss the median hides the retransmission tail. A difference between two "
        "proposals counts as a finding only when the 95 % bootstrap interval of the "
        f"difference of their means ({BOOTSTRAP_RESAMPLES:,} resamples) excludes zero; "
        "otherwise it is *within the noise*.",
        "",
        "## Findings",
        "",
    ]
    lines += _findings(data)
    lines += [
        "",
        "## Configurations",
        "",
        f"Per proposal and profile (`{data.pair}` pair); medians unless the column says "
        "mean. Bytes count every datagram sent by both peers, retransmissions included; "
        "time to established is in *Latency* below.",
        "",
        _table(
            [
                "proposal",
                "profile",
                "negotiated",
                "round trips",
                "datagrams",
                "fragments",
                "IKE bytes",
                "IP bytes",
                "IP bytes (mean)",
                "largest IP datagram",
                "CPU (both peers)",
                "with a retransmission",
                "established",
            ],
            _config_rows(data),
        ),
        "",
    ]
    lines += _bytes_section(data, plots)
    lines += _rounds_section(data)
    lines += _fragmentation_section(data)
    lines += _loss_section(data)
    lines += _latency_section(data, plots)
    lines += _overhead_section(data, plots)
    lines += _lifetime_section(data, plots)
    lines += _auth_section(data, plots)
    lines += versions_section(
        data.hs_all,
        data.every_message,
        data.phases_all,
        [str(n) for n in data.profiles.index],
        data.ref,
        lambda name: _profile_text(data.profiles, name),
        data.datagrams,
    )
    if hs["pair"].nunique() > 1 and not data.disjoint:
        lines += _pairs_section(data)
        if plots.get("pairs"):
            lines += [
                f"![Time to established and bytes by peer pair]({plots['pairs']})",
                "",
            ]
    if data.diff_reference is not None:
        lines += payload_section(data.diffs, reference=data.diff_reference, profile=data.ref)
    lines += log_section(data.agreement)
    pairs = set(map(str, hs["pair"].unique())) | set(map(str, data.hs_all["pair"].unique()))
    lines += ["## Method", ""]
    if pairs & {"memory", "udp"}:
        lines.append(
            "- Peers (`memory`): two pqike `IkeSa` objects (PSK, or the certificates a "
            "proposal's `auth` names) over a simulated link in "
            "virtual time (`pqike.lab.link`): each direction has the profile's one-way delay, "
            "uniform jitter, per-datagram loss from a seeded random stream, bandwidth "
            "serialisation and an MTU above which datagrams are dropped. Real pairs (`udp`: "
            "two pqike endpoints over loopback UDP) get the same model from the user-space "
            "relay (`pqike.lab.relay`) in wall-clock time. Retransmission follows strongSwan's "
            "defaults unless the spec changes them."
        )
    lines += [
        "- Bytes: IKE message, UDP payload (non-ESP marker included) and IP datagram "
        "(UDP + IPv4/IPv6 header); retransmissions are included.",
        "- Round trips: request/response exchanges, not counting retransmissions.",
        "- Mean and its 95 % confidence interval: Student's t over the established "
        "handshakes; median, p5 and p95 by linear interpolation. `summary.csv` has every "
        "metric per configuration.",
        "- Differences between proposals: the percentile bootstrap of the difference (or "
        f"ratio) of the means, {BOOTSTRAP_RESAMPLES:,} resamples of each side drawn "
        "independently from a fixed seed, so a rebuilt report gives the same intervals. A "
        "difference is outside the noise when its 95 % interval excludes 0 (a ratio: 1) "
        f"and each side has at least {_MIN_SAMPLE} established handshakes. "
        "The interval covers the spread between handshakes, not drift of the machine "
        "between cells, which run one after another: where the time is mostly CPU (0 ms "
        "delay), compare proposals with care.",
        "- Every handshake of a profile and repetition uses the same link seed whatever the "
        "proposal, so proposals are compared on the same random draws.",
    ]
    if not data.phases.empty:
        lines.append(
            "- Phases (`phases.csv`): after each handshake the spec's phases run one after "
            "the other on the same two peers and link (`pqike.lab.link.simulate_handshake"
            "(then=...)`), each started by its command (e.g. `IkeSa.rekey_child`) as soon as "
            "both peers were idle, and measured until both are idle again: its own "
            "datagrams (retransmissions included), round trips, simulated time (with the "
            "CPU of every step added) and CPU per side. A phase is *ok* when it reached its "
            "goal on both sides (a new Child SA, a rekeyed IKE SA, ...)."
        )
    lab_pairs = sorted(p for p in pairs if "strongswan" in p)
    if lab_pairs:
        charon = data.env.get("strongswan") or "strongSwan"
        lines.append(
            f"- strongSwan pairs ({', '.join(f'`{p}`' for p in lab_pairs)}): "
            f"charon ({charon})"
            + (" and pqike" if {"pqike-strongswan", "strongswan-pqike"} & pairs else "")
            + " on ports 500/4500 in two network namespaces "
            "(`pqike/interop/lab.py`); the profile is applied on the IP path by "
            "`pqike.lab.tun_relay`, which also logs every datagram (no NAT between the "
            "peers). Time to established runs from the first IKE_SA_INIT datagram leaving "
            "the initiator to the last IKE_AUTH response datagram reaching it; CPU is "
            "measured for pqike peers only (`pqike.lab.strongswan_pairs`). charon logs at "
            "level 4 for IKE (the keys that decrypt its messages), which adds to its "
            "processing time: at 0 ms delay its times are upper bounds."
        )
    lines.append("")
    return "\n".join(lines)


def _time_definition(pairs: set[str]) -> str:
    """What *time to established* means for the pairs of this run."""
    meanings = []
    if "memory" in pairs:
        meanings.append(
            (
                "`memory`",
                "the simulated time until both peers are established, with the CPU each peer "
                "really spent on every step added (it varies a little from run to run); "
                "*network-only* time leaves the CPU out and is exact for a given seed",
            )
        )
    if "udp" in pairs:
        meanings.append(
            ("`udp`", "the wall-clock time from `initiate` to the initiator's established event")
        )
    if any("strongswan" in p for p in pairs):
        meanings.append(
            (
                "the strongSwan pairs",
                "the wall-clock time on the relay's log, from the first datagram leaving the "
                "initiator to the last one the Child SA needs reaching its peer (IKEv2: the "
                "IKE_AUTH response; IKEv1: quick mode's third message)",
            )
        )
    return " ".join(
        f"*Time to established* is, for {who}, {what}." if i == 0 else f"For {who} it is {what}."
        for i, (who, what) in enumerate(meanings)
    )


def _time_summary(s: dict[str, Any]) -> str:
    return (
        f"{_interval(s)} (median {_time(s['median'])}, p95 {_time(s['p95'])}; "
        f"{_share(s['retransmitted'], s['handshakes'])} with a retransmission"
        + (
            f", {_share(s['established'], s['handshakes'])} established"
            if s["established"] < s["handshakes"]
            else ""
        )
        + ")"
    )


def _latency_findings(data: _Data) -> list[str]:
    b, h = data.baseline, data.highlight
    if h is None:
        out = [f"- **Latency** of {b}, mean time to established [95 % CI] in every profile:"]
        for prof in data.names:
            out.append(f"  - `{prof}`: {_time_summary(_stats(data, b, prof))}.")
        return out
    out = [
        f"- **Latency** of {h} against {b}, mean time to established [95 % CI] in every "
        "profile, and the difference of the means [95 % bootstrap interval]:"
    ]
    for prof in data.names:
        sh, sb = _stats(data, h, prof), _stats(data, b, prof)
        if not (sh["n"] and sb["n"]):
            out.append(f"  - `{prof}`: no established handshake of one of the two.")
            continue
        d = _difference(data, h, b, prof)
        rel = d[0] / sb["mean"] if sb["mean"] else math.nan
        out.append(
            f"  - `{prof}` ({_profile_text(data.profiles, prof)}): {h} {_time_summary(sh)} "
            f"against {_time_summary(sb)}: {_signed_time(d[0])} "
            f"[{_signed_time(d[1])}, {_signed_time(d[2])}] ({_pct(rel)}), "
            f"**{_verdict(d, (sh['n'], sb['n']))}**."
        )
    return out


def _findings(data: _Data) -> list[str]:
    out: list[str] = []
    b, h, ref = data.baseline, data.highlight, data.ref
    base = _at(_clean_handshakes(data, ref), b, ref)
    if h is not None:
        hi = _at(_clean_handshakes(data, ref), h, ref)
        if not base.empty and not hi.empty:
            bb, hb = _median(base, "ip_bytes"), _median(hi, "ip_bytes")
            out.append(
                f"- **Bytes** at `{ref}`: {h} sends {_bytes(hb)} IP bytes per handshake "
                f"against {_bytes(bb)} for {b}: {_bytes(hb - bb)} more ({_pct(hb / bb - 1)}), "
                f"in {_num(_median(hi, 'datagrams'))} datagrams instead of "
                f"{_num(_median(base, 'datagrams'))} and "
                f"{_num(_median(hi, 'round_trips'))} round trips instead of "
                f"{_num(_median(base, 'round_trips'))}."
            )
    out += _latency_findings(data)
    if h is not None:
        base, hi = _at(data.ok, b, ref), _at(data.ok, h, ref)
        if not base.empty and not hi.empty:
            bcpu = (base["cpu_initiator_s"] + base["cpu_responder_s"]).tolist()
            hcpu = (hi["cpu_initiator_s"] + hi["cpu_responder_s"]).tolist()
            d = bootstrap_interval(hcpu, bcpu)
            if not math.isnan(d[0]):
                out.append(
                    f"- **CPU** at `{ref}`: both peers together spend "
                    f"{_interval(describe(hcpu))} on a {h} handshake against "
                    f"{_interval(describe(bcpu))} for {b} (this machine): "
                    f"{_signed_time(d[0])} [{_signed_time(d[1])}, {_signed_time(d[2])}], "
                    f"**{_verdict(d, (len(hcpu), len(bcpu)))}**."
                )
    costs = _round_costs(data)
    if not costs.empty:
        per = costs.groupby("method", sort=False)[["ip_bytes", "datagrams"]].median()
        bits = [
            f"{m}: {_bytes(r['ip_bytes'])} IP bytes in {_num(r['datagrams'])} datagrams"
            for m, r in per.iterrows()
        ]
        out.append(
            f"- **Each added round** (one IKE_INTERMEDIATE exchange) at `{ref}` costs "
            + "; ".join(bits)
            + "; the time it adds in every profile is in *Cost of each added round*."
        )
    frag = _fragmentation(data)
    for (size, mtu, ipv6), names in data.shape_groups:
        rows = {
            f["proposal"]: f
            for f in frag
            if (f["fragment_size"], f["mtu"], f["ipv6"]) == (size, mtu, bool(ipv6))
        }
        if not rows:
            continue

        def listed(props: list[str], rows: dict = rows) -> str:
            return ", ".join(f"{n} ({_bytes(rows[n]['largest_message'])})" for n in props)

        yes = [p for p in data.proposals if p in rows and rows[p]["fragmented"]]
        no = [p for p in data.proposals if p in rows and not rows[p]["fragmented"]]
        limit = next(iter(rows.values()))["limit"]
        out.append(
            f"- **Fragmentation** at a fragment size of {size} IP bytes, MTU {mtu}"
            + (", IPv6" if ipv6 else "")
            + f" ({_names_list(names)}): a message of more than {limit:,} IKE bytes is "
            f"fragmented ({size} - {40 if ipv6 else 20} IP - 8 UDP - 4 for the non-ESP "
            "marker, which pqike, like strongSwan, reserves on port 500 too). Largest "
            "encrypted message in IKE bytes in brackets: "
            + (f"{listed(yes)} fragment" if yes else "no proposal fragments")
            + (f"; {listed(no)} do not" if no else "")
            + "."
        )
    for f in frag:
        if f["sa_init_request"] > f["mtu"]:
            out.append(
                f"- **Unfragmentable IKE_SA_INIT:** {f['proposal']} sends a "
                f"{_bytes(f['sa_init_request'])}-byte IKE_SA_INIT request, which RFC 7383 "
                f"cannot fragment; over an MTU of {f['mtu']} ({_names_list(f['profiles'])}) "
                f"it established in {_share(f['established'], f['handshakes'])} handshakes."
            )
    if data.hs_all["pair"].nunique() > 1:
        out += _pair_findings(data)
    if data.diff_reference is not None and not data.diffs.empty:
        out += payload_findings(data.diffs, reference=data.diff_reference)
    out += log_findings(data.agreement)
    if not out:
        out.append("- Not enough data for findings.")
    return out


def _bytes_section(data: _Data, plots: dict[str, str | None]) -> list[str]:
    lines = ["## Bytes per exchange", ""]
    if plots.get("bytes"):
        lines += [f"![IP bytes per exchange]({plots['bytes']})", ""]
    for shape, names in data.shape_groups:
        where = _group_reference(data, names)
        table = _bytes_per_exchange(data, where)
        if table.empty:
            continue
        frag, mtu, ipv6 = shape
        lines += [
            f"Median IP bytes per exchange at fragment size {frag}, MTU {mtu}"
            + (", IPv6" if ipv6 else "")
            + f", counted at `{where}` over the handshakes without a retransmission; the "
            f"same in every profile of this shape: {_names_list(names)}.",
            "",
        ]
        headers = ["proposal", *table.columns, "total"]
        rows = [
            [p, *(_bytes(v) for v in table.loc[p]), _bytes(float(table.loc[p].sum()))]
            for p in table.index
        ]
        lines += [_table(headers, rows), ""]
    return lines


def _rounds_section(data: _Data) -> list[str]:
    costs = _round_costs(data)
    lines = ["## Cost of each added round", ""]
    if costs.empty:
        return [
            *lines,
            "No proposal has an additional key exchange, in any profile "
            f"({_names_list(data.names)}).",
            "",
        ]
    lines += [
        "Each additional key exchange (RFC 9370) is one IKE_INTERMEDIATE exchange (RFC 9242): "
        "one more round trip before IKE_AUTH. IP bytes of each round (request and response, "
        f"fragments included) at `{data.ref}`:",
        "",
        _table(
            ["proposal", "round", "method", "IP bytes", "datagrams"],
            [
                [r.proposal, r.round, r.method, _bytes(r.ip_bytes), r.datagrams]
                for r in costs.itertuples()
            ],
        ),
        "",
    ]
    lat = _round_latency(data)
    lines += [
        "Time added per round trip in every profile: least-squares slope of the median time "
        "against the number of round trips over the proposals (n/a where every proposal "
        "has as many round trips):",
        "",
        _table(
            ["profile", "one-way delay", "network-only", "with CPU", "proposals"],
            [
                [
                    f"`{r['profile']}`",
                    f"{_num(r['delay_ms'])} ms",
                    _time(r["network"]),
                    _time(r["with_cpu"]),
                    r["proposals"],
                ]
                for r in lat
            ],
        ),
        "",
    ]
    return lines


def _fragmentation_section(data: _Data) -> list[str]:
    frag = _fragmentation(data)
    lines = [
        "## Where fragmentation starts",
        "",
        "RFC 7383 fragments only encrypted messages (IKE_INTERMEDIATE, IKE_AUTH), each "
        "fragment at most the fragment size as an IP datagram; IKE_SA_INIT is never "
        "fragmented. A message is fragmented when its IKE size exceeds the fragment size "
        "minus the IP and UDP headers and the 4-byte non-ESP marker: pqike, like "
        "strongSwan, reserves the marker on port 500 too, where it is not sent, so that one "
        "fragment size fits both ports (a 1,249-byte message, 1,277 IP bytes unfragmented "
        "on port 500, is fragmented at 1280). Per proposal and fragment size / MTU (first "
        "sends of one handshake; *established* counts every handshake in the listed "
        "profiles):",
        "",
    ]
    rows = [
        [
            f["proposal"],
            _names_list(f["profiles"]),
            f["fragment_size"],
            f["mtu"],
            f"{f['limit']:,}",
            _bytes(f["largest_message"]),
            ", ".join(f["fragmented"]) or "none",
            _bytes(f["largest"]),
            f"{_bytes(f['sa_init_request'])} / {_bytes(f['sa_init_response'])}",
            f["mtu_drops"],
            _share(f["established"], f["handshakes"]),
        ]
        for f in frag
    ]
    lines += [
        _table(
            [
                "proposal",
                "profiles",
                "fragment size",
                "MTU",
                "largest unfragmented message (IKE bytes)",
                "largest encrypted message (IKE bytes)",
                "fragmented messages (fragments)",
                "largest IP datagram",
                "IKE_SA_INIT req / resp (IP)",
                "MTU drops",
                "established",
            ],
            rows,
        ),
        "",
    ]
    return lines


def _loss_section(data: _Data) -> list[str]:
    if not any(_impaired(data.profiles, n) for n in data.names):
        return []
    lines = [
        "## Retransmissions under loss and jitter",
        "",
        "A lost datagram is recovered by the initiator's retransmission timer "
        f"({_retransmit_text(data.meta)}); the responder answers a retransmitted "
        "request from its cache. Jitter can reorder fragments but costs a retransmission "
        "only when a datagram arrives after the timer fired. Every profile, the "
        "unimpaired ones for comparison:",
        "",
    ]
    rows = []
    for prof in data.names:
        p = data.profiles.loc[prof]
        for proposal in data.proposals:
            s = _stats(data, proposal, prof)
            rows.append(
                [
                    f"`{prof}`",
                    proposal,
                    f"{_num(p['loss_pct'])} %",
                    f"{_num(p['jitter_ms'])} ms",
                    _share(s["established"], s["handshakes"]),
                    _share(s["retransmitted"], s["handshakes"]),
                    _fixed(s["mean_retransmissions"]),
                    _fixed(s["lost"]),
                    _bytes(s["ip_bytes_mean"]),
                    _interval(s),
                    _time(s["median"]),
                    _time(s["p95"]),
                ]
            )
    lines += [
        _table(
            [
                "profile",
                "proposal",
                "loss",
                "jitter",
                "established",
                "handshakes with a retransmission",
                "retransmissions (mean)",
                "datagrams lost (mean)",
                "IP bytes (mean)",
                "time to established: mean [95 % CI]",
                "median",
                "p95",
            ],
            rows,
        ),
        "",
    ]
    return lines


def _latency_section(data: _Data, plots: dict[str, str | None]) -> list[str]:
    lines = ["## Latency", ""]
    if plots.get("delay"):
        lines += [f"![Time to established against one-way delay]({plots['delay']})", ""]
        single = [n for _, names in data.delay_groups if len(names) == 1 for n in names]
        if single:
            lines += [
                f"The plot has one panel per group of profiles that differ only in delay; "
                f"{_names_list(single)} have no such partner and are in the table and the "
                "distributions below.",
                "",
            ]
    rows = []
    for prof in data.names:
        for p in data.proposals:
            s = _stats(data, p, prof)
            rows.append(
                [
                    f"`{prof}`",
                    p,
                    _share(s["established"], s["handshakes"]),
                    _interval(s),
                    _time(s["median"]),
                    _time(s["p5"]),
                    _time(s["p95"]),
                    _time(s["network"]),
                    _share(s["retransmitted"], s["handshakes"]),
                ]
            )
    lines += [
        "Time to established in every profile (network-only: median, without CPU):",
        "",
        _table(
            [
                "profile",
                "proposal",
                "established",
                "mean [95 % CI]",
                "median",
                "p5",
                "p95",
                "network-only",
                "with a retransmission",
            ],
            rows,
        ),
        "",
    ]
    if plots.get("cdf"):
        lines += [
            "Distribution of the time to established in every profile:",
            "",
            f"![Latency CDFs]({plots['cdf']})",
            "",
        ]
    return lines


def _overhead_section(data: _Data, plots: dict[str, str | None]) -> list[str]:
    others = [p for p in data.proposals if p != data.baseline]
    if not others:
        return []
    lines = [f"## Overhead relative to {data.baseline}", ""]
    if plots.get("overhead"):
        lines += [f"![Overhead relative to the baseline]({plots['overhead']})", ""]
    rows = []
    for prof in data.names:
        for p in others:
            r = _difference(data, p, data.baseline, prof, ratio=True)
            verdict = _verdict(r, _counts(data, p, data.baseline, prof), ratio=True)
            rows.append([f"`{prof}`", p, _ratio_text(r), verdict])
    lines += [
        f"Mean time to established of each proposal over {data.baseline}'s in every "
        "profile, with the 95 % bootstrap interval of the ratio:",
        "",
        _table(["profile", "proposal", "time relative [95 % CI]", "difference"], rows),
        "",
    ]
    return lines


def _pair_comparison(data: _Data) -> list[dict[str, Any]]:
    """Per configuration: time and bytes of each pair next to the primary pair's."""
    hs = data.hs_all[data.hs_all["established"]]
    rows = []
    for (p, prof), g in hs.groupby(["proposal", "profile"], sort=False):
        row: dict[str, Any] = {"proposal": p, "profile": prof}
        for pair, gp in g.groupby("pair", sort=False):
            row[pair] = {
                "time": _median(gp, _TIME),
                "stats": describe(gp[_TIME].tolist()),
                "ip_bytes": _median(gp, "ip_bytes"),
                "datagrams": _median(gp, "datagrams"),
                "n": len(gp),
            }
        rows.append(row)
    return rows


def _retransmit_text(meta: dict[str, Any]) -> str:
    timeout = meta.get("retransmit_timeout_s")
    tries = meta.get("retransmit_tries")
    if timeout is None or tries is None:
        return "strongSwan's schedule unless the spec changes it"
    # pqike's IkeSa uses strongSwan's back-off: timeout * 1.8**n before try n.
    return f"first after {_num(float(timeout))} s, then 1.8 times longer each try, {tries} tries"


def _per_datagram_text(values: list[float]) -> str:
    if not values:
        return "."
    low, high = round(min(values), 1), round(max(values), 1)
    if low == high:
        return f"{_num(low)} more bytes per datagram."
    return f"{_num(low)} to {_num(high)} more bytes per datagram."


def _pair_findings(data: _Data) -> list[str]:
    pairs = [p for p in dict.fromkeys(data.hs_all["pair"]) if p != data.pair]
    rows = _pair_comparison(data)
    out = []
    for other in pairs:
        diffs = [
            (r[other]["time"] - r[data.pair]["time"], r)
            for r in rows
            if other in r and data.pair in r
        ]
        if not diffs:
            continue
        worst, where = max(diffs, key=lambda d: abs(d[0]))
        per_datagram = [
            (r[other]["ip_bytes"] - r[data.pair]["ip_bytes"]) / r[other]["datagrams"]
            for _, r in diffs
            if r[other]["datagrams"]
        ]
        out.append(
            f"- **{other} against {data.pair}:** over {len(diffs)} configurations the median "
            f"time to established differs by {_time(min(d for d, _ in diffs))} to "
            f"{_time(max(d for d, _ in diffs))} (largest: {where['proposal']} at "
            f"`{where['profile']}`, {_time(where[other]['time'])} against "
            f"{_time(where[data.pair]['time'])}, {_pct(worst / where[data.pair]['time'])}); "
            + _per_datagram_text(per_datagram)
        )
    return out


def _pairs_section(data: _Data) -> list[str]:
    pairs = list(dict.fromkeys(data.hs_all["pair"]))
    headers = ["proposal", "profile"]
    for pair in pairs:
        headers += [
            f"{pair}: time to established, mean [95 % CI]",
            f"{pair}: IP bytes",
            f"{pair}: established",
        ]
    all_hs = data.hs_all
    rows = []
    for r in _pair_comparison(data):
        cells = [r["proposal"], f"`{r['profile']}`"]
        for pair in pairs:
            at = all_hs[
                (all_hs["proposal"] == r["proposal"])
                & (all_hs["profile"] == r["profile"])
                & (all_hs["pair"] == pair)
            ]
            m = r.get(pair)
            cells += [
                _interval(m["stats"]) if m else "n/a",
                _bytes(m["ip_bytes"]) if m else "n/a",
                _share(int(at["established"].sum()), len(at)),
            ]
        rows.append(cells)
    return [
        "## Peer pairs compared",
        "",
        f"The sections above use the `{data.pair}` pair. Every configuration and pair "
        "(simulated pairs: virtual time with measured CPU; real pairs: wall-clock time; "
        "IP bytes: median):",
        "",
        *_pair_findings(data),
        "",
        _table(headers, rows),
        "",
    ]


__all__ = ["PLOTS", "build_report"]
