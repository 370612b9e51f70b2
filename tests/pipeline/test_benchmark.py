"""The build benchmark runs end to end on a small slice and prints a ratio it measured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.pipeline import benchmark


def test_benchmark_prints_a_measured_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no atlas at --atlas: random TopK SAEs of the default profile's shape
    benchmark.main(["--tokens", "1500", "--repeats", "1", "--atlas", str(tmp_path / "none")])
    out = capsys.readouterr().out
    shares = dict(re.findall(r"^  (.+?)\s+[\d.]+s\s+([\d.]+)%", out, re.M))
    assert float(shares["bare forward to layer 15"]) == 100.0
    # the build does strictly more than the bare forward, and the ratio is its inverse share
    build = float(shares["build (capture..statistics)"])
    assert build > 100.0
    ratio = float(re.search(r"ratio build/bare: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert ratio == pytest.approx(100.0 / build, abs=2e-3)
