"""Where the local cache of models, corpora and built atlases lives (git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Model weights, wheels and corpora; override with SAE_ATLAS_CACHE."""
    path = Path(os.environ.get("SAE_ATLAS_CACHE", REPO_ROOT / "data" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_atlas_path() -> Path:
    """The atlas the app opens unless told otherwise; override with SAE_ATLAS_PATH."""
    env = os.environ.get("SAE_ATLAS_PATH")
    return Path(env) if env else REPO_ROOT / "data" / "atlases" / "default" / "atlas.duckdb"
