"""The stage timer sees each stage's own peak resident memory, not the process's lifetime peak."""

from __future__ import annotations

import time

import numpy as np

from core.pipeline.timing import StageTimer, summary


def test_peak_rss_is_per_stage() -> None:
    timer = StageTimer(interval_s=0.01)
    with timer.stage("big") as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, written so it is resident
        time.sleep(0.1)
        del block
    with timer.stage("small") as small:
        time.sleep(0.1)
    assert big.peak_rss_mb - small.peak_rss_mb > 200  # the small stage does not inherit it
    assert small.seconds >= 0.1 and big.seconds >= 0.1
    assert timer.seconds == {"big": big.seconds, "small": small.seconds}


def test_summary_lists_earlier_stages_first() -> None:
    timer = StageTimer()
    with timer.stage("stats"):
        pass
    text = summary(timer.costs, {"corpus": (2.0, 300.0), "stats": (9.0, 1.0)})
    lines = text.splitlines()
    assert lines[1].split()[0] == "corpus" and "(earlier run)" in lines[1]
    assert lines[2].split()[0] == "stats" and "earlier" not in lines[2]
    assert "total" in lines[-1]
