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
    from core.build.config import tiny_profile
    from core.build.pipeline import build

    out = tmp_path_factory.mktemp("atlas") / "atlas.duckdb"
    return build(tiny_profile(str(out)))
