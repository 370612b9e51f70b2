"""The synthetic atlas: a small one opens as a real atlas and answers the app's queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from core.explain.embeddings import Embedder
from core.model.loading import load_tokenizer
from core.pipeline.stages import STAGE_NAMES
from core.store import feature_sql, schema
from core.store import queries as q
from core.store.atlas import Atlas
from core.store.runs import latest_run
from core.synthetic.atlas import generate
from core.synthetic.config import SyntheticConfig
from core.synthetic.texts import explanation_pool, max_explanations, user_queries

CFG = SyntheticConfig(saes=2, width=1024, unique_texts=2048, docs=50, embed_cache=False)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture(scope="module")
def atlas_path(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "atlas.duckdb"
    return generate(out, CFG, embedder=embedder)


@pytest.fixture
def cur(atlas_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    atlas = Atlas(atlas_path)  # every open check: tables, run record, readable activations
    try:
        yield atlas.cursor()
    finally:
        atlas.close()


def test_every_table_has_rows(cur: duckdb.DuckDBPyConnection) -> None:
    empty = [
        t
        for t in schema.all_tables()
        if cur.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    ]
    assert empty == []
    assert cur.execute("SELECT count(*) FROM activations").fetchone()[0] > 0  # type: ignore[index]
    assert q.count_features(cur) == CFG.saes * CFG.width


def test_run_record_and_stages(cur: duckdb.DuckDBPyConnection) -> None:
    run = latest_run(cur)
    assert run is not None and run.run_id == "synthetic-0"
    assert run.config["synthetic"]["width"] == CFG.width
    assert run.config["geometry"]["default_k"] == 16
    assert run.config["model"]["spec"] == "default"
    stages = {r[0] for r in cur.execute("SELECT stage FROM stages").fetchall()}
    assert stages == set(STAGE_NAMES)


def test_feature_page(cur: duckdb.DuckDBPyConnection) -> None:
    page = feature_sql.feature_page(cur, "L0/resid_post", 5)
    assert page is not None and page["row"]["explanation"]
    ex = page["examples"]
    assert list(ex["kind"]) == ["top"] * CFG.top + ["interval"] * CFG.interval
    tok = load_tokenizer(CFG.model)
    for tokens, ids, acts, center, act in zip(
        ex["tokens"], ex["token_ids"], ex["acts"], ex["center"], ex["act"], strict=True
    ):
        assert len(tokens) == len(ids) == len(acts) == CFG.window
        assert [tok.decode([int(i)]) for i in ids] == list(tokens)  # the window is the corpus
        assert acts[center] == pytest.approx(act)
    top_acts = ex["act"][: CFG.top].to_numpy()
    assert top_acts[0] == pytest.approx(page["row"]["max_act"])
    assert np.all(np.diff(top_acts) <= 0)
    hist = page["histogram"]
    assert hist is not None and len(hist["edges"]) == 51 and len(hist["counts"]) == 50
    assert sum(hist["counts"]) == page["row"]["n_fire"]
    assert len(page["logits"]) == 20
    nb = page["neighbours"]
    assert len(nb) == 10 and np.all(np.diff(nb["cosine"].to_numpy()) <= 0)
    assert 5 not in set(nb["neighbour"])


def test_search(cur: duckdb.DuckDBPyConnection) -> None:
    flt = q.FeatureFilter(text="Python")
    rows = q.search_features(cur, flt, limit=20)
    assert len(rows) > 0
    n = q.count_features(cur, flt)
    assert n >= len(rows)
    for expl, tops in zip(rows["explanation"], rows["top_tokens"], strict=True):
        assert "python" in (str(expl) + " ".join(list(tops))).lower()


def test_texts_distinct_per_sae(cur: duckdb.DuckDBPyConnection) -> None:
    rows = cur.execute(
        "SELECT sae_id, count(*), count(DISTINCT explanation) FROM explanations GROUP BY sae_id"
    ).fetchall()
    assert len(rows) == CFG.saes
    assert all(n == distinct for _, n, distinct in rows)


def test_embeddings_mean_something(cur: duckdb.DuckDBPyConnection, embedder: Embedder) -> None:
    df = cur.execute("SELECT explanation, embedding FROM explanations").df()
    emb = np.stack(df["embedding"].to_numpy()).astype(np.float32)  # (n, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-2)
    query = embedder.embed(["Python imports"])[0]
    sims = emb @ query
    python = df["explanation"].str.contains("Python").to_numpy()
    assert python.sum() > 5
    assert sims[python].mean() > sims[~python].mean() + 0.1


def test_user_queries() -> None:
    queries = user_queries(200, 0)
    assert len(queries) == len(set(queries)) == 200
    assert queries == user_queries(200, 0)
    assert all(0 < len(s) < 60 for s in queries)


def test_explanation_pool_is_distinct_and_seeded() -> None:
    texts, hints = explanation_pool(5000, 3)
    assert len(set(texts)) == 5000 and len(hints) == 5000
    assert texts == explanation_pool(5000, 3)[0]
    assert max_explanations() >= 2 * SyntheticConfig().unique_texts  # room for the default pool


def test_refuses_to_overwrite(atlas_path: Path) -> None:
    with pytest.raises(FileExistsError):
        generate(atlas_path, CFG)
