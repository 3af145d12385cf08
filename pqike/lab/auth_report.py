"""The report section *Where the bytes go: key exchange against authentication*.

``pqike.lab.report`` adds it when a run's ``handshakes.csv`` holds more than one
authentication kind (its ``auth`` column: ``psk`` or a key type, with ``cert_chain``
certificates sent per peer). Everything comes from the tables:

- bytes: the IP bytes of IKE_SA_INIT + IKE_INTERMEDIATE (the key exchange) against
  IKE_AUTH (the authentication), both directions, first sends only, at each fragment
  size's least impaired profile over the handshakes without a retransmission, with the
  datagrams of each exchange (fragments of the fragmented messages);
- time to established per profile (median and p95, and how many handshakes needed a
  retransmission), and against PSK over the same key exchange: the difference of the
  means with its 95 % percentile-bootstrap interval, called a finding only outside the
  noise (``pqike.lab.metrics.bootstrap_interval``, at least ``MIN_SAMPLE`` established
  handshakes a side);
- the CPU each side spent signing its AUTH and verifying the peer's (chain and
  signature), from the ``*_sign_cpu_s`` / ``*_verify_cpu_s`` columns (``pqike.lab.auth``);
- ML-DSA-87 beside the published strongSwan IKE_AUTH with Dilithium5 certificates
  (``pqike.lab.published``).

The plot ``bytes_ke_vs_auth.png`` stacks key-exchange and authentication bytes per
authentication kind, one panel per fragment size, on a log axis when they span more
than a decade, with p5-p95 whiskers where the bytes vary (ECDSA's DER signatures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from .metrics import bootstrap_interval, describe, outside_noise

PLOT = "bytes_ke_vs_auth.png"
"""The plot the section draws."""
TITLE = "Where the bytes go: key exchange against authentication"

KEY_EXCHANGE = ("IKE_SA_INIT", "IKE_INTERMEDIATE")
"""The exchanges counted as key exchange (RFC 7296 1.2 and RFC 9242 / RFC 9370)."""
AUTHENTICATION = ("IKE_AUTH",)
MIN_SAMPLE = 10
"""Fewest established handshakes a side for a bootstrap verdict."""
_LOG_SPAN = 10.0
# The time findings listed, largest first; the tables above hold every configuration.
_MAX_FINDINGS = 24
_TIME = "time_to_established_s"
_CPU = (
    ("initiator", "sign", "initiator_sign_cpu_s"),
    ("initiator", "verify", "initiator_verify_cpu_s"),
    ("responder", "sign", "responder_sign_cpu_s"),
    ("responder", "verify", "responder_verify_cpu_s"),
)
_AUTH_NAMES = {
    "psk": "PSK",
    "p256": "ECDSA P-256",
    "p384": "ECDSA P-384",
    "p521": "ECDSA P-521",
    "ed25519": "Ed25519",
    "ed448": "Ed448",
    "rsa2048": "RSA-2048",
    "rsa3072": "RSA-3072",
    "rsa4096": "RSA-4096",
    "mldsa44": "ML-DSA-44",
    "mldsa65": "ML-DSA-65",
    "mldsa87": "ML-DSA-87",
}
_KE = re.compile(r"^.*?-prf[a-z0-9]+-")


def applies(hs: pd.DataFrame) -> bool:
    """Whether a run's handshakes have more than one authentication kind."""
    if "auth" not in hs:
        return False
    return len(set(_kinds(hs))) > 1


def _chain(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else int(number)


def _kinds(hs: pd.DataFrame) -> list[tuple[str, int | None]]:
    chains = hs["cert_chain"] if "cert_chain" in hs else pd.Series([None] * len(hs))
    pairs = zip(hs["auth"].astype(str), chains.tolist(), strict=True)
    return list(dict.fromkeys((a, _chain(c)) for a, c in pairs))


def kind_label(auth: str, chain: int | None) -> str:
    """``ML-DSA-87, 2 certs``; ``PSK``."""
    name = _AUTH_NAMES.get(auth, auth)
    if auth == "psk" or chain is None:
        return name
    return f"{name}, {chain} cert{'s' if chain != 1 else ''}"


def ke_label(ike: str) -> str:
    """The key exchange part of an IKE proposal: ``x25519-ke1_mlkem768``."""
    return _KE.sub("", str(ike))


def _bytes(n: float) -> str:
    return "n/a" if n is None or math.isnan(n) else f"{round(n):,}"


def _time(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _configs(hs: pd.DataFrame) -> list[tuple[str, str, str, int | None]]:
    """(proposal, KE, auth, chain) in the order of the run, kinds outermost."""
    first = hs.drop_duplicates("proposal")
    rows = [
        (str(r["proposal"]), ke_label(r["ike_proposal"]), str(r["auth"]), _chain(r["cert_chain"]))
        for _, r in first.iterrows()
    ]
    kinds = list(dict.fromkeys((a, c) for _, _, a, c in rows))
    kes = list(dict.fromkeys(k for _, k, _, _ in rows))
    return sorted(rows, key=lambda r: (kinds.index((r[2], r[3])), kes.index(r[1])))


def _shapes(profiles: pd.DataFrame, names: Sequence[str]) -> list[tuple[int, str, list[str]]]:
    """Per fragment size (MTU, IP version): the least impaired profile and all of them."""
    out: list[tuple[int, str, list[str]]] = []
    table = profiles.loc[list(names)]
    for _, group in table.groupby(["fragment_size", "mtu", "ipv6"], sort=False):
        ranked = group.sort_values(["loss_pct", "jitter_ms", "delay_ms"], kind="stable")
        out.append((int(group["fragment_size"].iloc[0]), str(ranked.index[0]), list(group.index)))
    return out


def exchange_bytes(hs: pd.DataFrame, msgs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Per proposal and repetition at ``profile``: key-exchange and authentication IP
    bytes and datagrams (both directions, first sends), over the established handshakes
    without a retransmission (all established ones when none is without)."""
    ok = hs[(hs["profile"] == profile) & hs["established"].astype(bool)]
    clean = ok[ok["retransmissions"] == 0]
    keys = (clean if not clean.empty else ok)[["proposal", "profile", "repetition"]]
    m = msgs.merge(keys, on=["proposal", "profile", "repetition"])
    m = m[~m["retransmission"].astype(str).eq("True")]
    if m.empty:
        return pd.DataFrame()
    group = m["exchange"].map(
        lambda e: "ke" if e in KEY_EXCHANGE else "auth" if e in AUTHENTICATION else "other"
    )
    m = m.assign(group=group)
    out = m.pivot_table(
        index=["proposal", "repetition"],
        columns="group",
        values="ip_bytes",
        aggfunc="sum",
        fill_value=0,
    )
    dgr = m.pivot_table(
        index=["proposal", "repetition"],
        columns="exchange",
        values="datagrams",
        aggfunc="sum",
        fill_value=0,
    )
    out = out.join(dgr.add_prefix("datagrams_"))
    for column in ("ke", "auth"):
        if column not in out:
            out[column] = 0
    return out.reset_index()


def _range(values: Sequence[float]) -> str:
    d = describe(list(values))
    if d["n"] == 0:
        return "n/a"
    if d["min"] == d["max"]:
        return _bytes(d["median"])
    return f"{_bytes(d['median'])} ({_bytes(d['min'])}-{_bytes(d['max'])})"


def _bytes_tables(hs: pd.DataFrame, msgs: pd.DataFrame, profiles: pd.DataFrame) -> list[str]:
    lines: list[str] = []
    configs = _configs(hs)
    for frag, ref, names in _shapes(profiles, list(dict.fromkeys(hs["profile"]))):
        table = exchange_bytes(hs, msgs, ref)
        if table.empty:
            continue
        lines += [
            f"**Fragment size {frag}**, counted at `{ref}` (the same in "
            f"{', '.join(f'`{n}`' for n in names)}). IP bytes, both directions, median "
            "(min-max where handshakes differ); datagrams per exchange, both directions:",
            "",
        ]
        rows = []
        for proposal, ke, auth, chain in configs:
            at = table[table["proposal"] == proposal]
            if at.empty:
                continue
            ke_b, auth_b = at["ke"].median(), at["auth"].median()
            total = ke_b + auth_b
            dg = [
                str(int(at[f"datagrams_{e}"].median())) if f"datagrams_{e}" in at else "0"
                for e in ("IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH")
            ]
            rows.append(
                [
                    kind_label(auth, chain),
                    ke,
                    _range(at["ke"]),
                    _range(at["auth"]),
                    f"{auth_b / total:.0%}" if total else "n/a",
                    " / ".join(dg),
                ]
            )
        lines += _table(
            [
                "authentication",
                "key exchange",
                "key-exchange bytes (IKE_SA_INIT + IKE_INTERMEDIATE)",
                "authentication bytes (IKE_AUTH)",
                "IKE_AUTH share",
                "datagrams SA_INIT / INTERMEDIATE / AUTH",
            ],
            rows,
        )
    return lines


def _time_tables(hs: pd.DataFrame, profiles: pd.DataFrame) -> list[str]:
    lines: list[str] = []
    configs = _configs(hs)
    names = list(dict.fromkeys(hs["profile"]))
    for frag, _, group in _shapes(profiles, names):
        group = sorted(
            group,
            key=lambda n: (profiles.loc[n, "loss_pct"], profiles.loc[n, "delay_ms"]),
        )
        lines += [
            f"**Fragment size {frag}**: time to established, median / p95, and the share "
            "of handshakes that needed a retransmission:",
            "",
        ]
        headers = [
            "authentication",
            "key exchange",
            *(
                f"{profiles.loc[n, 'delay_ms']:g} ms, {profiles.loc[n, 'loss_pct']:g} % loss"
                for n in group
            ),
        ]
        rows = []
        for proposal, ke, auth, chain in configs:
            row = [kind_label(auth, chain), ke]
            for n in group:
                at = hs[(hs["proposal"] == proposal) & (hs["profile"] == n)]
                ok = at[at["established"].astype(bool)]
                d = describe(ok[_TIME].tolist())
                share = (at["retransmissions"] > 0).mean() if len(at) else math.nan
                row.append(
                    f"{_time(d['median'])} / {_time(d['p95'])} ({share:.0%})"
                    if d["n"]
                    else "none established"
                )
            rows.append(row)
        lines += _table(headers, rows)
    return lines


def _time_findings(hs: pd.DataFrame, profiles: pd.DataFrame) -> list[str]:
    """Time to established against PSK over the same key exchange, per profile: the
    differences outside the noise, and how many were within it."""
    configs = _configs(hs)
    psk = {ke: p for p, ke, auth, _ in configs if auth == "psk"}
    ok = hs[hs["established"].astype(bool)]
    found: list[tuple[float, str]] = []
    within = too_few = 0
    names = list(dict.fromkeys(hs["profile"]))
    for n in names:
        for proposal, ke, auth, chain in configs:
            base = psk.get(ke)
            if auth == "psk" or base is None:
                continue
            a = ok[(ok["proposal"] == proposal) & (ok["profile"] == n)][_TIME].tolist()
            b = ok[(ok["proposal"] == base) & (ok["profile"] == n)][_TIME].tolist()
            if min(len(a), len(b)) < MIN_SAMPLE:
                too_few += 1
                continue
            interval = bootstrap_interval(a, b)
            if not outside_noise(interval):
                within += 1
                continue
            est, low, high = interval
            found.append(
                (
                    est,
                    f"`{n}` ({profiles.loc[n, 'delay_ms']:g} ms, {profiles.loc[n, 'loss_pct']:g} % "
                    f"loss, fragments {int(profiles.loc[n, 'fragment_size'])}): "
                    f"{kind_label(auth, chain)} over {ke} "
                    f"{'+' if est >= 0 else '-'}{_time(abs(est))} "
                    f"[{_time(low)}, {_time(high)}] against PSK",
                )
            )
    lines = [
        "Time to established against PSK over the same key exchange (difference of the "
        "means, 95 % percentile-bootstrap interval): "
        f"{len(found)} differences outside the noise, {within} within it"
        + (f", {too_few} with fewer than {MIN_SAMPLE} handshakes a side" if too_few else "")
        + ".",
        "",
    ]
    if found:
        found.sort(key=lambda item: -abs(item[0]))
        shown = found[:_MAX_FINDINGS]
        lines += [f"- {text}" for _, text in shown]
        if len(found) > len(shown):
            lines.append(f"- ... and {len(found) - len(shown)} more of the same kind")
        lines.append("")
    return lines


def _of_kind(hs: pd.DataFrame, auth: str, chain: int | None) -> pd.DataFrame:
    mask = hs["auth"].astype(str).eq(auth)
    if "cert_chain" in hs:
        mask &= hs["cert_chain"].map(_chain).eq(chain)
    return hs[mask]


def _cpu_table(hs: pd.DataFrame) -> list[str]:
    if not all(c in hs for _, _, c in _CPU):
        return ["No sign/verify CPU columns in `handshakes.csv` (an older run).", ""]
    ok = hs[hs["established"].astype(bool)]
    kinds = [k for k in _kinds(hs) if k[0] != "psk"]
    rows = []
    for auth, chain in kinds:
        at = _of_kind(ok, auth, chain)
        cells = []
        for _, _, column in _CPU:
            d = describe(at[column].tolist())
            cells.append(
                f"{_time(d['median'])}; mean {_time(d['mean'])} "
                f"[{_time(d['ci95_low'])}, {_time(d['ci95_high'])}]"
                if d["n"]
                else "n/a"
            )
        rows.append([kind_label(auth, chain), len(at), *cells])
    lines = [
        "CPU per handshake and side, over every established handshake of the kind (both "
        "key exchanges, every profile: the link does not change it): the median, then the "
        "mean with its 95 % Student-t interval. *Sign*: our AUTH signature; *verify*: the "
        "peer's certificate chain up to the CA and its AUTH signature. PSK handshakes "
        "leave these columns empty.",
        "",
        *_table(
            [
                "authentication",
                "handshakes",
                "initiator sign",
                "initiator verify",
                "responder sign",
                "responder verify",
            ],
            rows,
        ),
    ]
    found = []
    for auth, chain in kinds:
        if auth == "p256" or ("p256", chain) not in kinds:
            continue
        a, b = _of_kind(ok, auth, chain), _of_kind(ok, "p256", chain)
        for side, what, column in _CPU:
            xa, xb = a[column].dropna().tolist(), b[column].dropna().tolist()
            if min(len(xa), len(xb)) < MIN_SAMPLE:
                continue
            interval = bootstrap_interval(xa, xb, ratio=True)
            if outside_noise(interval, ratio=True):
                est, low, high = interval
                found.append(
                    f"{kind_label(auth, chain)}: {side} {what} {est:.2f}x ECDSA P-256's "
                    f"[{low:.2f}, {high:.2f}]"
                )
    if found:
        lines += [
            "Against ECDSA P-256 with the same chain (ratio of the means, 95 % percentile-"
            "bootstrap interval); only the ratios outside the noise:",
            "",
            *(f"- {f}" for f in found),
            "",
        ]
    return lines


def _published_table(hs: pd.DataFrame, msgs: pd.DataFrame, profiles: pd.DataFrame) -> list[str]:
    # Imported here: ``python -m pqike.lab.published`` must find it not yet imported.
    from .published import PUBLISHED, dilithium5_vs_ml_dsa_87

    row = next((p for p in PUBLISHED if p.what.startswith("Dilithium5")), None)
    if row is None:
        return []
    configs = [c for c in _configs(hs) if c[2] == "mldsa87"]
    if not configs:
        return []
    lines = [
        "**ML-DSA-87 beside the published Dilithium5 IKE_AUTH.** " + dilithium5_vs_ml_dsa_87(),
        "",
    ]
    rows = [
        [
            "published strongSwan 6.0 beta, Dilithium5 certificates",
            "1480",
            f"{row.initiator:,} ({row.initiator_fragments})",
            f"{row.responder:,} ({row.responder_fragments})",
        ]
    ]
    for frag, ref, _ in _shapes(profiles, list(dict.fromkeys(hs["profile"]))):
        for proposal, ke, auth, chain in configs:
            cells = []
            for sender in ("initiator", "responder"):
                m = msgs[
                    (msgs["proposal"] == proposal)
                    & (msgs["profile"] == ref)
                    & (msgs["exchange"] == "IKE_AUTH")
                    & (msgs["sender"] == sender)
                    & ~msgs["retransmission"].astype(str).eq("True")
                ]
                if m.empty:
                    cells.append("-")
                    continue
                first = m.iloc[0]
                fragments = int(first["fragments"])
                # As charon logs it: the reassembled message of a fragmented one.
                size = int(first["ike_bytes"]) if fragments else int(first["udp_bytes"])
                cells.append(f"{size:,}" + (f" ({fragments})" if fragments else ""))
            rows.append([f"pqike {kind_label(auth, chain)} over {ke}", str(frag), *cells])
    lines += _table(
        ["IKE_AUTH", "fragment size", "initiator bytes (fragments)", "responder"],
        rows,
    )
    lines += [
        "Bytes as charon logs them: an unfragmented message's UDP payload, a fragmented "
        "message's reassembled IKE bytes. The published figures are that source's "
        "(`pqike.lab.published`), not measured here; `results/sizes-1480/published.md` "
        "has pqike's at the same fragment size, 1480.",
        "",
    ]
    return lines


def section(
    hs: pd.DataFrame, msgs: pd.DataFrame, profiles: pd.DataFrame, plot: str | None
) -> list[str]:
    """The section's Markdown lines for the handshakes and messages of one pair."""
    lines = [f"## {TITLE}", ""]
    lines += [
        "Key exchange is IKE_SA_INIT plus IKE_INTERMEDIATE (the RFC 9370 additional key "
        "exchanges), authentication is IKE_AUTH (identities, AUTH, CERT and CERTREQ, "
        "the Child SA's proposal and selectors). Certificates come from a reproducible "
        "test PKI: the same bytes in every run; ECDSA signatures are DER-encoded "
        "(RFC 7427 3) and vary by a byte or two between handshakes. With certificates "
        "IKE_SA_INIT also carries SIGNATURE_HASH_ALGORITHMS (RFC 7427 4) and the response "
        "a CERTREQ (RFC 7296 3.7): counted here as key exchange, since that is the "
        "exchange they travel in.",
        "",
    ]
    if plot:
        lines += [f"![Key-exchange against authentication bytes]({plot})", ""]
    if not msgs.empty:
        lines += ["### Bytes and datagrams", "", *_bytes_tables(hs, msgs, profiles)]
    lines += ["### Time to established", "", *_time_tables(hs, profiles)]
    lines += _time_findings(hs, profiles)
    lines += ["### Sign and verify CPU per side", "", *_cpu_table(hs)]
    if not msgs.empty:
        lines += _published_table(hs, msgs, profiles)
    return lines


def plot(hs: pd.DataFrame, msgs: pd.DataFrame, profiles: pd.DataFrame, path: Path) -> bool:
    """Stacked bars of key-exchange and authentication bytes per authentication kind
    and key exchange, one panel per fragment size; ``False`` when there is nothing."""
    if msgs.empty:
        return False
    shapes = _shapes(profiles, list(dict.fromkeys(hs["profile"])))
    configs = _configs(hs)
    tables = [(frag, ref, exchange_bytes(hs, msgs, ref)) for frag, ref, _ in shapes]
    tables = [t for t in tables if not t[2].empty]
    if not tables:
        return False
    totals = [
        float(t.loc[t["proposal"] == p, "ke"].median() + t.loc[t["proposal"] == p, "auth"].median())
        for _, _, t in tables
        for p, *_ in configs
        if (t["proposal"] == p).any()
    ]
    kes_all = [
        float(t.loc[t["proposal"] == p, "ke"].median())
        for _, _, t in tables
        for p, *_ in configs
        if (t["proposal"] == p).any()
    ]
    finite = [v for v in [*totals, *kes_all] if v > 0]
    log = bool(finite) and max(finite) / min(finite) > _LOG_SPAN
    kinds = list(dict.fromkeys((a, c) for _, _, a, c in configs))
    kes = list(dict.fromkeys(k for _, k, _, _ in configs))
    fig, axes = plt.subplots(
        1,
        len(tables),
        figsize=(5.2 * len(tables), 0.42 * len(kinds) * len(kes) + 2.2),
        sharey=True,
        squeeze=False,
    )
    height = 0.8 / len(kes)
    hatches = ("", "//", "..", "xx")
    for ax, (frag, ref, t) in zip(axes[0], tables, strict=True):
        for j, ke in enumerate(kes):
            ys, ke_v, auth_v, err_y, err_x, lo, hi = [], [], [], [], [], [], []
            for i, kind in enumerate(kinds):
                p = next((c[0] for c in configs if (c[2], c[3]) == kind and c[1] == ke), None)
                at = t[t["proposal"] == p] if p is not None else t.iloc[0:0]
                if at.empty:
                    continue
                y = i + (j - (len(kes) - 1) / 2) * height
                k, a = float(at["ke"].median()), float(at["auth"].median())
                ys.append(y)
                ke_v.append(k)
                auth_v.append(a)
                d = describe((at["auth"] + at["ke"]).tolist())
                if d["p95"] > d["p5"]:
                    # Only where the handshakes differ (ECDSA's DER signatures).
                    err_y.append(y)
                    err_x.append(k + a)
                    lo.append(max(0.0, k + a - d["p5"]))
                    hi.append(max(0.0, d["p95"] - k - a))
            hatch = hatches[j % len(hatches)]
            ax.barh(
                ys,
                ke_v,
                height=height,
                color="tab:blue",
                hatch=hatch,
                edgecolor="white",
                label=f"key exchange, {ke}",
            )
            ax.barh(
                ys,
                auth_v,
                left=ke_v,
                height=height,
                color="tab:orange",
                hatch=hatch,
                edgecolor="white",
                label=f"authentication, {ke}",
            )
            if err_y:
                ax.errorbar(
                    err_x,
                    err_y,
                    xerr=[lo, hi],
                    fmt="none",
                    ecolor="black",
                    capsize=2,
                    elinewidth=0.8,
                )
        if log:
            # Bars start at zero: on a log axis the smallest segment must stay visible.
            ax.set_xlim(left=min(finite) / 3)
        ax.set_yticks(range(len(kinds)), [kind_label(a, c) for a, c in kinds], fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(
            "IP bytes, both directions"
            + (" (log scale)" if log else "")
            + "\nwhiskers: p5-p95 of the total where handshakes differ",
            fontsize=8,
        )
        ax.set_title(f"fragment size {frag} ({ref})", fontsize=9)
        ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(
        "Key exchange (IKE_SA_INIT + IKE_INTERMEDIATE) against authentication (IKE_AUTH)",
        fontsize=10,
    )
    # The legend's rows (about a third of an inch each) below the panels.
    inches = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.35 * (len(kes) + 1) / inches, 1, 1 - 0.4 / inches))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = [
    "AUTHENTICATION",
    "KEY_EXCHANGE",
    "PLOT",
    "TITLE",
    "applies",
    "exchange_bytes",
    "ke_label",
    "kind_label",
    "plot",
    "section",
]
