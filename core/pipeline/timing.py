"""The build's one stage timer: wall seconds and peak resident memory (RSS) of each stage.

Peak RSS per stage comes from two sources, because neither alone is right:
- a sampler thread reads the process RSS (psutil) every ~50 ms while the stage runs. It sees
  every stage's own peak, but can miss a spike shorter than the interval;
- `resource.getrusage(...).ru_maxrss` is exact but a process-lifetime maximum: it only tells a
  stage's peak when the stage raised it (then the stage's peak *is* the new maximum).
The stage's peak is the larger of the sampled peak and, where the lifetime maximum grew during
the stage, that maximum. RSS counts every thread of the process (torch, DuckDB) but no child.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

_MB = 1024 * 1024


def _lifetime_peak_bytes() -> int | None:
    """The process's peak RSS so far (ru_maxrss: KiB on Linux, bytes on macOS); None on Windows."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class _PeakSampler:
    """Polls this process's RSS in a daemon thread; `stop()` returns the peak in bytes."""

    def __init__(self, interval_s: float) -> None:
        self._proc = psutil.Process()
        self._interval = interval_s
        self._halt = threading.Event()
        self._lifetime0 = _lifetime_peak_bytes()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._halt.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def stop(self) -> int:
        self._halt.set()
        self._thread.join()
        peak = max(self.peak, self._proc.memory_info().rss)
        lifetime = _lifetime_peak_bytes()
        if lifetime is not None and self._lifetime0 is not None and lifetime > self._lifetime0:
            peak = max(peak, lifetime)
        return peak


@dataclass
class StageCost:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


class StageTimer:
    """`with timer.stage(name) as cost:` times a stage; `cost` is filled when the block exits."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.costs: dict[str, StageCost] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[StageCost]:
        cost = self.costs.setdefault(name, StageCost())
        sampler = _PeakSampler(self.interval_s)
        t0 = time.perf_counter()
        try:
            yield cost
        finally:
            cost.seconds += time.perf_counter() - t0
            cost.peak_rss_mb = max(cost.peak_rss_mb, sampler.stop() / _MB)

    @property
    def seconds(self) -> dict[str, float]:
        """name -> seconds of every block timed so far (the run record's `timings`)."""
        return {name: c.seconds for name, c in self.costs.items()}


def summary(now: dict[str, StageCost], earlier: dict[str, tuple[float, float | None]]) -> str:
    """A table of seconds, share and peak RSS: the stages a resumed build found done (`earlier`:
    name -> (seconds, peak MB or None)), marked as such, then those timed in this build (`now`)."""
    rows: list[tuple[str, float, float | None, str]] = [
        (n, s, p, "  (earlier run)") for n, (s, p) in earlier.items() if n not in now
    ]
    rows += [(name, c.seconds, c.peak_rss_mb, "") for name, c in now.items()]
    total = sum(r[1] for r in rows)
    lines = [
        f"  {name:<12} {sec:8.1f}s  {100 * sec / max(total, 1e-9):5.1f}%  "
        + (f"{peak:8.0f} MB" if peak is not None else f"{'-':>8}   ")
        + note
        for name, sec, peak, note in rows
    ]
    peak_all = max((r[2] for r in rows if r[2] is not None), default=0.0)
    return (
        "per stage: seconds, share, peak resident memory\n"
        + "\n".join(lines)
        + f"\n  {'total':<12} {total:8.1f}s  {'':6}  {peak_all:8.0f} MB (max)"
    )
