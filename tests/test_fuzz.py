"""A short run of the committed fuzzer (``python -m pqike.fuzz --minutes 10`` for more)."""

from __future__ import annotations

from pqike import fuzz


def test_the_seeds_include_strongswans_captures_and_pqikes_own_handshake():
    seeds = fuzz.seeds()
    assert fuzz.CAPTURES.is_dir() and len(seeds) >= 7 + 7
    assert all(s[:4] != b"\x00" * 4 for s in seeds)


def test_a_short_fuzz_run_finds_no_uncaught_exception():
    report = fuzz.run(examples=60)
    assert report.failures == [], "\n\n".join(report.failures)
    assert all(report.examples[t] == 60 for t in fuzz.TARGETS)


def test_a_finding_is_reported_with_its_input_not_raised(monkeypatch):
    def broken(data: bytes) -> None:
        if len(data) > 100:
            raise RuntimeError("boom")

    monkeypatch.setitem(fuzz._STRATEGIES, "codec", (broken, {"data": fuzz.mutated()}))
    report = fuzz.run(examples=50, targets=("codec",))
    assert len(report.failures) == 1 and "RuntimeError: boom" in report.failures[0]
    assert "1 uncaught exceptions" in report.format()
