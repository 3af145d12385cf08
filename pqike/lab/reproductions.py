"""Published tables reproduced: an experiment's numbers beside the source its spec names.

A spec with ``published = "<source>"`` (a key of ``pqike.lab.published.SOURCES``) gets a
comparison written by :func:`write_published` into ``published.md`` of its results, and
the same text as the last section of ``report.md`` (``build_report`` calls it):

``paquin-tls``
    The delay x loss grid of Paquin, Stebila and Tamvada's TLS benchmark. ``loss_grid``
    reduces ``handshakes.csv`` to one row per proposal and grid point (``loss_grid.csv``,
    kept small enough to commit when the per-handshake table is not): the median and the
    95th percentile of the time to established over *all* handshakes, a failed one
    ranking after every established one (TLS over TCP always completes; an IKEv2
    handshake that waits out every retransmission fails), so a percentile that falls on
    a failure is infinite and the plots leave the point out. Plots in the paper's form:
    time against loss, a panel per RTT, a line per proposal (``loss_grid_median.png``,
    ``loss_grid_p95.png``). Then the paper's numbers at RTT 31.2 ms beside pqike's.
``strongswan-netem``
    The scenario table: per proposal and profile the share established at the first
    try (no retransmission), the share established after a retransmission and the
    share that failed within the spec's ``max_time_s``, with the median, mean and p95 of
    the time of each established group, beside the published scenario.

Every number is computed from the results' tables; the published ones come from
``pqike.lab.published``, never from the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import read_json, read_table, table_path
from .published import (
    NETEM_SCENARIOS,
    NETEM_SOURCE,
    PAQUIN_RTT_MS,
    PAQUIN_SOURCE,
    PAQUIN_TLS,
)
from .spec import parse_spec

MS_PER_S = 1000.0
LOSS_GRID = "loss_grid.csv"
GRID_PLOTS = {"median": "loss_grid_median.png", "p95": "loss_grid_p95.png"}
_QUANTILES = {"median": 0.5, "p95": 0.95}
_LOG_SPAN = 10.0
"""A plot's y axis turns logarithmic when its values span more than this factor."""
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINES = ("-", "--", "-.", ":")


def quantile_failures_last(times: Sequence[float], failed: Sequence[bool], q: float) -> float:
    """The ``q`` quantile of ``times`` with every failed handshake ranked after every
    established one: ``inf`` when the quantile falls on (or between) failures.

    Linear interpolation between the two nearest ranks, as ``numpy.percentile`` (which
    the paper's scripts use) does for finite values.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be from 0 to 1, got {q}")
    values = sorted(math.inf if bad else float(t) for t, bad in zip(times, failed, strict=True))
    if not values:
        return math.nan
    position = q * (len(values) - 1)
    low, high = math.floor(position), math.ceil(position)
    if math.isinf(values[high]):
        return math.inf
    return values[low] + (values[high] - values[low]) * (position - low)


# --- paquin-tls: the delay x loss grid ------------------------------------------------------


def loss_grid(handshakes: pd.DataFrame) -> pd.DataFrame:
    """One row per proposal and profile of ``handshakes.csv``: delay, loss, counts, and
    times in ms (median and p95 over all handshakes, failures last; the same over the
    established ones), and the datagrams of a handshake that needed no retransmission."""
    rows = []
    for (proposal, profile), group in handshakes.groupby(["proposal", "profile"], sort=False):
        established = group["established"].astype(bool)
        times = (group["time_to_established_s"] * MS_PER_S).tolist()
        failed = (~established).tolist()
        good = group[established]
        first_try = good[good["retransmissions"] == 0]
        rows.append(
            {
                "proposal": proposal,
                "profile": profile,
                "delay_ms": float(group["delay_ms"].iloc[0]),
                "loss_pct": float(group["loss_pct"].iloc[0]),
                "handshakes": len(group),
                "established": int(established.sum()),
                "failed_share": float((~established).mean()),
                "retransmitted_share": float((group["retransmissions"] > 0).mean()),
                "median_ms": quantile_failures_last(times, failed, _QUANTILES["median"]),
                "p95_ms": quantile_failures_last(times, failed, _QUANTILES["p95"]),
                "established_median_ms": float(good["time_to_established_s"].median()) * MS_PER_S,
                "established_p95_ms": float(good["time_to_established_s"].quantile(0.95))
                * MS_PER_S,
                "first_try_datagrams": float(first_try["datagrams"].median())
                if not first_try.empty
                else math.nan,
                "first_try_round_trips": float(first_try["round_trips"].median())
                if not first_try.empty
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _grid_of(results: Path) -> pd.DataFrame:
    """``loss_grid.csv`` rebuilt from ``handshakes.csv`` (or its ``.gz``) when that is
    there (and saved), else read back (a grid whose per-handshake table is not there)."""
    handshakes = read_table(table_path(results, "handshakes.csv"))
    if not handshakes.empty:
        grid = loss_grid(handshakes)
        grid.to_csv(results / LOSS_GRID, index=False)
        return grid
    grid = read_table(results / LOSS_GRID)
    if grid.empty:
        raise FileNotFoundError(f"{results}: neither handshakes.csv nor {LOSS_GRID}")
    return grid


def _rtt_label(delay_ms: float) -> str:
    rtt = PAQUIN_RTT_MS.get(delay_ms)
    if rtt is None:
        return f"one-way delay {delay_ms:g} ms"
    return f"RTT {rtt:g} ms (one-way {delay_ms:g} ms)"


def plot_loss_grid(grid: pd.DataFrame, path: Path, stat: str) -> bool:
    """Time against loss, a panel per one-way delay, a line per proposal, as the paper
    draws it; ``stat`` is ``median`` or ``p95``. Infinite points (a failure) are left
    out. Returns False when there is nothing to draw."""
    column = f"{stat}_ms"
    finite = grid[np.isfinite(grid[column])]
    if finite.empty:
        return False
    delays = sorted(grid["delay_ms"].unique())
    proposals = list(dict.fromkeys(grid["proposal"]))
    cols = min(2, len(delays))
    rows = math.ceil(len(delays) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, delay in zip(axes.flat, delays, strict=False):
        panel = grid[grid["delay_ms"] == delay]
        values = panel[column][np.isfinite(panel[column])]
        for i, proposal in enumerate(proposals):
            line = panel[panel["proposal"] == proposal].sort_values("loss_pct")
            ys = line[column].where(np.isfinite(line[column]))
            ax.plot(
                line["loss_pct"],
                ys,
                label=proposal,
                marker=_MARKERS[i % len(_MARKERS)],
                linestyle=_LINES[i % len(_LINES)],
                markersize=4,
                linewidth=1.2,
            )
        if not values.empty and values.max() > _LOG_SPAN * max(values.min(), 1e-9):
            ax.set_yscale("log")
        ax.set_title(_rtt_label(float(delay)), fontsize=9)
        ax.set_xlabel("packet loss, % each way")
        ax.set_ylabel(f"{'median' if stat == 'median' else '95th percentile'} time (ms)")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(delays) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(proposals), 6), fontsize=8)
    what = "Median" if stat == "median" else "95th percentile of the"
    fig.suptitle(
        f"{what} IKEv2 handshake time against loss (a failed handshake ranks last; "
        "a missing point: the percentile is a failure)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "failed"
    return f"{value:,.1f}"


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f} %"


def _point(grid: pd.DataFrame, proposal: str, delay: float, loss: float) -> pd.Series | None:
    rows = grid[
        (grid["proposal"] == proposal)
        & np.isclose(grid["delay_ms"], delay)
        & np.isclose(grid["loss_pct"], loss)
    ]
    return None if rows.empty else rows.iloc[0]


def _delay_of_rtt(rtt_ms: float) -> float:
    return next(d for d, r in PAQUIN_RTT_MS.items() if r == rtt_ms)


def _same_datagrams(grid: pd.DataFrame) -> list[list[str]]:
    """Groups of two or more proposals whose loss-free handshakes send as many datagrams."""
    clean = grid[grid["loss_pct"] == grid["loss_pct"].min()]
    counts = clean.groupby("proposal", sort=False)["first_try_datagrams"].median()
    groups: dict[float, list[str]] = {}
    for proposal, count in counts.items():
        groups.setdefault(float(count), []).append(str(proposal))
    return [g for g in groups.values() if len(g) > 1]


def _first_loss(line: pd.DataFrame, column: str, limit: float) -> float | None:
    """The smallest loss rate at which ``column`` reaches ``limit`` (ms)."""
    over = line[line[column] >= limit].sort_values("loss_pct")
    return None if over.empty else float(over["loss_pct"].iloc[0])


def paquin_comparison(results: str | Path, meta: dict[str, Any] | None = None) -> str:
    """The paquin-tls comparison (Markdown); writes ``loss_grid.csv`` and the two plots."""
    out = Path(results)
    meta = meta if meta is not None else read_json(out / "run.json")
    grid = _grid_of(out)
    drawn = {stat: plot_loss_grid(grid, out / name, stat) for stat, name in GRID_PLOTS.items()}
    timeout = meta.get("retransmit_timeout_s", "?")
    tries = meta.get("retransmit_tries", "?")
    per_point = sorted(grid["handshakes"].unique())
    lines = [
        "# Beside the published numbers: Paquin, Stebila, Tamvada (TLS)",
        "",
        f"Published: {PAQUIN_SOURCE}. Their numbers, not measured here.",
        "",
        "The transposition: their TLS 1.3 handshakes ran over TCP between two network",
        "namespaces with netem on both ends (1 Gbit/s, queue limit 1000, the one-way delay",
        "and the loss rate below each way); these IKEv2 handshakes run between two pqike",
        "peers over the simulated link of the `memory` pair with the same delay, loss and",
        "rate each way (the queue never fills with one handshake in flight). The main",
        "difference is retransmission: TCP recovers a lost segment after its RTO (200 ms",
        "or more) or sooner by fast retransmit, and always completes; IKEv2 over UDP",
        "retransmits whole messages on its own timers, here pqike's default, which is",
        f"strongSwan's: {timeout} s, then 1.8 times longer per try, {tries} tries; a",
        "handshake that waits them all out fails. So one lost datagram costs at least",
        f"{timeout} s, and the percentiles count failures as slower than any success. P-256",
        "is IKEv2's ecp256; FrodoKEM is not available here. Time is",
        "`time_to_established_s`: network time in virtual time with each peer's measured",
        "CPU added (theirs: the client's monotonic clock around a TLS handshake).",
        f"Handshakes per point here: {', '.join(str(n) for n in per_point)} (theirs: 1,260).",
        "",
    ]
    for stat, name in GRID_PLOTS.items():
        if drawn[stat]:
            lines += [f"![{stat} time against loss]({name})", ""]
    same = _same_datagrams(grid)
    if same:
        lines += [
            "Each repetition's link seed is the same whatever the proposal (common random",
            "numbers), so proposals that send as many datagrams meet the same losses and",
            "their lines coincide up to their CPU time: "
            + "; ".join(", ".join(f"`{p}`" for p in group) for group in same)
            + ".",
            "",
        ]
    rtt = 31.2
    delay = _delay_of_rtt(rtt)
    lines += [
        f"## At RTT {rtt:g} ms: their TLS beside pqike's IKEv2 (median / p95, ms)",
        "",
        "| TLS scheme | loss | TLS median / p95 | IKEv2 proposal | IKEv2 median / p95 | "
        "IKEv2 established | IKEv2 needing a retransmission | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PAQUIN_TLS:
        theirs = f"{p.median_ms:,.1f} / {p.p95_ms:,.1f}"
        row = None if p.proposal is None else _point(grid, p.proposal, delay, p.loss_pct)
        if row is None:
            ours, name, ok, rt = "-", "-", "-", "-"
        else:
            ours = f"{_ms(row['median_ms'])} / {_ms(row['p95_ms'])}"
            name = f"`{p.proposal}`"
            ok = _share(row["established"] / row["handshakes"])
            rt = _share(row["retransmitted_share"])
        lines.append(
            f"| {p.scheme} | {p.loss_pct:g} % | {theirs} | {name} | {ours} | {ok} | {rt} | "
            f"{p.note} |"
        )
    lines += [
        "",
        f"Every proposal of the grid at RTT {rtt:g} ms:",
        "",
        "| IKEv2 proposal | round trips, datagrams (no loss) | 0 %: median / p95 | "
        "10 %: median / p95 | 20 %: median / p95 | 20 %: failed |",
        "|---|---|---|---|---|---|",
    ]
    proposals = list(dict.fromkeys(grid["proposal"]))
    for proposal in proposals:
        cells = []
        for loss in (0, 10, 20):
            row = _point(grid, proposal, delay, loss)
            cells.append("-" if row is None else f"{_ms(row['median_ms'])} / {_ms(row['p95_ms'])}")
        clean = _point(grid, proposal, delay, 0)
        worst = _point(grid, proposal, delay, 20)
        datagrams = (
            "-"
            if clean is None
            else f"{clean['first_try_round_trips']:g}, {clean['first_try_datagrams']:g}"
        )
        failed = "-" if worst is None else _share(worst["failed_share"])
        lines.append(f"| `{proposal}` | {datagrams} | {' | '.join(cells)} | {failed} |")
    lines += [
        "",
        "Loss-free, TLS 1.3 over TCP takes two round trips (TCP's handshake, then TLS's",
        "1-RTT handshake, the KEM inside it); IKEv2 takes two (IKE_SA_INIT, IKE_AUTH)",
        "plus one IKE_INTERMEDIATE per additional key exchange (RFC 9370), and a message",
        "larger than the fragment size travels in several datagrams (RFC 7383), each of",
        "which can be lost.",
        "",
        *_paquin_findings(grid, proposals, timeout),
    ]
    return "\n".join(lines) + "\n"


def _paquin_findings(grid: pd.DataFrame, proposals: list[str], timeout: Any) -> list[str]:
    """Their headline checked on the grid: where each proposal's tail reaches the first
    retransmission timer, and which proposals need the most datagrams."""
    limit = float(timeout) * MS_PER_S if isinstance(timeout, int | float) else math.nan
    lines = [
        "## Their headline in IKEv2",
        "",
        "Their finding: above 3-5 % loss, the schemes that need more packets suffer most.",
        f"Here a lost datagram costs the {timeout} s retransmission timer, so the question",
        "is at which loss rate a percentile reaches it, per proposal (datagrams of a",
        "loss-free handshake in parentheses):",
        "",
        "| one-way delay | " + " | ".join(f"`{p}`" for p in proposals) + " |",
        "|---|" + "---|" * len(proposals),
    ]
    for delay in sorted(grid["delay_ms"].unique()):
        cells = []
        for proposal in proposals:
            line = grid[(grid["proposal"] == proposal) & (grid["delay_ms"] == delay)]
            p95 = _first_loss(line, "p95_ms", limit)
            median = _first_loss(line, "median_ms", limit)
            clean = line[line["loss_pct"] == line["loss_pct"].min()]
            datagrams = clean["first_try_datagrams"].iloc[0] if not clean.empty else math.nan
            cells.append(
                f"p95 at {_loss_text(p95)}, median at {_loss_text(median)} ({datagrams:g})"
            )
        lines.append(f"| {_rtt_label(float(delay))} | " + " | ".join(cells) + " |")
    ordered = (
        grid[grid["loss_pct"] == grid["loss_pct"].max()]
        .groupby("proposal")[["failed_share", "retransmitted_share"]]
        .mean()
    )
    datagrams = (
        grid[grid["loss_pct"] == grid["loss_pct"].min()]
        .groupby("proposal")["first_try_datagrams"]
        .median()
    )
    most = datagrams.idxmax()
    least = datagrams.idxmin()
    top = grid["loss_pct"].max()
    lines += [
        "",
        f"At {top:g} % loss (averaged over the delays) `{most}`, the proposal with the most "
        f"datagrams ({datagrams[most]:g}), needed a retransmission in "
        f"{_share(ordered.loc[most, 'retransmitted_share'])} of its handshakes and "
        f"{_share(ordered.loc[most, 'failed_share'])} failed; `{least}` "
        f"({datagrams[least]:g} datagrams): {_share(ordered.loc[least, 'retransmitted_share'])}"
        f" and {_share(ordered.loc[least, 'failed_share'])}.",
    ]
    return lines


def _loss_text(loss: float | None) -> str:
    return "never" if loss is None else f"{loss:g} %"


# --- strongswan-netem: the scenario table --------------------------------------------------


def _describe_ms(times_s: pd.Series) -> str:
    if times_s.empty:
        return "-"
    ms = times_s * MS_PER_S
    return f"{ms.median():,.1f} / {ms.mean():,.1f} / {ms.quantile(0.95):,.1f}"


def scenario_table(handshakes: pd.DataFrame) -> pd.DataFrame:
    """Per proposal and profile: handshakes, the shares established at the first try,
    after a retransmission and failed, and median / mean / p95 (ms) of each established
    group's time to established."""
    rows = []
    keys = ["proposal", "pair", "profile"]
    for (proposal, pair, profile), group in handshakes.groupby(keys, sort=False):
        established = group["established"].astype(bool)
        first = group[established & (group["retransmissions"] == 0)]
        retried = group[established & (group["retransmissions"] > 0)]
        rows.append(
            {
                "proposal": proposal,
                "pair": pair,
                "profile": profile,
                "handshakes": len(group),
                "first_try_share": len(first) / len(group),
                "first_try_ms": _describe_ms(first["time_to_established_s"]),
                "retransmitted_share": len(retried) / len(group),
                "retransmitted_ms": _describe_ms(retried["time_to_established_s"]),
                "failed_share": float((~established).mean()),
                "all_ms": _describe_ms(group[established]["time_to_established_s"]),
            }
        )
    return pd.DataFrame(rows)


def _published_scenario_text(s: Any) -> str:
    bits = []
    if s.time_ms is not None:
        bits.append(f"{s.time_ms:,.1f} ms")
    if s.first_try_share is not None:
        first = f"{_share(s.first_try_share)} at the first try"
        if s.first_try_ms is not None:
            first += f" ({s.first_try_ms:,.0f} ms)"
        bits.append(first)
    if s.established_share is not None:
        bits.append(f"{_share(s.established_share)} established eventually")
    if s.retransmitted_ms is not None:
        bits.append(f"retransmitted: {s.retransmitted_ms:,.0f} ms")
    if s.note:
        bits.append(s.note)
    return "; ".join(bits)


def _implied_round_trips() -> list[str]:
    """What the published delay scenarios imply: (time - clean time) / stated delay."""
    clean = next((s.time_ms for s in NETEM_SCENARIOS if s.name == "clean"), None)
    lines = []
    for s in NETEM_SCENARIOS:
        delay = s.profiles[0].rpartition("delay")[2]
        if s.time_ms is None or clean is None or not s.profiles[0].startswith("delay_"):
            continue
        extra = (s.time_ms - clean) / float(delay)
        lines.append(f"{s.name}: ({s.time_ms:,.1f} - {clean:,.1f}) / {delay} = {extra:.2f}")
    return lines


def _added_by_delay(handshakes: pd.DataFrame) -> list[str]:
    """What a delay adds to the clean time, published and here (medians, established)."""
    ok = handshakes[handshakes["established"].astype(bool)]
    medians = ok.groupby(["proposal", "profile"])["time_to_established_s"].median() * MS_PER_S
    proposals = list(dict.fromkeys(handshakes["proposal"]))
    clean = next((s.time_ms for s in NETEM_SCENARIOS if s.name == "clean"), None)
    rows = []
    for s in NETEM_SCENARIOS:
        if s.time_ms is None or clean is None or s.name == "clean":
            continue
        cells = []
        for proposal in proposals:
            base = medians.get((proposal, "clean"))
            bits = []
            for profile in s.profiles:
                here = medians.get((proposal, profile))
                if here is not None and base is not None:
                    bits.append(f"{profile}: +{here - base:,.0f}")
            cells.append(", ".join(bits) or "-")
        rows.append(f"| {s.name} | +{s.time_ms - clean:,.0f} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "What the delay adds to the clean time (ms; published: their time minus their",
        "clean time; here: the profile's median minus the clean median, established",
        "handshakes):",
        "",
        "| scenario | published | " + " | ".join(f"`{p}`" for p in proposals) + " |",
        "|---|---|" + "---|" * len(proposals),
        *rows,
    ]


def scenario_comparison(results: str | Path, meta: dict[str, Any] | None = None) -> str:
    """The strongswan-netem scenario table (Markdown) from ``handshakes.csv`` and the
    run's ``spec.toml`` (its limit and retransmission settings); ``meta`` is unused."""
    out = Path(results)
    spec = parse_spec((out / "spec.toml").read_text("utf-8"), source=str(out / "spec.toml"))
    env = read_json(out / "environment.json")
    handshakes = pd.read_csv(table_path(out, "handshakes.csv"))
    table = scenario_table(handshakes)
    limit = f"{spec.max_time_s:g}"
    published = {name: s for s in NETEM_SCENARIOS for name in s.profiles}
    pairs = list(dict.fromkeys(handshakes["pair"]))
    if pairs == ["strongswan"]:
        here = [
            f"Here: {env.get('strongswan') or 'strongSwan (version not recorded)'}, "
            "charon <-> charon in two network namespaces, the profile applied on the IP",
            "path by the TUN relay (delay and loss each way). Time is from the first",
            "IKE_SA_INIT datagram leaving the initiator to the last IKE_AUTH response",
            "reaching it (the relay's log), not `swanctl --initiate`'s own run time: the",
            "source's clean 146.7 ms likely includes such process overhead, which this",
            "measurement leaves out.",
        ]
    else:
        here = [
            f"Here: the {', '.join(pairs)} pair(s) (see the experiment's README), delay and",
            "loss each way; time is `time_to_established_s`.",
        ]
    lines = [
        "# Beside the published numbers: a strongSwan 6.0.1 netem study",
        "",
        f"Published: {NETEM_SOURCE}. Their numbers, not measured here.",
        "",
        *here,
        f"Retransmission: {spec.retransmit_timeout_s:g} s, then 1.8 times longer per try "
        f"(strongSwan's default base), {spec.retransmit_tries} tries; a handshake not",
        f"established within {limit} s failed. Times: median / mean / p95 in ms of each",
        "group; the source does not say which statistic it gives.",
        "",
        "| proposal | profile | n | first try | its time | after retransmission | "
        f"its time | failed within {limit} s | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        s = published.get(r["profile"])
        theirs = f"{s.name}: {_published_scenario_text(s)}" if s is not None else "-"
        lines.append(
            f"| `{r['proposal']}` | {r['profile']} | {r['handshakes']} | "
            f"{_share(r['first_try_share'])} | {r['first_try_ms']} | "
            f"{_share(r['retransmitted_share'])} | {r['retransmitted_ms']} | "
            f"{_share(r['failed_share'])} | {theirs} |"
        )
    lines += ["", *_added_by_delay(handshakes)]
    lines += [
        "",
        "Reading the published delays: their time minus their clean time, divided by the",
        "stated delay, is",
        "",
        *(f"- {line}" for line in _implied_round_trips()),
        "",
        "about three round trips of a round-trip time equal to the stated delay: netem's",
        "delay on one side only and a proposal with one IKE_INTERMEDIATE (IKE_SA_INIT,",
        "IKE_INTERMEDIATE, IKE_AUTH) would give that. The `delay_*` profiles here delay",
        "each direction (round trip twice the delay), the `rtt_*` profiles half of it each",
        "way (the round trip of that reading); `x25519+mlkem768` has the three round trips.",
    ]
    return "\n".join(lines) + "\n"


# --- dispatch -------------------------------------------------------------------------------

COMPARISONS: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "paquin-tls": paquin_comparison,
    "strongswan-netem": scenario_comparison,
}
"""The comparison writer of each published source (``SOURCES``)."""


def write_published(results: str | Path) -> Path | None:
    """Write ``published.md`` for the source the run's spec names (``run.json``'s
    ``published``); ``None`` when it names none."""
    out = Path(results)
    meta = read_json(out / "run.json")
    source = meta.get("published")
    if source not in COMPARISONS:
        return None
    text = COMPARISONS[source](out, meta)
    path = out / "published.md"
    path.write_text(text, "utf-8")
    return path


__all__ = [
    "COMPARISONS",
    "loss_grid",
    "paquin_comparison",
    "plot_loss_grid",
    "quantile_failures_last",
    "scenario_comparison",
    "scenario_table",
    "write_published",
]
