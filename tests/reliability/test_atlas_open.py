"""Opening an atlas checks it: a broken or incomplete file is refused with one clear message and
nothing is written beside it; an atlas in a folder named with a quote opens and answers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from core.store import atlas as atlas_mod
from core.store.atlas import Atlas, AtlasError, prefetch
from tests.reliability.atlas_files import copy_atlas, listing, runs_only_db


def _counts(atlas: Path) -> tuple[int, int, int]:
    at = Atlas(atlas)
    cur = at.cursor()
    try:
        n_feat = cur.execute("SELECT count(*) FROM features").fetchone()[0]
        n_ex = cur.execute("SELECT count(*) FROM examples").fetchone()[0]
        n_act = cur.execute("SELECT count(*) FROM activations").fetchone()[0]
    finally:
        cur.close()
        at.close()
    return n_feat, n_ex, n_act


def test_an_atlas_under_a_quoted_folder_opens(tiny_atlas: Path, tmp_path: Path) -> None:
    moved = copy_atlas(tiny_atlas, tmp_path / "it's here" / "o'brien")
    got = _counts(moved)
    assert got == _counts(tiny_atlas)
    assert got[2] > 0  # the activations view reads the Parquet under the quoted folder


def test_a_truncated_atlas_is_refused(tiny_atlas: Path, tmp_path: Path) -> None:
    bad = tmp_path / "atlas.duckdb"
    bad.write_bytes(tiny_atlas.read_bytes()[:5000])
    before = listing(tmp_path)
    with pytest.raises(AtlasError, match=r"^this file is not a complete atlas: missing a readable"):
        Atlas(bad)
    assert listing(tmp_path) == before


def test_a_db_with_only_runs_is_refused(tmp_path: Path) -> None:
    bad = runs_only_db(tmp_path / "atlas.duckdb")
    before = listing(tmp_path)
    with pytest.raises(AtlasError) as err:
        Atlas(bad)
    assert str(err.value).startswith("this file is not a complete atlas: missing tables stages, ")
    assert "features" in str(err.value) and "examples" in str(err.value)
    assert listing(tmp_path) == before


def test_one_missing_table_is_named(tiny_atlas: Path, tmp_path: Path) -> None:
    atlas = copy_atlas(tiny_atlas, tmp_path / "a")
    con = duckdb.connect(str(atlas))
    con.execute("DROP TABLE histograms")
    con.close()
    with pytest.raises(
        AtlasError, match=r"^this file is not a complete atlas: missing table histograms$"
    ):
        Atlas(atlas)


def test_missing_or_broken_activations_are_refused(tiny_atlas: Path, tmp_path: Path) -> None:
    atlas = copy_atlas(tiny_atlas, tmp_path / "a")
    part = next(atlas.parent.glob("acts-*/*/*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(AtlasError, match=r"not a complete atlas: missing readable activations in"):
        Atlas(atlas)
    for acts in atlas.parent.glob("acts-*"):
        acts.rename(acts.with_name("moved"))
    with pytest.raises(AtlasError, match=r"not a complete atlas: missing its activations folder"):
        Atlas(atlas)


def test_a_newer_schema_is_refused(tiny_atlas: Path, tmp_path: Path) -> None:
    atlas = copy_atlas(tiny_atlas, tmp_path / "a")
    con = duckdb.connect(str(atlas))
    con.execute("UPDATE runs SET schema_version = 99")
    con.close()
    with pytest.raises(AtlasError, match=r"schema version 99; this SAE Atlas reads up to 1"):
        Atlas(atlas)


def test_prefetch_reads_the_whole_file_or_skips_one_too_large(
    tiny_atlas: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's warm-up reads the atlas once (into the OS page cache), unless it is larger
    than its share of the available memory; a missing file is no error."""
    size = tiny_atlas.stat().st_size
    monkeypatch.setattr(atlas_mod, "PREFETCH_CHUNK", 65_537)  # many chunks, the last one short
    assert prefetch(tiny_atlas) == size
    monkeypatch.setattr(atlas_mod, "PREFETCH_SHARE", size / 2**50)
    assert prefetch(tiny_atlas) == 0
    assert prefetch(tiny_atlas.parent / "missing.duckdb") == 0
