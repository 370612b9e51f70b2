"""The statistical explainer names the planted token and the planted document mix."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from explain_planted import D_SAE, F_DEAD, F_DEF, F_FRENCH, F_PARIS, SAE

from core.explain import statistical, windows
from core.explain.config import ExplainConfig
from core.store import explain_sql as sql
from core.store.runs import define_activations_view


@pytest.fixture()
def explained(planted_atlas: Path) -> pd.DataFrame:
    con = duckdb.connect(str(planted_atlas))
    define_activations_view(con, planted_atlas.parent / "acts-test")
    cfg = ExplainConfig()
    windows.define(con, cfg)
    sql.set_features(con, list(range(D_SAE)))
    sql.define_grams(con)
    return statistical.explain(con, SAE, list(range(D_SAE)), cfg, sql.corpus_mix(con)).set_index(
        "feature"
    )


def test_planted_token_is_named_first(explained: pd.DataFrame) -> None:
    text = explained.at[F_PARIS, "explanation"]
    assert text.startswith(statistical.MARKER + ' " Paris"')
    detail = json.loads(explained.at[F_PARIS, "detail"])
    assert detail["tokens"][0][0] == " Paris" and detail["tokens"][0][2] > 10  # lift
    assert explained.at[F_DEF, "explanation"].startswith(statistical.MARKER + ' " def"')
    assert "python_stdlib 100%" in explained.at[F_DEF, "explanation"]


def test_document_mix_is_named(explained: pd.DataFrame) -> None:
    text = explained.at[F_FRENCH, "explanation"]
    assert "French text (wiki_fr 100%)" in text and "topic cities" in text
    assert json.loads(explained.at[F_FRENCH, "detail"])["sources"] == {"wiki_fr": 1.0}


def test_dead_feature_is_null_with_error(explained: pd.DataFrame) -> None:
    assert pd.isna(explained.at[F_DEAD, "explanation"])
    assert explained.at[F_DEAD, "error"] == "never fires in the corpus"


def test_embedding_text_is_plain(explained: pd.DataFrame) -> None:
    plain = explained.at[F_PARIS, "embed_text"]
    assert plain.startswith("Paris") and statistical.MARKER not in plain and '"' not in plain
