"""Shared fixtures: a seeded RNG and one small real atlas built once per test session."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real atlas: the default model, the tiny profile (4 SAEs trained on ~6k corpus tokens).

    SAE_ATLAS_TEST_ATLAS may name an atlas already built with the tiny profile (for quick local
    re-runs); CI never sets it and builds afresh.
    """
    reuse = os.environ.get("SAE_ATLAS_TEST_ATLAS")
    if reuse:
        return Path(reuse)
    from core.pipeline.config import tiny_profile
    from core.pipeline.run import build

    out = tmp_path_factory.mktemp("atlas") / "atlas.duckdb"
    return build(tiny_profile(str(out)))


# ---- every test file under tests/ must be collected ------------------------------------------
# pytest silently skips folders named like build output (`build`, `dist`, `venv`, …; its
# `norecursedirs`), and a test file whose name pytest does not match is never run. When the
# whole suite runs (no paths given), a test file that was not collected fails the run.
_collected: set[Path] = set()


def pytest_itemcollected(item: pytest.Item) -> None:
    _collected.add(Path(item.path).resolve())


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.invocation_params.args and any(
        not a.startswith("-") for a in session.config.invocation_params.args
    ):
        return  # a chosen subset: only the whole suite must cover every file
    root = Path(__file__).resolve().parent
    missing = sorted(
        p.relative_to(root.parent)
        for p in root.rglob("test*.py")
        if p.resolve() not in _collected and "__pycache__" not in p.parts
    )
    if missing:
        raise pytest.UsageError(
            "test files under tests/ that pytest did not collect (a skipped folder name, or "
            "no test in them): " + ", ".join(map(str, missing))
        )
