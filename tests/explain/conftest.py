"""Fixtures of the explain tests (helpers live in explain_planted.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from explain_planted import write_atlas


@pytest.fixture()
def planted_atlas(tmp_path: Path) -> Path:
    """A committed planted atlas (see explain_planted) in a fresh folder."""
    return write_atlas(tmp_path / "atlas.duckdb")
