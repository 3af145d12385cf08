"""The report's *IKEv1 against IKEv2* section: what the protocol version costs.

For runs with the ``strongswan-ikev1`` pair beside an IKEv2 pair: messages, requests,
round trips and bytes of each proposal's handshake, its time in every profile, and the
Child SA rekey (``phases = ["child"]``): quick mode against CREATE_CHILD_SA. Every number
is computed from ``handshakes.csv``, ``messages.csv`` and ``phases.csv``; the savings are
stated from the same tables (IKEv2 classical against each IKEv1 mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from .metrics import HANDSHAKE_PHASE, describe
from .spec import IKEV1_PAIRS

_MODES = {"MAIN_MODE": "IKEv1 main mode", "AGGRESSIVE_MODE": "IKEv1 aggressive mode"}
_TIME = "time_to_established_s"


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f} ms"


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _pct(part: float, whole: float) -> str:
    return "-" if not whole or math.isnan(part) else f"{100 * part / whole:.0f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _version(pair: str, msgs: pd.DataFrame) -> str:
    """``IKEv1 main mode``, ``IKEv1 aggressive mode`` or ``IKEv2``."""
    if pair not in IKEV1_PAIRS:
        return "IKEv2"
    for exchange, name in _MODES.items():
        if (msgs["exchange"] == exchange).any():
            return name
    return "IKEv1"


def _exchanges(msgs: pd.DataFrame) -> str:
    """``MAIN_MODE 6 + QUICK_MODE 3``: messages per exchange of one handshake (no
    retransmissions), in the order the exchanges started."""
    first = msgs[~msgs["retransmission"].astype(bool)]
    counts = first.groupby("exchange", sort=False).size()
    return " + ".join(f"{x} {n}" for x, n in counts.items())


def _first_rep(table: pd.DataFrame, ok: pd.DataFrame, proposal: str, profile: str) -> pd.DataFrame:
    """The messages of the first established repetition of a configuration."""
    reps = ok[(ok["proposal"] == proposal) & (ok["profile"] == profile)]["repetition"]
    if reps.empty or table.empty:
        return table.iloc[0:0]
    rep = int(reps.min())
    return table[
        (table["proposal"] == proposal)
        & (table["profile"] == profile)
        & (table["repetition"] == rep)
    ]


def versions_section(
    hs_all: pd.DataFrame,
    messages: pd.DataFrame,
    phases: pd.DataFrame,
    profiles: Sequence[str],
    ref: str,
    describe_profile: Callable[[str], str],
    datagrams: pd.DataFrame | None = None,
) -> list[str]:
    """The markdown lines of the section (none when the run has no IKEv1 and IKEv2 pair
    side by side)."""
    pairs = set(hs_all["pair"])
    if not pairs & set(IKEV1_PAIRS) or not pairs - set(IKEV1_PAIRS):
        return []
    datagrams = datagrams if datagrams is not None else pd.DataFrame()
    ok = hs_all[hs_all["established"]]
    hs_msgs = messages[messages["phase"] == HANDSHAKE_PHASE] if "phase" in messages else messages
    proposals = list(dict.fromkeys(hs_all["proposal"]))
    version: dict[str, str] = {}
    for p in proposals:
        pair = str(hs_all[hs_all["proposal"] == p]["pair"].iloc[0])
        version[p] = _version(pair, hs_msgs[hs_msgs["proposal"] == p])
    lines = [
        "## IKEv1 against IKEv2",
        "",
        "The same two strongSwan daemons, once speaking IKEv1 (`strongswan-ikev1`) and once "
        "IKEv2 (`strongswan`), with the same PSK, identities, traffic selectors and link. "
        "IKEv1 is measured from the relay's log like IKEv2: each datagram is named from "
        "its ISAKMP header (exchange type 2 main mode, 4 aggressive, 32 quick mode; the E "
        "flag), and its encrypted payloads are not decrypted, so its bytes are exact but "
        "its payload list stops at `E{...}`. A *round trip* is a request that a message of "
        "the other side answers, in both versions: main mode is three, aggressive mode and "
        "quick mode one each, their third message being a request nothing answers "
        "(counted under *requests*). IKEv1's handshake ends with the initiator's third "
        "quick mode message (the Child SA needs it), IKEv2's with the IKE_AUTH response.",
        "",
        f"### Handshake at `{ref}` ({describe_profile(ref)})",
        "",
        "Medians over the established handshakes; messages per exchange from the first one.",
        "",
    ]
    rows = []
    at_ref: dict[str, dict[str, float]] = {}
    for p in proposals:
        cell = ok[(ok["proposal"] == p) & (ok["profile"] == ref)]
        if cell.empty:
            continue
        med = {c: float(cell[c].median()) for c in _COLUMNS}
        med["requests"] = float(
            hs_msgs[
                (hs_msgs["proposal"] == p)
                & (hs_msgs["profile"] == ref)
                & ~hs_msgs["is_response"].astype(bool)
                & ~hs_msgs["retransmission"].astype(bool)
            ]
            .groupby("repetition")
            .size()
            .median()
        )
        at_ref[p] = med
        rows.append(
            [
                p,
                version[p],
                _exchanges(_first_rep(hs_msgs, ok, p, ref)),
                _num(med["messages"]),
                _num(med["requests"]),
                _num(med["round_trips"]),
                _num(med["datagrams"]),
                _num(med["ike_bytes"]),
                _num(med["udp_bytes"]),
                _num(med["ip_bytes"]),
            ]
        )
    lines += _table(
        [
            "proposal",
            "protocol",
            "messages per exchange",
            "messages",
            "requests",
            "round trips",
            "datagrams",
            "IKE bytes",
            "UDP bytes",
            "IP bytes",
        ],
        rows,
    )
    lines += ["", "### Time to the Child SA per profile", ""]
    lines += [
        "Wall-clock time from the first datagram leaving the initiator to its last message "
        "the Child SA needs: mean [95 % interval], median, p95, and the share of "
        "handshakes with a retransmission.",
        "",
    ]
    rows = []
    times: dict[tuple[str, str], dict[str, float]] = {}
    for prof in profiles:
        for p in proposals:
            every = hs_all[(hs_all["proposal"] == p) & (hs_all["profile"] == prof)]
            cell = ok[(ok["proposal"] == p) & (ok["profile"] == prof)]
            if every.empty:
                continue
            s = describe(cell[_TIME].tolist())
            times[(p, prof)] = s
            retrans = int((cell["retransmissions"] > 0).sum())
            rows.append(
                [
                    f"`{prof}`",
                    p,
                    f"{_ms(s['mean'])} [{_ms(s['ci95_low'])}, {_ms(s['ci95_high'])}]",
                    _ms(s["median"]),
                    _ms(s["p95"]),
                    f"{retrans}/{len(cell)}",
                    f"{len(cell)}/{len(every)}",
                ]
            )
    lines += _table(
        [
            "profile",
            "proposal",
            "mean [95 %]",
            "median",
            "p95",
            "with a retransmission",
            "established",
        ],
        rows,
    )
    lines += _lossless_retransmissions(hs_all, hs_msgs, profiles)
    lines += _failures(hs_all, datagrams)
    lines += _rekey_lines(phases, messages, proposals, profiles, ref)
    lines += ["", "### What IKEv2 saves", ""]
    lines += _savings(version, at_ref, times, profiles, phases, ref)
    lines.append("")
    return lines


def _lossless_retransmissions(
    hs_all: pd.DataFrame, msgs: pd.DataFrame, profiles: Sequence[str]
) -> list[str]:
    """Which messages were retransmitted where the link lost nothing: there the cause is
    a peer, not the link."""
    clean = [
        p
        for p in profiles
        if not hs_all[hs_all["profile"] == p].empty
        and float(hs_all[hs_all["profile"] == p]["loss_pct"].max()) == 0
    ]
    if not clean or msgs.empty:
        return []
    again = msgs[msgs["profile"].isin(clean) & msgs["retransmission"].astype(bool)]
    if again.empty:
        return []
    out = ["", "Retransmissions on the loss-free profiles (the link dropped nothing there):", ""]
    for (proposal, exchange, sender), g in again.groupby(
        ["proposal", "exchange", "sender"], sort=False
    ):
        handshakes = g[["profile", "repetition"]].drop_duplicates()
        total = len(hs_all[(hs_all["proposal"] == proposal) & hs_all["profile"].isin(clean)])
        line = (
            f"- {proposal}: the {sender}'s {exchange} message in {len(handshakes)} of "
            f"{total} handshakes"
        )
        mine = msgs[msgs["proposal"] == proposal]
        if (
            exchange == "QUICK_MODE"
            and sender == "initiator"
            and (mine["exchange"] == "AGGRESSIVE_MODE").any()
        ):
            # Seen in the lab's charon logs for exactly these retransmissions.
            line += (
                ": quick mode's first message leaves right behind aggressive mode's third, "
                "and when charon's responder handles it first it logs `ignoring QUICK_MODE "
                "request while phase 1 is incomplete`; the initiator sends it again after "
                "its retransmission timeout"
            )
        out.append(line + ".")
    return out


def _failures(hs_all: pd.DataFrame, datagrams: pd.DataFrame) -> list[str]:
    """The handshakes that failed, with their failure, and for IKEv1 whether the
    initiator's last phase 1 message was lost: nothing answers it, so nothing makes the
    initiator send it again (RFC 2409 has no acknowledgement for it)."""
    failed = hs_all[~hs_all["established"]]
    if failed.empty:
        return []
    out = ["", "Handshakes that failed:", ""]
    for row in failed.itertuples():
        line = f"- {row.proposal} at `{row.profile}`, repetition {row.repetition}: {row.failure}"
        if not datagrams.empty and "fate" in datagrams:
            d = datagrams[
                (datagrams["proposal"] == row.proposal)
                & (datagrams["profile"] == row.profile)
                & (datagrams["repetition"] == row.repetition)
            ]
            phase1 = d[d["exchange"].isin(list(_MODES)) & (d["sender"] == "initiator")]
            last = phase1[~phase1["is_response"].astype(bool)].tail(1)
            if (
                not last.empty
                and last["fate"].iloc[0] == "lost"
                and not phase1["retransmission"].astype(bool).any()
            ):
                line += (
                    f". The link lost the initiator's last {last['exchange'].iloc[0]} "
                    "message, which nothing answers: the initiator never sent it again "
                    "(it answered the responder's retransmissions with quick mode), so the "
                    "responder never completed phase 1"
                )
        out.append(line + ".")
    return out


_COLUMNS = ("messages", "round_trips", "datagrams", "ike_bytes", "udp_bytes", "ip_bytes")


def _rekey_lines(
    phases: pd.DataFrame,
    messages: pd.DataFrame,
    proposals: Sequence[str],
    profiles: Sequence[str],
    ref: str,
) -> list[str]:
    if phases.empty or "phase" not in phases:
        return []
    child = phases[(phases["phase"] == "child") & phases["ok"].astype(bool)]
    if child.empty:
        return []
    lines = [
        "",
        "### Child SA rekey",
        "",
        "`swanctl --rekey --child` on the initiator after each handshake (`phases.csv`): "
        "IKEv1 quick mode against IKEv2 CREATE_CHILD_SA (and IKE_FOLLOWUP_KE for an "
        "additional key exchange). IKEv2 then deletes the old Child SA with an "
        "INFORMATIONAL exchange (RFC 7296 2.8), counted in the phase; strongSwan's IKEv1 "
        "sends no delete (`charon.delete_rekeyed = no`, the old SA lapses with its "
        "lifetime). Time: from the phase's first datagram leaving a peer to its last one "
        "reaching the other. Medians over the rekeys that reached their goal.",
        "",
    ]
    phase_msgs = messages[messages["phase"] == "child"] if "phase" in messages else messages
    rows = []
    for p in proposals:
        at = child[(child["proposal"] == p) & (child["profile"] == ref)]
        if at.empty:
            continue
        first = phase_msgs[
            (phase_msgs["proposal"] == p)
            & (phase_msgs["profile"] == ref)
            & (phase_msgs["repetition"] == int(at["repetition"].min()))
        ]
        rows.append(
            [
                p,
                _exchanges(first),
                _num(float(at["messages"].median())),
                _num(float(at["requests"].median())),
                _num(float(at["round_trips"].median())),
                _num(float(at["ip_bytes"].median())),
                *[
                    _ms(
                        float(
                            child[(child["proposal"] == p) & (child["profile"] == prof)][
                                "sim_time_s"
                            ].median()
                        )
                    )
                    for prof in profiles
                ],
            ]
        )
    lines += _table(
        [
            "proposal",
            f"messages per exchange (`{ref}`)",
            "messages",
            "requests",
            "round trips",
            "IP bytes",
            *[f"time `{prof}`" for prof in profiles],
        ],
        rows,
    )
    return lines


def _savings(
    version: dict[str, str],
    at_ref: dict[str, dict[str, float]],
    times: dict[tuple[str, str], dict[str, float]],
    profiles: Sequence[str],
    phases: pd.DataFrame,
    ref: str,
) -> list[str]:
    """One line per IKEv2 proposal and IKEv1 mode: what IKEv2 saves (a negative saving
    is a cost) at the reference profile, in time per profile, and in the rekey."""
    v2 = [p for p, v in version.items() if v == "IKEv2" and p in at_ref]
    v1 = [p for p, v in version.items() if v != "IKEv2" and p in at_ref]
    if not v1 or not v2:
        return ["No IKEv1 and IKEv2 handshakes established side by side at the reference."]
    out = []
    child = pd.DataFrame()
    if not phases.empty and "phase" in phases:
        child = phases[(phases["phase"] == "child") & phases["ok"].astype(bool)]
    for classical, p in [(q, p) for q in v2 for p in v1]:
        a, b = at_ref[p], at_ref[classical]
        parts = [
            f"{_num(b['messages'])} messages instead of {_num(a['messages'])}",
            f"{_num(b['round_trips'])} round trips instead of {_num(a['round_trips'])}",
            f"{_num(b['ip_bytes'])} IP bytes instead of {_num(a['ip_bytes'])} "
            f"({_signed(b['ip_bytes'] - a['ip_bytes'])}, "
            f"{_pct(b['ip_bytes'] - a['ip_bytes'], a['ip_bytes'])})",
        ]
        for prof in profiles:
            ta, tb = times.get((p, prof)), times.get((classical, prof))
            if ta is None or tb is None:
                continue
            parts.append(
                f"median time at `{prof}` {_ms(tb['median'])} instead of {_ms(ta['median'])}"
            )
        if not child.empty:
            ca = child[(child["proposal"] == p) & (child["profile"] == ref)]
            cb = child[(child["proposal"] == classical) & (child["profile"] == ref)]
            if not ca.empty and not cb.empty:
                parts.append(
                    f"Child SA rekey {_num(float(cb['messages'].median()))} messages / "
                    f"{_num(float(cb['ip_bytes'].median()))} IP bytes instead of "
                    f"{_num(float(ca['messages'].median()))} / "
                    f"{_num(float(ca['ip_bytes'].median()))}"
                )
        out.append(
            f"- **{classical} ({version[classical]}) against {p} ({version[p]}):** "
            + "; ".join(parts)
            + "."
        )
    return out


def _signed(n: float) -> str:
    return f"{n:+.0f} B"


__all__ = ["versions_section"]
