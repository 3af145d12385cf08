"""Compare peer pairs message by message: whose payloads make the bytes differ, and do the
captured sizes agree with what the peers themselves logged.

Two analyses of an experiment's tables, used by ``pqike.lab.report``:

- ``payload_differences``: for each pair against a reference pair (pqike <-> pqike),
  each message of one clean handshake per proposal is split into its parts
  (``payloads.csv``: IKE header, payloads, SK overhead) and the parts are matched by
  name. What one side sends and the other does not, and what both send in different
  sizes, accounts for every byte of difference; the check that the parts add up to the
  measured message size (``messages.csv``) makes that accounting exact.
- ``log_agreement``: for pairs whose peers log the size of each datagram they send and
  receive (the strongSwan pairs: ``initiator_log_bytes``, ``responder_log_bytes`` in
  ``datagrams.csv``), how many captured datagrams have exactly the logged IKE size.

Pair names follow ``initiator-responder`` (``pqike-strongswan``); ``memory`` and ``udp``
are pqike on both sides and ``strongswan`` is strongSwan on both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

HEADER = "IKE header"
LOG_COLUMNS = {"initiator_log_bytes": "initiator", "responder_log_bytes": "responder"}
"""Columns of ``datagrams.csv`` with a peer's own account of each datagram's IKE size."""

_IMPLEMENTATIONS = {"pqike": "pqike", "strongswan": "strongSwan"}
_PQIKE_PAIRS = ("memory", "udp")


def pair_sides(pair: str) -> tuple[str, str]:
    """(initiator, responder) implementation names of a pair kind."""
    if pair in _PQIKE_PAIRS:
        return ("pqike", "pqike")
    if pair == "strongswan-ikev1":  # one implementation, the other protocol version
        return ("strongSwan", "strongSwan")
    if pair in _IMPLEMENTATIONS:
        name = _IMPLEMENTATIONS[pair]
        return (name, name)
    left, _, right = pair.partition("-")
    return (_IMPLEMENTATIONS.get(left, left), _IMPLEMENTATIONS.get(right, right or left))


def describe_pair(pair: str) -> str:
    """``pqike-strongswan (pqike -> strongSwan)``."""
    i, r = pair_sides(pair)
    return f"{pair} ({i} → {r})"


def _bool(series: pd.Series) -> pd.Series:
    if series.dtype == bool:
        return series
    return series.astype(str).str.lower().isin(("true", "1"))


def clean_handshake(handshakes: pd.DataFrame, proposal: str, pair: str, profile: str) -> Any:
    """The repetition of the first established handshake without a retransmission."""
    hs = handshakes[
        (handshakes["proposal"] == proposal)
        & (handshakes["pair"] == pair)
        & (handshakes["profile"] == profile)
        & _bool(handshakes["established"])
    ]
    if hs.empty:
        return None
    clean = hs[hs["retransmissions"] == 0]
    return (clean if not clean.empty else hs).sort_values("repetition")["repetition"].iloc[0]


def _messages_of(
    payloads: pd.DataFrame, messages: pd.DataFrame, proposal: str, pair: str, profile: str, rep
) -> dict[tuple, dict[str, Any]]:
    """First sends of one handshake: key (exchange, message_id, is_response) -> parts."""
    p = payloads[
        (payloads["proposal"] == proposal)
        & (payloads["pair"] == pair)
        & (payloads["profile"] == profile)
        & (payloads["repetition"] == rep)
        & ~_bool(payloads["retransmission"])
    ]
    sizes = {}
    if not messages.empty:
        m = messages[
            (messages["proposal"] == proposal)
            & (messages["pair"] == pair)
            & (messages["profile"] == profile)
            & (messages["repetition"] == rep)
        ]
        sizes = dict(zip(m["index"], m["ike_bytes"], strict=True))
    out: dict[tuple, dict[str, Any]] = {}
    for index, g in p.sort_values(["message", "position"]).groupby("message", sort=True):
        first = g.iloc[0]
        key = (first["exchange"], int(first["message_id"]), bool(_bool(g["is_response"]).iloc[0]))
        if key in out:
            continue
        parts = [(str(n), int(b)) for n, b in zip(g["payload"], g["bytes"], strict=True)]
        out[key] = {
            "sender": first["sender"],
            "parts": parts,
            "total": sum(b for _, b in parts),
            "measured": int(sizes[index]) if index in sizes else None,
        }
    return out


def _diff(ours: list[tuple[str, int]], theirs: list[tuple[str, int]]):
    """(only in ours, only in theirs, same name with other sizes) by payload name."""
    only_ours: list[tuple[str, int]] = []
    changed: list[tuple[str, int, int]] = []
    pool: dict[str, list[int]] = {}
    for name, size in theirs:
        pool.setdefault(name, []).append(size)
    for name, size in ours:
        if pool.get(name):
            other = pool[name].pop(0)
            if other != size:
                changed.append((name, size, other))
        else:
            only_ours.append((name, size))
    only_theirs = [(n, s) for n, sizes in pool.items() for s in sizes]
    order = {n: i for i, (n, _) in enumerate(theirs)}
    only_theirs.sort(key=lambda item: order.get(item[0], 0))
    return only_ours, only_theirs, changed


def payload_differences(
    payloads: pd.DataFrame,
    messages: pd.DataFrame,
    handshakes: pd.DataFrame,
    *,
    reference: str,
    profile: str,
) -> pd.DataFrame:
    """Per pair, proposal and message: the bytes against ``reference`` and the payloads
    that make the difference (one clean handshake of each at ``profile``).

    Columns: pair, proposal, exchange, message_id, is_response, sender (implementation),
    bytes, reference_bytes, difference, only_here, only_reference, resized (lists of
    ``(name, size)`` / ``(name, size, reference size)``), accounted (every part adds up
    to the measured size on both sides).
    """
    columns = [
        "pair",
        "proposal",
        "exchange",
        "message_id",
        "is_response",
        "sender",
        "bytes",
        "reference_bytes",
        "difference",
        "only_here",
        "only_reference",
        "resized",
        "accounted",
    ]
    if payloads.empty or reference not in set(payloads["pair"]):
        return pd.DataFrame(columns=columns)
    rows = []
    pairs = [p for p in dict.fromkeys(payloads["pair"]) if p != reference]
    proposals = list(dict.fromkeys(handshakes["proposal"]))
    for pair in pairs:
        sides = pair_sides(pair)
        for proposal in proposals:
            rep = clean_handshake(handshakes, proposal, pair, profile)
            ref_rep = clean_handshake(handshakes, proposal, reference, profile)
            if rep is None or ref_rep is None:
                continue
            ours = _messages_of(payloads, messages, proposal, pair, profile, rep)
            theirs = _messages_of(payloads, messages, proposal, reference, profile, ref_rep)
            for key in [*theirs, *(k for k in ours if k not in theirs)]:
                a, b = ours.get(key), theirs.get(key)
                if a is None or b is None:
                    continue
                only_here, only_ref, resized = _diff(
                    [x for x in a["parts"] if x[0] != HEADER],
                    [x for x in b["parts"] if x[0] != HEADER],
                )
                accounted = all(
                    m["measured"] is None or m["measured"] == m["total"] for m in (a, b)
                )
                rows.append(
                    {
                        "pair": pair,
                        "proposal": proposal,
                        "exchange": key[0],
                        "message_id": key[1],
                        "is_response": key[2],
                        "sender": sides[1] if key[2] else sides[0],
                        "bytes": a["total"],
                        "reference_bytes": b["total"],
                        "difference": a["total"] - b["total"],
                        "only_here": only_here,
                        "only_reference": only_ref,
                        "resized": resized,
                        "accounted": accounted,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def _names(items: Sequence[tuple]) -> str:
    if not items:
        return "none"
    counts = Counter(items)
    out = []
    for item, n in counts.items():
        if len(item) == 3:
            text = f"{item[0]} ({item[1]} instead of {item[2]} B)"
        else:
            text = f"{item[0]} ({item[1]} B)"
        out.append(text if n == 1 else f"{n} x {text}")
    return ", ".join(out)


def _range(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    fmt = "{:+d}".format
    return fmt(low) if low == high else f"{fmt(low)} to {fmt(high)}"


def _is_notify(name: str) -> bool:
    return name.startswith("N(")


def difference_summary(diffs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per pair: messages compared, all accounted, and the payload names that differ."""
    out: dict[str, dict[str, Any]] = {}
    for pair, g in diffs.groupby("pair", sort=False):
        names: set[str] = set()
        for col in ("only_here", "only_reference", "resized"):
            for items in g[col]:
                names.update(item[0] for item in items)
        out[str(pair)] = {
            "messages": len(g),
            "proposals": g["proposal"].nunique(),
            "accounted": bool(g["accounted"].all()),
            "names": sorted(names),
            "only_notifies": all(_is_notify(n) for n in names),
            "identical": int((g["difference"] == 0).sum()),
        }
    return out


def _direction(row: Any) -> str:
    return "response" if row.is_response else "request"


def payload_section(diffs: pd.DataFrame, *, reference: str, profile: str) -> list[str]:
    """Markdown: per pair, per exchange and direction, the payloads that differ."""
    if diffs.empty:
        return []
    summary = difference_summary(diffs)
    lines = [
        "## Payloads: where the pairs' messages differ",
        "",
        f"Each message of one clean handshake per proposal at `{profile}` was decrypted and "
        "split into its parts (IKE header, every payload, the SK overhead; `payloads.csv`) "
        f"and compared with the same message of `{reference}` "
        f"({' ↔ '.join(pair_sides(reference))}). A payload is matched by name, a Notify by "
        "its type; the difference in message bytes is exactly the payloads one side sends "
        "and the other does not, plus those both send in other sizes. A fragmented message "
        "counts as it would be unfragmented. *Accounted* means the parts add up to the "
        "measured message size on both sides.",
        "",
    ]
    for pair, g in diffs.groupby("pair", sort=False):
        s = summary[str(pair)]
        verdict = (
            "every difference is a Notify payload"
            if s["only_notifies"]
            else "differences other than notifies: "
            + ", ".join(n for n in s["names"] if not _is_notify(n))
        )
        lines += [
            f"### {describe_pair(str(pair))} against {reference}",
            "",
            f"{s['messages']} messages in {s['proposals']} proposals, "
            f"{'all' if s['accounted'] else 'not all'} accounted to the byte; "
            f"{s['identical']} identical in size; {verdict}.",
            "",
        ]
        rows = []
        keyed: dict[tuple, list[Any]] = {}
        for row in g.itertuples():
            # IKE_INTERMEDIATE rounds share a row: their payloads differ only in the KE.
            key = (row.exchange, bool(row.is_response))
            keyed.setdefault(key, []).append(row)
        order = {"IKE_SA_INIT": 0, "IKE_INTERMEDIATE": 1, "IKE_AUTH": 2}
        for (exchange, _), items in sorted(
            keyed.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1])
        ):
            first = items[0]
            signatures = {
                (tuple(r.only_here), tuple(r.only_reference), tuple(r.resized)) for r in items
            }
            if len(signatures) == 1:
                only_here, only_ref, resized = next(iter(signatures))
                detail = [_names(only_here), _names(only_ref), _names(resized)]
            else:
                detail = [
                    "; ".join(f"{r.proposal}: {_names(r.only_here)}" for r in items),
                    "; ".join(f"{r.proposal}: {_names(r.only_reference)}" for r in items),
                    "; ".join(f"{r.proposal}: {_names(r.resized)}" for r in items),
                ]
            rows.append(
                [
                    exchange,
                    f"{_direction(first)} by {first.sender}",
                    _range([int(r.difference) for r in items]),
                    *detail,
                    "yes" if all(r.accounted for r in items) else "**no**",
                ]
            )
        lines += [
            _table(
                [
                    "exchange",
                    "message",
                    "bytes vs " + reference,
                    f"sent only in {pair}",
                    f"sent only in {reference}",
                    "same payload, other size",
                    "accounted",
                ],
                rows,
            ),
            "",
        ]
    return lines


def payload_findings(diffs: pd.DataFrame, *, reference: str) -> list[str]:
    """One findings bullet per pair: what its messages add or lack against ``reference``."""
    out = []
    summary = difference_summary(diffs)
    for pair, g in diffs.groupby("pair", sort=False):
        s = summary[str(pair)]
        parts = []
        for (exchange, is_response), rows in g.groupby(["exchange", "is_response"], sort=False):
            first = rows.iloc[0]
            added = list(dict.fromkeys(n for items in rows["only_here"] for n, _ in items))
            lacking = list(dict.fromkeys(n for items in rows["only_reference"] for n, _ in items))
            resized = list(dict.fromkeys(n for items in rows["resized"] for n, *_ in items))
            if not (added or lacking or resized):
                continue
            what = []
            if added:
                what.append("adds " + ", ".join(added))
            if lacking:
                what.append("lacks " + ", ".join(lacking))
            if resized:
                what.append("sends " + ", ".join(resized) + " in another size")
            direction = "response" if is_response else "request"
            parts.append(
                f"{first['sender']}'s {exchange} {direction} {' and '.join(what)} "
                f"({_range(list(rows['difference']))} B)"
            )
        kind = "only by notifies" if s["only_notifies"] else "not only by notifies"
        accounted = "every byte accounted" if s["accounted"] else "NOT every byte accounted"
        out.append(
            f"- **Payloads, {pair} against {reference}:** the messages differ {kind} "
            f"({s['messages']} messages of {s['proposals']} proposals, {accounted}, "
            f"{s['identical']} identical in size): "
            + ("; ".join(parts) if parts else "none differs")
            + "."
        )
    return out


def log_agreement(datagrams: pd.DataFrame) -> pd.DataFrame:
    """Per pair and log (initiator's, responder's): datagrams the log accounts for and how
    many of them have exactly the logged IKE size."""
    columns = ["pair", "log", "datagrams", "logged", "equal", "mismatches"]
    present = [c for c in LOG_COLUMNS if c in datagrams.columns]
    if datagrams.empty or not present:
        return pd.DataFrame(columns=columns)
    rows = []
    for pair, g in datagrams.groupby("pair", sort=False):
        for col in present:
            logged = g[g[col].notna()]
            if logged.empty:
                continue
            equal = logged[logged[col].astype(int) == logged["ike_bytes"].astype(int)]
            bad = logged[logged[col].astype(int) != logged["ike_bytes"].astype(int)]
            rows.append(
                {
                    "pair": pair,
                    "log": LOG_COLUMNS[col],
                    "datagrams": len(g),
                    "logged": len(logged),
                    "equal": len(equal),
                    "mismatches": [
                        (r.proposal, r.profile, int(r.repetition), int(r.index), int(r.ike_bytes))
                        for r in bad.head(5).itertuples()
                    ],
                }
            )
    return pd.DataFrame(rows, columns=columns)


def log_section(agreement: pd.DataFrame) -> list[str]:
    """Markdown: the captured datagram sizes against the peers' logs."""
    if agreement.empty:
        return []
    rows = []
    for r in agreement.itertuples():
        sides = pair_sides(str(r.pair))
        impl = sides[0] if r.log == "initiator" else sides[1]
        rows.append(
            [
                r.pair,
                f"{r.log} ({impl})",
                f"{r.datagrams:,}",
                f"{r.logged:,}",
                f"{r.equal:,} of {r.logged:,}",
                ", ".join(str(m) for m in r.mismatches) or "none",
            ]
        )
    return [
        "## Captured sizes against the peers' own logs",
        "",
        "charon logs every datagram it sends or receives as `sending packet: ... (N bytes)` / "
        "`received packet: ... (N bytes)`, N being the IKE message size (non-ESP marker "
        "excluded). Each captured datagram is matched with the lines of the peer's log in "
        "order, per direction (a datagram the link dropped has no `received` line; two "
        "datagrams arriving together may be logged in either order by charon's worker "
        "threads, so a line a few places ahead of the same size also matches):",
        "",
        _table(
            [
                "pair",
                "log of",
                "datagrams captured",
                "datagrams in the log",
                "same IKE size",
                "mismatches (first 5)",
            ],
            rows,
        ),
        "",
    ]


def log_findings(agreement: pd.DataFrame) -> list[str]:
    """One findings bullet summarising ``log_agreement``."""
    if agreement.empty:
        return []
    parts = []
    for pair, g in agreement.groupby("pair", sort=False):
        logs = ", ".join(f"the {r.log}'s log {r.equal:,} of {r.logged:,}" for r in g.itertuples())
        parts.append(f"{pair}: {logs}")
    return [
        "- **Capture against strongSwan's logs:** datagrams whose captured IKE size equals "
        "the size charon logged — " + "; ".join(parts) + "."
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = [
    "LOG_COLUMNS",
    "clean_handshake",
    "describe_pair",
    "difference_summary",
    "log_agreement",
    "log_findings",
    "log_section",
    "pair_sides",
    "payload_differences",
    "payload_findings",
    "payload_section",
]
