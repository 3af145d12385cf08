"""Plots and ``report.md`` of an experiment, computed from its CSV tables alone.

``build_report(out)`` reads ``handshakes.csv`` and ``messages.csv`` (and ``run.json``,
``environment.json`` when present), rewrites ``summary.csv``, draws the PNG plots with
matplotlib's Agg backend and writes ``report.md``. Every number in the report is
computed here from the tables; nothing is typed by hand.

What the report calls *time to established* is ``time_to_established_s``: for
simulated pairs the virtual time until both peers are established with each step's
measured CPU added, for real peers the wall time. *Network-only* time is
``sim_time_s``, which is exact and repeatable for a seed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

from .compare import (
    log_agreement,
    log_findings,
    log_section,
    payload_differences,
    payload_findings,
    payload_section,
)
from .metrics import describe, summarize

PLOTS = {
    "bytes": "bytes_per_exchange.png",
    "delay": "latency_vs_delay.png",
    "cdf": "latency_cdf.png",
    "overhead": "overhead_vs_baseline.png",
    "pairs": "pairs_compared.png",
}
"""The PNG files ``build_report`` draws (a plot without data is left out)."""

_EXCHANGES = ("IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH", "INFORMATIONAL")
_ADDKE = re.compile(r"(?:^|-)ke(\d)_([a-z0-9]+)")
_PROFILE_COLUMNS = ("delay_ms", "jitter_ms", "loss_pct", "mtu", "fragment_size", "bandwidth_kbps")
_SHAPE = ("jitter_ms", "mtu", "fragment_size", "bandwidth_kbps", "ipv6")


@dataclass
class _Data:
    hs_all: pd.DataFrame
    hs: pd.DataFrame
    ok: pd.DataFrame
    msgs: pd.DataFrame
    meta: dict[str, Any]
    env: dict[str, Any]
    pair: str
    proposals: list[str]
    profiles: pd.DataFrame
    baseline: str
    highlight: str | None
    ref: str
    delay_series: list[str]
    datagrams: pd.DataFrame
    payloads: pd.DataFrame
    diffs: pd.DataFrame
    """Payload differences of each pair against pqike <-> pqike (``pqike.lab.compare``)."""
    diff_reference: str | None
    agreement: pd.DataFrame
    """Captured datagram sizes against the peers' own logs."""


# --- entry point --------------------------------------------------------------------


def build_report(out: str | Path) -> Path:
    """Rebuild ``summary.csv``, the plots and ``report.md`` in ``out``; return the report.

    Needs ``handshakes.csv`` (and ``messages.csv`` for the per-exchange numbers) in
    ``out``; raises ``FileNotFoundError`` when the handshakes table is missing.
    """
    out = Path(out)
    data = _load(out)
    summarize(data.hs_all).to_csv(out / "summary.csv", index=False)
    drawn: dict[str, str | None] = {}
    for key, draw in (
        ("bytes", _plot_bytes),
        ("delay", _plot_delay),
        ("cdf", _plot_cdf),
        ("overhead", _plot_overhead),
        ("pairs", _plot_pairs),
    ):
        path = out / PLOTS[key]
        ok = draw(data, path)
        if not ok and path.exists():
            path.unlink()
        drawn[key] = PLOTS[key] if ok else None
    report = out / "report.md"
    report.write_text(_markdown(data, drawn), "utf-8")
    return report


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _load(out: Path) -> _Data:
    hs_all = pd.read_csv(out / "handshakes.csv")
    if hs_all.empty:
        raise ValueError(f"{out / 'handshakes.csv'} has no handshakes")
    hs_all["established"] = hs_all["established"].astype(bool)
    msgs_all = _read_csv(out / "messages.csv")
    meta = _read_json(out / "run.json")
    env = _read_json(out / "environment.json")
    pairs = list(dict.fromkeys(hs_all["pair"]))
    pair = "memory" if "memory" in pairs else pairs[0]
    hs = hs_all[hs_all["pair"] == pair].copy()
    if not msgs_all.empty:
        msgs = msgs_all[msgs_all["pair"] == pair].copy()
    else:
        msgs = msgs_all
    proposals = list(dict.fromkeys(hs["proposal"]))
    profiles = hs.groupby("profile", sort=False)[[*_PROFILE_COLUMNS, "ipv6"]].first()
    baseline = meta.get("baseline")
    if baseline not in proposals:
        baseline = proposals[0]
    highlight = meta.get("highlight")
    if highlight not in proposals:
        highlight = next((p for p in proposals if p != baseline), None)
    ref, series = _reference(profiles)
    datagrams = _read_csv(out / "datagrams.csv")
    payloads = _read_csv(out / "payloads.csv")
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
        baseline,
        highlight,
        ref,
        series,
        datagrams,
        payloads,
        diffs,
        diff_reference,
        log_agreement(datagrams),
    )


def _clean(profiles: pd.DataFrame) -> pd.DataFrame:
    return profiles[
        (profiles["loss_pct"] == 0)
        & (profiles["jitter_ms"] == 0)
        & (profiles["bandwidth_kbps"].isna())
    ]


def _shape(row: pd.Series) -> tuple:
    return tuple(None if pd.isna(row[c]) else row[c] for c in _SHAPE)


def _reference(profiles: pd.DataFrame) -> tuple[str, list[str]]:
    """The reference profile (clean, smallest delay, most common shape) and its delay series.

    The delay series is every clean profile of the same shape, one per delay, by delay.
    """
    clean = _clean(profiles)
    if clean.empty:
        return str(profiles.index[0]), [str(profiles.index[0])]
    shapes = [_shape(row) for _, row in clean.iterrows()]
    common = max(shapes, key=shapes.count)
    same = clean[[s == common for s in shapes]].sort_values("delay_ms", kind="stable")
    series = same[~same["delay_ms"].duplicated()]
    return str(series.index[0]), [str(p) for p in series.index]


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


# --- analyses ------------------------------------------------------------------------


def _bytes_per_exchange(data: _Data) -> pd.DataFrame:
    """Median IP bytes per exchange and proposal at the reference profile."""
    m = _messages_of(data, _clean_handshakes(data, data.ref))
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
        at = _at(data.hs, p, data.ref)
        ok = at[at["established"]]
        neg = ok["negotiated"].iloc[0] if len(ok) else "-"
        cpu = ok["cpu_initiator_s"] + ok["cpu_responder_s"]
        rows.append(
            [
                p,
                f"`{neg}`",
                _num(_median(ok, "round_trips")),
                _num(_median(ok, "datagrams")),
                _num(_median(ok, "fragments")),
                _bytes(_median(ok, "ike_bytes")),
                _bytes(_median(ok, "udp_bytes")),
                _bytes(_median(ok, "ip_bytes")),
                _bytes(_median(ok, "largest_datagram_ip")),
                _time(_median(ok, "sim_time_s")),
                _time(_median(ok, "time_to_established_s")),
                _time(float(cpu.median()) if len(cpu.dropna()) else math.nan),
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
    """Per delay-series profile: time added per round trip, fitted over the proposals."""
    out = []
    for prof in data.delay_series:
        xs, ys_net, ys_cpu = [], [], []
        for p in data.proposals:
            ok = _at(data.ok, p, prof)
            if ok.empty:
                continue
            xs.append(_median(ok, "round_trips"))
            ys_net.append(_median(ok, "sim_time_s"))
            ys_cpu.append(_median(ok, "time_to_established_s"))
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
    """Per proposal and (fragment size, MTU): which messages fragment, sizes, success."""
    shapes = data.profiles.groupby(["fragment_size", "mtu", "ipv6"], sort=False)
    out = []
    for (frag, mtu, ipv6), group in shapes:
        names = list(group.index)
        lossless = [n for n in names if data.profiles.loc[n, "loss_pct"] == 0] or names
        for p in data.proposals:
            m = _first_handshake_messages(data, p, lossless[0])
            hs = data.hs[(data.hs["proposal"] == p) & (data.hs["profile"].isin(lossless))]
            fragmented = [
                f"{row.exchange} {'response' if row.is_response else 'request'} "
                f"({int(row.fragments)})"
                for row in m.itertuples()
                if row.fragments
            ]
            overhead = 48 if bool(ipv6) else 28
            protected = m[m["exchange"] != "IKE_SA_INIT"]
            largest_message = (
                float(protected["ike_bytes"].max()) + overhead if len(protected) else math.nan
            )
            init = m[(m["exchange"] == "IKE_SA_INIT") & (~m["is_response"].astype(bool))]
            init_resp = m[(m["exchange"] == "IKE_SA_INIT") & (m["is_response"].astype(bool))]
            out.append(
                {
                    "proposal": p,
                    "fragment_size": int(frag),
                    "mtu": int(mtu),
                    "ipv6": bool(ipv6),
                    "fragmented": fragmented,
                    "largest": _median(hs, "largest_datagram_ip"),
                    "largest_message": largest_message,
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


def _loss_groups(data: _Data) -> list[tuple[str, list[str]]]:
    """Profiles that differ only in loss, grouped; each group sorted by loss."""
    key_cols = ["delay_ms", *_SHAPE]
    groups: dict[tuple, list[str]] = {}
    for name, row in data.profiles.iterrows():
        key = tuple(None if pd.isna(row[c]) else row[c] for c in key_cols)
        groups.setdefault(key, []).append(str(name))
    out = []
    for names in groups.values():
        losses = {float(data.profiles.loc[n, "loss_pct"]) for n in names}
        if len(losses) < 2:
            continue
        names = sorted(names, key=lambda n: float(data.profiles.loc[n, "loss_pct"]))
        out.append((_profile_text(data.profiles, names[0]).split(", ")[0], names))
    return out


def _loss_row(data: _Data, proposal: str, profile: str) -> dict[str, Any]:
    at = _at(data.hs, proposal, profile)
    ok = at[at["established"]]
    stats = describe(ok["time_to_established_s"].tolist())
    return {
        "loss": float(data.profiles.loc[profile, "loss_pct"]),
        "handshakes": len(at),
        "established": len(ok),
        "retransmitted": int((at["retransmissions"] > 0).sum()),
        "mean_retransmissions": float(at["retransmissions"].mean()) if len(at) else math.nan,
        **stats,
    }


# --- plots ---------------------------------------------------------------------------


def _rotate(ax: Any) -> None:
    for label in ax.get_xticklabels():
        label.set_rotation(25)
        label.set_horizontalalignment("right")
        label.set_fontsize(8)


def _plot_bytes(data: _Data, path: Path) -> bool:
    table = _bytes_per_exchange(data)
    if table.empty:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 4.5))
    bottom = pd.Series(0.0, index=table.index)
    for exchange in table.columns:
        ax.bar(table.index, table[exchange], bottom=bottom, label=exchange)
        bottom += table[exchange]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{round(total):,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("IP bytes per handshake (both directions)")
    ax.set_title(f"Bytes per exchange ({_profile_text(data.profiles, data.ref)})", fontsize=9)
    ax.legend(fontsize=8)
    _rotate(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_delay(data: _Data, path: Path) -> bool:
    if len(data.delay_series) < 2:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    delays = [float(data.profiles.loc[p, "delay_ms"]) for p in data.delay_series]
    for p in data.proposals:
        med, low, high, net = [], [], [], []
        for prof in data.delay_series:
            ok = _at(data.ok, p, prof)
            s = describe(ok["time_to_established_s"].tolist())
            med.append(s["median"] * 1000)
            low.append((s["median"] - s["p5"]) * 1000)
            high.append((s["p95"] - s["median"]) * 1000)
            net.append(_median(ok, "sim_time_s") * 1000)
        line = ax.errorbar(delays, med, yerr=[low, high], marker="o", capsize=3, label=p)
        if not all(math.isnan(v) for v in net):
            ax.plot(delays, net, linestyle=":", color=line[0].get_color(), linewidth=1)
    ax.set_xlabel("one-way delay (ms)")
    ax.set_ylabel("time to established (ms)")
    ax.set_title("Median time to established (bars: p5-p95; dotted: network only)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_cdf(data: _Data, path: Path) -> bool:
    profiles = [str(p) for p in data.profiles.index]
    if data.ok.empty:
        return False
    cols = min(3, len(profiles))
    rows = math.ceil(len(profiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, prof in zip(axes.flat, profiles, strict=False):
        values = data.ok[data.ok["profile"] == prof]["time_to_established_s"].dropna()
        for p in data.proposals:
            xs = sorted(
                data.ok[(data.ok["profile"] == prof) & (data.ok["proposal"] == p)][
                    "time_to_established_s"
                ].dropna()
                * 1000
            )
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=p)
        if len(values) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_profile_text(data.profiles, prof), fontsize=7)
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


def _plot_overhead(data: _Data, path: Path) -> bool:
    others = [p for p in data.proposals if p != data.baseline]
    base = _at(data.ok, data.baseline, data.ref)
    if not others or base.empty:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    base_bytes = _median(base, "ip_bytes")
    ratios = [_median(_at(data.ok, p, data.ref), "ip_bytes") / base_bytes - 1 for p in others]
    left.bar(others, [r * 100 for r in ratios], color="tab:orange")
    left.set_ylabel(f"IP bytes relative to {data.baseline} (%)")
    left.set_title(f"Bytes ({_profile_text(data.profiles, data.ref)})", fontsize=8)
    _rotate(left)
    width = 0.8 / max(1, len(data.delay_series))
    for j, prof in enumerate(data.delay_series):
        b = _median(_at(data.ok, data.baseline, prof), "time_to_established_s")
        vals = [
            (_median(_at(data.ok, p, prof), "time_to_established_s") / b - 1) * 100 for p in others
        ]
        xs = [i + (j - (len(data.delay_series) - 1) / 2) * width for i in range(len(others))]
        right.bar(xs, vals, width=width, label=f"{_num(data.profiles.loc[prof, 'delay_ms'])} ms")
    right.set_xticks(range(len(others)), others)
    _rotate(right)
    right.set_ylabel(f"median time to established relative to {data.baseline} (%)")
    right.set_title("Latency, by one-way delay", fontsize=8)
    right.legend(fontsize=8, title="one-way delay", title_fontsize=8)
    for ax in (left, right):
        ax.axhline(0, color="black", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_pairs(data: _Data, path: Path) -> bool:
    """IP bytes and median time to established per proposal, one bar per peer pair."""
    pairs = list(dict.fromkeys(data.hs_all["pair"]))
    if len(pairs) < 2:
        return False
    ok = data.hs_all[data.hs_all["established"]]
    profiles = [data.ref] + [p for p in data.delay_series if p != data.ref]
    panels = [("ip_bytes", data.ref)] + [("time_to_established_s", p) for p in profiles]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    width = 0.8 / len(pairs)
    proposals = list(dict.fromkeys(data.hs_all["proposal"]))
    for ax, (metric, prof) in zip(axes.flat, panels, strict=True):
        for j, pair in enumerate(pairs):
            values = []
            for p in proposals:
                at = ok[(ok["proposal"] == p) & (ok["pair"] == pair) & (ok["profile"] == prof)]
                v = _median(at, metric)
                values.append(v * 1000 if metric.endswith("_s") else v)
            xs = [i + (j - (len(pairs) - 1) / 2) * width for i in range(len(proposals))]
            ax.bar(xs, values, width=width, label=pair)
        ax.set_xticks(range(len(proposals)), proposals)
        _rotate(ax)
        if metric == "ip_bytes":
            ax.set_ylabel("IP bytes per handshake (median)")
            ax.set_title(f"Bytes at `{prof}`", fontsize=9)
        else:
            ax.set_ylabel("time to established (ms, median)")
            ax.set_title(f"Time at `{prof}` ({_profile_text(data.profiles, prof)})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --- the report ----------------------------------------------------------------------


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
        f"{hs['profile'].nunique()} network profiles x up to {reps} repetitions; "
        f"{int(hs['established'].sum())} established.",
    ]
    if machine:
        lines.append(
            f"- Machine: {machine.get('cpu', '?')} ({machine.get('cpus', '?')} CPUs), "
            f"{machine.get('platform', '?')}; Python {env.get('python', '?')}, "
            f"pqike {packages.get('pqike', '?')}, cryptography {packages.get('cryptography', '?')}"
            f" ({env.get('openssl') or 'OpenSSL ?'})."
        )
    lines += [
        f"- Baseline: **{data.baseline}**"
        + (f"; highlighted: **{data.highlight}**" if data.highlight else "")
        + f". Reference profile: `{data.ref}` ({_profile_text(data.profiles, data.ref)}).",
        "",
        "*Time to established* is the simulated time until both peers are established, with "
        "the CPU each peer really spent on every step added (it varies a little from run to "
        "run); *network-only* time leaves the CPU out and is exact for a given seed. "
        "Statistics are over the handshakes that established.",
        "",
        "## Findings",
        "",
    ]
    lines += _findings(data)
    lines += ["", f"## Configurations at `{data.ref}`", ""]
    lines.append(
        _table(
            [
                "proposal",
                "negotiated",
                "round trips",
                "datagrams",
                "fragments",
                "IKE bytes",
                "UDP bytes",
                "IP bytes",
                "largest IP datagram",
                "network-only",
                "time to established",
                "CPU (both peers)",
                "established",
            ],
            _config_rows(data),
        )
    )
    lines += ["", "Times are medians. Bytes count every datagram sent by both peers.", ""]

    lines += ["## Bytes per exchange", ""]
    table = _bytes_per_exchange(data)
    if plots.get("bytes"):
        lines += [f"![IP bytes per exchange]({plots['bytes']})", ""]
    if not table.empty:
        headers = ["proposal", *table.columns, "total"]
        rows = [
            [p, *(_bytes(v) for v in table.loc[p]), _bytes(float(table.loc[p].sum()))]
            for p in table.index
        ]
        lines += [_table(headers, rows), ""]

    lines += _rounds_section(data)
    lines += _fragmentation_section(data)
    lines += _loss_section(data)

    lines += ["## Latency", ""]
    if plots.get("delay"):
        lines += [f"![Time to established against one-way delay]({plots['delay']})", ""]
    if len(data.delay_series) >= 1:
        headers = ["proposal"] + [
            f"{_num(data.profiles.loc[p, 'delay_ms'])} ms" for p in data.delay_series
        ]
        rows = []
        for p in data.proposals:
            cells = []
            for prof in data.delay_series:
                ok = _at(data.ok, p, prof)
                cells.append(
                    f"{_time(_median(ok, 'time_to_established_s'))} "
                    f"({_time(_median(ok, 'sim_time_s'))} network)"
                )
            rows.append([p, *cells])
        lines += [
            "Median time to established (network-only in brackets) by one-way delay:",
            "",
            _table(headers, rows),
            "",
        ]
    if plots.get("cdf"):
        lines += [
            "Distribution of the time to established in every profile:",
            "",
            f"![Latency CDFs]({plots['cdf']})",
            "",
        ]
    if plots.get("overhead"):
        lines += [
            f"## Overhead relative to {data.baseline}",
            "",
            f"![Overhead relative to the baseline]({plots['overhead']})",
            "",
        ]
    if hs["pair"].nunique() > 1:
        lines += _pairs_section(data)
        if plots.get("pairs"):
            lines += [
                f"![Time to established and bytes by peer pair]({plots['pairs']})",
                "",
            ]
    if data.diff_reference is not None:
        lines += payload_section(data.diffs, reference=data.diff_reference, profile=data.ref)
    lines += log_section(data.agreement)
    lines += [
        "## Method",
        "",
        "- Peers (`memory`): two pqike `IkeSa` objects (PSK) over a simulated link in "
        "virtual time (`pqike.lab.link`): each direction has the profile's one-way delay, "
        "uniform jitter, per-datagram loss from a seeded random stream, bandwidth "
        "serialisation and an MTU above which datagrams are dropped. Real pairs (`udp`: two "
        "pqike endpoints over loopback UDP) get the same model from the user-space relay "
        "(`pqike.lab.relay`) in wall-clock time. Retransmission follows strongSwan's "
        "defaults unless the spec changes them.",
        "- Bytes: IKE message, UDP payload (non-ESP marker included) and IP datagram "
        "(UDP + IPv4/IPv6 header); retransmissions are included.",
        "- Round trips: request/response exchanges, not counting retransmissions.",
        "- Mean ± 95 % confidence interval: Student's t over the established handshakes; "
        "p5/p95 by linear interpolation. `summary.csv` has every metric per configuration.",
        "- Every handshake of a profile and repetition uses the same link seed whatever the "
        "proposal, so proposals are compared on the same random draws.",
    ]
    if any("strongswan" in str(p) for p in hs["pair"].unique()):
        lines.append(
            "- strongSwan pairs (`pqike-strongswan`, `strongswan-pqike`, `strongswan`): "
            "charon 6.0.1 and pqike on ports 500/4500 in two network namespaces "
            "(`interop/lab.py`); the profile is applied on the IP path by "
            "`pqike.lab.tun_relay`, which also logs every datagram (no NAT between the "
            "peers). Time to established runs from the first IKE_SA_INIT datagram leaving "
            "the initiator to the last IKE_AUTH response datagram reaching it; CPU is "
            "measured for pqike peers only (`pqike.lab.strongswan_pairs`). charon logs at "
            "level 4 for IKE (the keys that decrypt its messages), which adds to its "
            "processing time: at 0 ms delay its times are upper bounds."
        )
    lines.append("")
    return "\n".join(lines)


def _findings(data: _Data) -> list[str]:
    out: list[str] = []
    b, h, ref = data.baseline, data.highlight, data.ref
    base = _at(data.ok, b, ref)
    if h is not None:
        hi = _at(data.ok, h, ref)
        if not base.empty and not hi.empty:
            bb, hb = _median(base, "ip_bytes"), _median(hi, "ip_bytes")
            out.append(
                f"- **Bytes:** {h} sends {_bytes(hb)} IP bytes per handshake against "
                f"{_bytes(bb)} for {b}: {_bytes(hb - bb)} more ({_pct(hb / bb - 1)}), in "
                f"{_num(_median(hi, 'datagrams'))} datagrams instead of "
                f"{_num(_median(base, 'datagrams'))} and "
                f"{_num(_median(hi, 'round_trips'))} round trips instead of "
                f"{_num(_median(base, 'round_trips'))}."
            )
            parts = []
            for prof in data.delay_series:
                bt = _median(_at(data.ok, b, prof), "time_to_established_s")
                ht = _median(_at(data.ok, h, prof), "time_to_established_s")
                bn = _median(_at(data.ok, b, prof), "sim_time_s")
                hn = _median(_at(data.ok, h, prof), "sim_time_s")
                parts.append(
                    f"at {_num(data.profiles.loc[prof, 'delay_ms'])} ms one-way delay "
                    f"{_time(ht)} against {_time(bt)} ({_pct(ht / bt - 1) if bt else 'n/a'}; "
                    f"network-only {_time(hn)} against {_time(bn)})"
                )
            if parts:
                out.append(
                    f"- **Latency:** median time to established of {h} vs {b}: "
                    + "; ".join(parts)
                    + "."
                )
            bc = float((base["cpu_initiator_s"] + base["cpu_responder_s"]).median())
            hc = float((hi["cpu_initiator_s"] + hi["cpu_responder_s"]).median())
            if not (math.isnan(bc) or math.isnan(hc)):
                out.append(
                    f"- **CPU:** both peers together spend {_time(hc)} on a {h} handshake "
                    f"against {_time(bc)} for {b} (median, this machine)."
                )
    costs = _round_costs(data)
    if not costs.empty:
        per = costs.groupby("method", sort=False)[["ip_bytes", "datagrams"]].median()
        bits = [
            f"{m}: {_bytes(r['ip_bytes'])} IP bytes in {_num(r['datagrams'])} datagrams"
            for m, r in per.iterrows()
        ]
        lat = [
            f"{_time(r['network'])} at {_num(r['delay_ms'])} ms"
            for r in _round_latency(data)
            if not math.isnan(r["network"])
        ]
        text = "- **Each added round** (one IKE_INTERMEDIATE exchange) costs " + "; ".join(bits)
        if lat:
            text += ", and adds network-only time per round trip of " + ", ".join(lat)
        out.append(text + " (fitted over the proposals).")
    frag = _fragmentation(data)
    for size in sorted({f["fragment_size"] for f in frag}):
        rows: dict[str, dict[str, Any]] = {}
        for f in frag:
            if f["fragment_size"] == size:
                rows.setdefault(f["proposal"], f)  # the first (reference-like) MTU

        def listed(names: list[str], rows: dict = rows) -> str:
            return ", ".join(f"{n} ({_bytes(rows[n]['largest_message'])})" for n in names)

        yes = [p for p in data.proposals if p in rows and rows[p]["fragmented"]]
        no = [p for p in data.proposals if p in rows and not rows[p]["fragmented"]]
        out.append(
            f"- **Fragmentation** at a fragment size of {size} IP bytes (largest encrypted "
            "message, unfragmented, in brackets): "
            + (f"{listed(yes)} fragment" if yes else "no proposal fragments")
            + (f"; {listed(no)} do not" if no else "")
            + "."
        )
    blocked = [f for f in frag if f["sa_init_request"] > f["mtu"]]
    for f in blocked:
        out.append(
            f"- **Unfragmentable IKE_SA_INIT:** {f['proposal']} sends a "
            f"{_bytes(f['sa_init_request'])}-byte IKE_SA_INIT request, which RFC 7383 cannot "
            f"fragment; over an MTU of {f['mtu']} it established in "
            f"{_share(f['established'], f['handshakes'])} handshakes."
        )
    for label, names in _loss_groups(data):
        who = h or b
        rows = [_loss_row(data, who, n) for n in names]
        base_row = rows[0]
        parts = []
        for r in rows[1:]:
            parts.append(
                f"{_num(r['loss'])} % loss: mean {_time(r['mean'])} "
                f"[{_time(r['ci95_low'])}, {_time(r['ci95_high'])}], p95 {_time(r['p95'])}, "
                f"{_share(r['retransmitted'], r['handshakes'])} retransmitted, "
                f"{_share(r['established'], r['handshakes'])} established"
            )
        out.append(
            f"- **Loss** ({label}, {who}): with {_num(base_row['loss'])} % loss the mean time "
            f"to established is {_time(base_row['mean'])} (p95 {_time(base_row['p95'])}); "
            + "; ".join(parts)
            + "."
        )
        worst = names[-1]
        rows = [(p, _loss_row(data, p, worst)) for p in data.proposals]
        if len(rows) > 1:
            out.append(
                f"  At {_num(data.profiles.loc[worst, 'loss_pct'])} % loss, by proposal: "
                + "; ".join(
                    f"{p} needed a retransmission in "
                    f"{_share(r['retransmitted'], r['handshakes'])} handshakes "
                    f"(mean {_time(r['mean'])}, p95 {_time(r['p95'])})"
                    for p, r in rows
                )
                + "."
            )
    if data.hs_all["pair"].nunique() > 1:
        out += _pair_findings(data)
    if data.diff_reference is not None and not data.diffs.empty:
        out += payload_findings(data.diffs, reference=data.diff_reference)
    out += log_findings(data.agreement)
    if not out:
        out.append("- Not enough data for findings.")
    return out


def _rounds_section(data: _Data) -> list[str]:
    costs = _round_costs(data)
    lines = ["## Cost of each added round", ""]
    if costs.empty:
        return [*lines, "No proposal has an additional key exchange.", ""]
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
    if any(not math.isnan(r["network"]) for r in lat):
        lines += [
            "Time added per round trip, least-squares slope of the median time against the "
            "number of round trips over the proposals:",
            "",
            _table(
                ["one-way delay", "network-only", "with CPU", "proposals"],
                [
                    [
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
        "fragmented. Per proposal and fragment size / MTU (first sends of one handshake):",
        "",
    ]
    rows = [
        [
            f["proposal"],
            f["fragment_size"],
            f["mtu"],
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
                "fragment size",
                "MTU",
                "largest encrypted message, unfragmented (IP)",
                "fragmented messages (fragments)",
                "largest IP datagram",
                "IKE_SA_INIT req / resp (IP)",
                "MTU drops",
                "established (loss-free profiles)",
            ],
            rows,
        ),
        "",
    ]
    return lines


def _retransmit_text(meta: dict[str, Any]) -> str:
    timeout = meta.get("retransmit_timeout_s")
    tries = meta.get("retransmit_tries")
    if timeout is None or tries is None:
        return "strongSwan's schedule unless the spec changes it"
    # pqike's IkeSa uses strongSwan's back-off: timeout * 1.8**n before try n.
    return f"first after {_num(float(timeout))} s, then 1.8 times longer each try, {tries} tries"


def _loss_section(data: _Data) -> list[str]:
    groups = _loss_groups(data)
    if not groups:
        return []
    lines = [
        "## Loss and completion time",
        "",
        "A lost datagram is recovered by the initiator's retransmission timer "
        f"({_retransmit_text(data.meta)}); the responder answers a retransmitted "
        "request from its cache. Time to established, per loss rate:",
        "",
    ]
    for label, names in groups:
        rows = []
        for p in data.proposals:
            for n in names:
                r = _loss_row(data, p, n)
                rows.append(
                    [
                        p,
                        f"{_num(r['loss'])} %",
                        _share(r["established"], r["handshakes"]),
                        _time(r["median"]),
                        f"{_time(r['mean'])} [{_time(r['ci95_low'])}, {_time(r['ci95_high'])}]",
                        _time(r["p95"]),
                        f"{r['mean_retransmissions']:.2f}",
                        _share(r["retransmitted"], r["handshakes"]),
                    ]
                )
        lines += [
            f"### {label}",
            "",
            _table(
                [
                    "proposal",
                    "loss",
                    "established",
                    "median",
                    "mean [95 % CI]",
                    "p95",
                    "retransmissions (mean)",
                    "handshakes with a retransmission",
                ],
                rows,
            ),
            "",
        ]
    return lines


def _pair_comparison(data: _Data) -> list[dict[str, Any]]:
    """Per configuration: median time and bytes of each pair next to the primary pair's."""
    hs = data.hs_all[data.hs_all["established"]]
    rows = []
    for (p, prof), g in hs.groupby(["proposal", "profile"], sort=False):
        row: dict[str, Any] = {"proposal": p, "profile": prof}
        for pair, gp in g.groupby("pair", sort=False):
            row[pair] = {
                "time": _median(gp, "time_to_established_s"),
                "ip_bytes": _median(gp, "ip_bytes"),
                "datagrams": _median(gp, "datagrams"),
                "n": len(gp),
            }
        rows.append(row)
    return rows


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
        headers += [f"{pair}: time to established", f"{pair}: IP bytes", f"{pair}: established"]
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
                _time(m["time"]) if m else "n/a",
                _bytes(m["ip_bytes"]) if m else "n/a",
                _share(int(at["established"].sum()), len(at)),
            ]
        rows.append(cells)
    return [
        "## Peer pairs compared",
        "",
        f"The sections above use the `{data.pair}` pair. Medians per configuration and pair "
        "(simulated pairs: virtual time with measured CPU; real pairs: wall-clock time):",
        "",
        *_pair_findings(data),
        "",
        _table(headers, rows),
        "",
    ]


__all__ = ["PLOTS", "build_report"]
