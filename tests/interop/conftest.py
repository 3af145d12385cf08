"""The interop tests' setup: the no-skip switch and the closing count.

The tests marked ``interop`` run real daemons in network namespaces. They skip only
where that is impossible (not root, no ``ip netns``), and say why. With
``PQIKE_INTEROP_REQUIRED=1`` (for CI) such a machine is an error instead of a skip.
At the end of the session one line tells how many interop cases ran, e.g.
``interop: 43 cases run against strongSwan 6.0.1 (43 passed) in 21.4 s, 0 skipped``.
"""

import os

import pytest

from pqike.interop.lab import LabError, ensure_strongswan
from pqike.interop.peer import lab_unavailable

_INTEROP_IDS = pytest.StashKey[set]()


def pytest_collection_modifyitems(config, items):
    # By marker, not keyword: every test in this folder has the keyword "interop".
    interop = {item.nodeid for item in items if item.get_closest_marker("interop")}
    config.stash[_INTEROP_IDS] = interop
    if not interop or os.environ.get("PQIKE_INTEROP_REQUIRED", "") in ("", "0"):
        return
    reason = lab_unavailable()
    if reason is not None:
        raise pytest.UsageError(f"PQIKE_INTEROP_REQUIRED is set, but {reason}")


def _strongswan_version() -> str:
    try:
        return ensure_strongswan(install=False).version() or "strongSwan (unknown version)"
    except (LabError, OSError):
        return "strongSwan (not installed)"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    interop = config.stash.get(_INTEROP_IDS, set())
    outcome: dict[str, str] = {}
    skip_reasons: set[str] = set()
    seconds = 0.0
    for key in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(key, []):
            if report.nodeid not in interop:
                continue
            seconds += getattr(report, "duration", 0.0)
            if key == "skipped":
                longrepr = report.longrepr
                if isinstance(longrepr, tuple) and len(longrepr) == 3:
                    skip_reasons.add(str(longrepr[2]).removeprefix("Skipped: "))
            # A failure in any phase decides; otherwise the call's outcome (or setup's skip).
            if outcome.get(report.nodeid) != "failed":
                outcome[report.nodeid] = "failed" if key == "error" else key
    if not outcome:
        return
    counts = {
        k: sum(1 for v in outcome.values() if v == k) for k in ("passed", "failed", "skipped")
    }
    ran = counts["passed"] + counts["failed"]
    detail = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed") if counts[k])
    line = f"interop: {ran} cases run"
    if ran:
        line += f" against {_strongswan_version()} ({detail}) in {seconds:.1f} s"
    line += f", {counts['skipped']} skipped"
    if skip_reasons:
        line += f" ({'; '.join(sorted(skip_reasons))})"
    terminalreporter.write_line(line)
