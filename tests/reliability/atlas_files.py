"""Helpers for the reliability tests: copies of the session atlas to break or move, and broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb


def copy_atlas(atlas: Path, folder: Path) -> Path:
    """The atlas file and its side folders (acts-*, saes-*) copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(atlas, folder / atlas.name)
    for side in atlas.parent.iterdir():
        if side.is_dir() and side.name.startswith(("acts-", "saes-")):
            shutil.copytree(side, folder / side.name)
    return folder / atlas.name


def listing(folder: Path) -> dict[str, int]:
    """{relative path: size} of every file under folder (to prove nothing was written)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def runs_only_db(path: Path) -> Path:
    """A DuckDB file holding nothing but a `runs` table."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (run_id VARCHAR, created TIMESTAMP, config JSON)")
    con.close()
    return path
