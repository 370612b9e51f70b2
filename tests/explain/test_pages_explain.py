"""The app shows every explanation with its scores and searches features by meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
from explain_planted import F_DEF, F_PARIS, SAE
from streamlit.testing.v1 import AppTest

from core.explain.config import ExplainConfig
from core.explain.stage import explain_atlas
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture()
def explained_atlas(planted_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    w = AtlasWriter(planted_atlas)
    define_activations_view(w.con, planted_atlas.parent / "acts-test")
    explain_atlas(w, ExplainConfig(device="cpu"))
    w.con.execute(  # one top example (the feature page renders examples)
        "INSERT INTO examples VALUES (?, ?, 'top', 1, NULL, 0, 3, 5.0, 1, ?, ?, NULL)",
        [SAE, F_PARIS, [" de", " Paris", " est"], [0.0, 5.0, 0.0]],
    )
    w.commit()
    monkeypatch.setenv("SAE_ATLAS_PATH", str(planted_atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "workspace.duckdb"))
    return planted_atlas


def _page(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_feature_page_lists_explanations_with_scores(explained_atlas: Path) -> None:
    at = _page("feature", sae=SAE, feature=str(F_PARIS))
    tables = [d.value for d in at.dataframe if "embedding_auroc" in d.value.columns]
    assert tables and tables[0]["explanation"].iloc[0].startswith('[statistical] " Paris"')
    assert tables[0]["embedding_auroc"].iloc[0] > 0.7


def test_features_page_semantic_search(explained_atlas: Path) -> None:
    at = _page("features")
    at.text_input(key="f-meaning").input("Python code").run()
    assert not at.exception, [e.value for e in at.exception]
    hits = [d.value for d in at.dataframe if "similarity" in d.value.columns]
    assert hits and int(hits[0]["feature"].iloc[0]) == F_DEF
