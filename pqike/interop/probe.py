"""The conformance probe: every impairment against strongSwan, in both roles.

For each impairment (``pqike.ike.impair``) and each role it applies to, a lab
(``pqike.interop.lab``) runs a pqike peer with ``--impair NAME`` against charon and
records what charon did: the error Notify it sent, whether it established the IKE SA
anyway (a finding when the impairment breaks a MUST), what its log said. Beside it the
same impairment between two pqike peers in memory (``pqike.handshake``) shows pqike's
own reaction. ``write_report`` turns the rows into ``report.md`` and ``rows.json``; no
number in them is typed by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..constants import NotifyType, name_of
from ..handshake import run_handshake
from ..ike.events import IkeSaFailed
from ..ike.impair import IMPAIRMENTS
from .lab import Lab, LabError
from .peer import (
    ERROR_NOTIFY_SHORT_NAMES,
    PqikeResponder,
    charon_errors,
    run_pqike_initiator,
    write_pqike_config,
)

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem1024"
"""One ADDKE round with ML-KEM-1024: its key and ciphertext (1568 bytes) are fragmented
at 1280 bytes in both directions, so the fragment impairments fire in either role."""
CLASSICAL = "aes256gcm16-prfsha384-x25519"
OPTIONAL_ADDKE = "aes256gcm16-prfsha384-x25519-ke1_mlkem1024-ke1_none"


@dataclass(frozen=True)
class ProbeCase:
    """How to run one impairment: the roles it applies to and each side's proposal."""

    name: str
    roles: tuple[str, ...]
    pqike_proposal: str = HYBRID
    strongswan_proposal: str = HYBRID
    skip: str = ""
    """Why the probe cannot run it yet (empty: it runs)."""


BOTH = ("initiator", "responder")

CASES: dict[str, ProbeCase] = {
    c.name: c
    for c in (
        ProbeCase(
            "omit-addke-notify",
            ("responder",),
            skip="needs a CREATE_CHILD_SA with ADDKE started by charon; the lab does not "
            "drive rekeys yet",
        ),
        ProbeCase(
            "addke-notify-on-last",
            ("responder",),
            skip="needs a CREATE_CHILD_SA with ADDKE started by charon; the lab does not "
            "drive rekeys yet",
        ),
        ProbeCase("run-none-round", ("initiator",), OPTIONAL_ADDKE, CLASSICAL),
        ProbeCase("unencrypted-payload", BOTH),
        ProbeCase("wrong-int-auth", BOTH),
        ProbeCase("auth-without-int-auth", BOTH),
        ProbeCase("phantom-int-auth", BOTH, CLASSICAL, CLASSICAL),
        ProbeCase("bad-mlkem-key", ("initiator",)),
        ProbeCase("short-ciphertext", ("responder",)),
        ProbeCase("wrong-ke-method", BOTH),
        ProbeCase("duplicate-fragment", BOTH),
        ProbeCase("overlapping-fragments", BOTH),
        ProbeCase("out-of-range-fragment", BOTH),
        ProbeCase("changed-total", BOTH),
        ProbeCase("strip-addke", ("responder",)),
        ProbeCase("retransmit-changed-nonce", ("initiator",)),
    )
}


@dataclass
class ProbeRow:
    """What happened with one impairment in one role."""

    impairment: str
    role: str
    """The impaired pqike peer's role: ``initiator`` or ``responder``."""
    strongswan_established: bool | None
    strongswan_notify: str
    """Error Notifies charon sent (its short names), in order; empty for none."""
    strongswan_log: str
    """charon's first error lines, shortened."""
    pqike_outcome: str
    """What the impaired pqike peer reported."""
    pqike_pair: str
    """The same impairment between two pqike peers: the other pqike's reaction."""
    skipped: str = ""

    @property
    def finding(self) -> bool:
        """charon established an IKE SA although the well-behaved pqike peer did not."""
        return bool(self.strongswan_established) and not self.pqike_pair.startswith("established")


_GENERATED = re.compile(r"generating (\S+) (request|response) \d+ \[ (.*) \]")


def charon_sent_notifies(log: str) -> list[str]:
    """Error Notifies in the messages charon generated, ``INVAL_SYN (IKE_AUTH response)``."""
    out = []
    for line in log.splitlines():
        m = _GENERATED.search(line)
        if not m:
            continue
        for token in re.findall(r"N\(([A-Z0-9_]+)\)", m.group(3)):
            if token in ERROR_NOTIFY_SHORT_NAMES:
                out.append(f"{token} ({m.group(1)} {m.group(2)})")
    return out


def _short(lines: Sequence[str], n: int = 2) -> str:
    cleaned = [re.sub(r"^\S+ \S+ \d+\[\w+\] (<[^>]+> )?", "", line).strip() for line in lines]
    return " / ".join(cleaned[:n])[:300]


def pqike_pair_reaction(case: ProbeCase, role: str) -> str:
    """The impairment between two pqike peers in memory: how the other pqike reacts."""
    options = {"impairments": frozenset({case.name})}
    kw = {"initiator_options": options} if role == "initiator" else {"responder_options": options}
    ini_prop = case.pqike_proposal if role == "initiator" else case.strongswan_proposal
    res_prop = case.strongswan_proposal if role == "initiator" else case.pqike_proposal
    r = run_handshake(ini_prop, responder_proposal=res_prop, **kw)  # type: ignore[arg-type]
    if r.established:
        return "established"
    other = r.responder_events if role == "initiator" else r.initiator_events
    f = next((e for e in other if isinstance(e, IkeSaFailed)), None)
    if f is None:
        return "not established"
    notify = name_of(NotifyType, f.notify) if f.notify is not None else "no notify"
    return f"failed: {notify} ({f.reason})"


def _pqike_outcome(events: Sequence[dict]) -> str:
    for e in events:
        if e["event"] == "ike_sa_established":
            return "established"
    for e in events:
        if e["event"] == "ike_sa_failed":
            return f"failed: {e.get('notify_name') or 'no notify'} ({e.get('reason', '')})"
    return "no result"


def probe_one(lab: Lab, case: ProbeCase, role: str, workdir: Path) -> ProbeRow:
    """Run one impairment in one role in ``lab`` (a fresh lab per call)."""
    extra = ["--impair", case.name, "--secrets", str(workdir / f"{case.name}-{role}.secrets")]
    if role == "initiator":
        charon = lab.start_strongswan("right", ike_proposal=case.strongswan_proposal)
        config = write_pqike_config(
            workdir / f"{case.name}-left.toml", lab, "left", ike_proposal=case.pqike_proposal
        )
        run = run_pqike_initiator(
            lab, "left", config, workdir / f"{case.name}-left.jsonl", timeout=12, extra=extra
        )
        log = charon.log()
        established = any(sa.established for sa in charon.list_sas())
        outcome = _pqike_outcome(run.events)
        if outcome == "no result":
            said = (run.stderr or run.stdout).strip().splitlines()
            outcome = said[-1][:200] if said else "no result"
    else:
        config = write_pqike_config(
            workdir / f"{case.name}-right.toml", lab, "right", ike_proposal=case.pqike_proposal
        )
        responder = PqikeResponder(
            lab, "right", config, workdir / f"{case.name}-right.jsonl", extra=extra
        ).start()
        charon = lab.start_strongswan("left", ike_proposal=case.strongswan_proposal)
        try:
            result = charon.initiate(timeout=12, check=False)
            established, log = result.established, result.log
            events = responder.wait_for(lambda ev: bool(ev), timeout=3)
        finally:
            responder.stop()
        outcome = _pqike_outcome(events)
    return ProbeRow(
        case.name,
        role,
        established,
        ", ".join(charon_sent_notifies(log)),
        _short(charon_errors(log)),
        outcome,
        pqike_pair_reaction(case, role),
    )


def run_probe(
    workdir: Path,
    names: Sequence[str] = (),
    *,
    progress: Callable[[str], None] = lambda line: None,
    prefix: str = "pqpr",
) -> list[ProbeRow]:
    """Every impairment (or ``names``) in every role it applies to, one lab each."""
    rows = []
    for name in names or list(CASES):
        case = CASES[name]
        for role in case.roles:
            if case.skip:
                rows.append(
                    ProbeRow(
                        name, role, None, "", "", "", pqike_pair_reaction(case, role), case.skip
                    )
                )
                progress(f"{name} ({role}): skipped: {case.skip}")
                continue
            try:
                with Lab(prefix=prefix) as lab:
                    row = probe_one(lab, case, role, workdir)
            except LabError as exc:
                row = ProbeRow(name, role, None, "", "", "", "", f"lab error: {exc}"[:300])
            rows.append(row)
            progress(
                f"{name} ({role}): strongSwan "
                f"{'established' if row.strongswan_established else 'did not establish'}"
                f"{'; notify ' + row.strongswan_notify if row.strongswan_notify else ''}"
            )
    return rows


def write_report(rows: Sequence[ProbeRow], out: Path, *, version: str) -> Path:
    """``report.md`` and ``rows.json`` in ``out`` from the probe's rows."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(
        json.dumps([{**asdict(r), "finding": r.finding} for r in rows], indent=2) + "\n"
    )

    def cell(text: str) -> str:
        return (text or "—").replace("|", "\\|")

    lines = [
        "# Conformance probe: pqike's impairments against strongSwan",
        "",
        f"Written by `pqike probe` against strongSwan {version} in the interop lab "
        "(network namespaces, real UDP). Each row: a pqike peer with `--impair NAME` in the "
        "given role against charon; what charon sent and logged and whether it "
        "established the IKE SA; and, for comparison, how a well-behaved pqike peer reacts "
        "to the same impairment (in memory, `pqike handshake --impair`). A **finding** is "
        "charon establishing an IKE SA that pqike refuses.",
        "",
        "Proposals: ADDKE cases `" + HYBRID + "` (ML-KEM-1024 so that both directions "
        "fragment at 1280 bytes); `run-none-round` offers `" + OPTIONAL_ADDKE + "` to a "
        "charon that accepts `" + CLASSICAL + "`; `phantom-int-auth` uses `" + CLASSICAL + "`.",
        "",
        "| impairment | impaired pqike | strongSwan established | Notify strongSwan sent "
        "| strongSwan log | impaired pqike reported | pqike's own reaction | finding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.skipped:
            lines.append(
                f"| `{r.impairment}` | {r.role} | not probed: {cell(r.skipped)} | | | | "
                f"{cell(r.pqike_pair)} | |"
            )
            continue
        est = "yes" if r.strongswan_established else "no"
        lines.append(
            f"| `{r.impairment}` | {r.role} | {est} | {cell(r.strongswan_notify)} | "
            f"{cell(r.strongswan_log)} | {cell(r.pqike_outcome)} | {cell(r.pqike_pair)} | "
            f"{'**yes**' if r.finding else 'no'} |"
        )
    lines += ["", "## The impairments", ""]
    for name, what in IMPAIRMENTS.items():
        lines.append(f"- `{name}`: {what}")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = [
    "CASES",
    "ProbeCase",
    "ProbeRow",
    "charon_sent_notifies",
    "pqike_pair_reaction",
    "probe_one",
    "run_probe",
    "write_report",
]
