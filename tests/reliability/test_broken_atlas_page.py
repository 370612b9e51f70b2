"""The app on a broken atlas shows one clear error page, runs no page, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.reliability.atlas_files import listing, runs_only_db

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.mark.parametrize("kind", ["truncated", "runs_only"])
def test_broken_atlas_shows_one_error_page(
    kind: str, tiny_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "atlas.duckdb"
    if kind == "truncated":
        path.write_bytes(tiny_atlas.read_bytes()[:5000])
    else:
        runs_only_db(path)
    before = listing(tmp_path)
    monkeypatch.setenv("SAE_ATLAS_PATH", str(path))
    monkeypatch.delenv("SAE_ATLAS_WORKSPACE", raising=False)
    for page in ("", "sets", "features"):
        at = AppTest.from_file(APP, default_timeout=30)
        if page:
            at.switch_page(f"app_pages/{page}.py")
        at.run()
        assert not at.exception
        missing = "a readable DuckDB database" if kind == "truncated" else "tables stages, "
        assert len(at.error) == 1
        assert at.error[0].value.startswith(
            f"The atlas at `{path}` cannot be opened: this file is not a complete atlas: "
            f"missing {missing}"
        )
        assert [t.value for t in at.title] == ["SAE Atlas"]  # no page ran
    assert listing(tmp_path) == before  # no workspace.duckdb (nor anything else) beside it
