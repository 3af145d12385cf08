"""The run's shared worker pool and the report text written while the plots are drawn."""

from __future__ import annotations

import os

import pytest

from pqike.lab.pool import SharedPool
from pqike.lab.report import _PlotsGuess


def test_a_shared_pool_starts_on_first_use_and_is_the_same_pool_after():
    pool = SharedPool(2, at_least=2)
    with pool:
        executor = pool.get(1)  # one task now, two later: both processes start
        assert pool.get() is executor
        pids = {executor.submit(os.getpid).result() for _ in range(20)}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
    with pytest.raises(RuntimeError):  # terminated with the block
        executor.submit(os.getpid)


def test_a_shared_pool_never_used_starts_nothing():
    with SharedPool(4) as pool:
        pass
    assert pool._executor is None


def test_the_plots_guess_holds_when_every_plot_the_text_asked_about_was_drawn():
    guess = _PlotsGuess({"bytes": "b.png", "cdf": "c.png", "pairs": "p.png"})
    assert guess.get("bytes") == "b.png" and guess["cdf"] == "c.png"
    # "pairs" was never asked about: whether it was drawn does not matter to the text.
    assert guess.holds_for({"bytes": "b.png", "cdf": "c.png", "pairs": None})
    assert not guess.holds_for({"bytes": "b.png", "cdf": None, "pairs": "p.png"})


def test_the_plots_guess_counts_every_plot_as_asked_once_the_text_reads_them_all():
    guess = _PlotsGuess({"bytes": "b.png", "pairs": "p.png"})
    assert sorted(guess) == ["bytes", "pairs"]
    assert not guess.holds_for({"bytes": "b.png", "pairs": None})
    assert guess.holds_for({"bytes": "b.png", "pairs": "p.png"})
