"""Embedding score (AUROC) and semantic search with the offline all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from explain_planted import F_DEF, F_FRENCH, F_PARIS, SAE

from core.explain import scorers, windows
from core.explain.config import ExplainConfig
from core.explain.embeddings import EMBED_DIM, Embedder, embed_query
from core.explain.stage import explain_atlas
from core.store import explain_sql as sql
from core.store import schema
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


def _open(atlas: Path) -> AtlasWriter:
    w = AtlasWriter(atlas)
    define_activations_view(w.con, atlas.parent / "acts-test")
    return w


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30), np.round(rng.normal(0, 1, 40), 1)
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert scorers.auroc(pos, neg) == pytest.approx(pairs)
    assert np.isnan(scorers.auroc(pos, neg[:0]))


def test_vectorised_embedding_scores_equal_per_feature_auroc() -> None:
    rng = np.random.default_rng(0)
    wins = np.arange(0, 300, 3)  # sorted window ids
    emb = rng.normal(size=(len(wins), 8)).astype(np.float32)
    rows = [
        (f, int(w), r)
        for f in range(5)
        for r in ("test", "random", "hard", "train")
        for w in rng.choice(wins, size=int(rng.integers(0, 12)), replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["feature", "win", "role"])
    expl = {f: rng.normal(size=8).astype(np.float32) for f in range(5)}
    got = scorers.embedding_scores(windows.Samples(SAE, frame), expl, wins, emb)
    for f, grp in frame.groupby("feature"):
        sims = {
            r: emb[np.searchsorted(wins, grp[grp.role == r].win)] @ expl[f]
            for r in ("test", "random", "hard")
        }
        row = got[got.feature == f].iloc[0]
        for col, neg in (("embedding_auroc", "random"), ("embedding_auroc_hard", "hard")):
            want = scorers.auroc(sims["test"], sims[neg])
            assert (np.isnan(want) and np.isnan(row[col])) or row[col] == pytest.approx(want)
        assert row["n_test"] == len(sims["test"]) and row["n_hard"] == len(sims["hard"])


def test_embedding_auroc_high_for_match_and_chance_for_unrelated(
    planted_atlas: Path, embedder: Embedder
) -> None:
    w = _open(planted_atlas)
    cfg = ExplainConfig()
    n = windows.define(w.con, cfg)
    wins = np.arange(n)
    texts = windows.window_texts(w.con, cfg, wins)
    emb = embedder.embed([texts[int(i)] for i in wins])  # (n, 384)
    french = set(windows.sample(w.con, SAE, [F_FRENCH], cfg).role("test")["win"]) | set(
        windows.sample(w.con, SAE, [F_FRENCH], cfg).role("train")["win"]
    )
    rng = np.random.default_rng(0)
    half = set(rng.permutation(n)[: n // 2].tolist())
    rows = [(0, i, "test" if i in french else "random") for i in range(n)]
    rows += [(1, i, "test" if i in half else "random") for i in range(n)]
    frame = pd.DataFrame(rows, columns=["feature", "win", "role"])
    samples = windows.Samples(SAE, frame)
    q = embedder.embed(["French cities and towns"])[0]
    got = scorers.embedding_scores(samples, {0: q, 1: q}, wins, emb).set_index("feature")
    assert got.at[0, "embedding_auroc"] > 0.9  # the explanation matches the planted windows
    assert abs(got.at[1, "embedding_auroc"] - 0.5) < 0.2  # unrelated to a random split
    w.close()


def test_semantic_search_ranks_matching_explanation_first(embedder: Embedder) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE explanations ({schema.EXPLAIN_TABLES['explanations']})")
    texts = [
        "names of French cities and towns",
        "Python source code keywords",
        "wild animals of the African savanna",
    ]
    emb = embedder.embed(texts)
    df = pd.DataFrame(
        {
            "sae_id": ["A", "A", "B"],
            "feature": [0, 1, 2],
            "explainer": "t",
            "model": "m",
            "prompt_version": "v",
            "explanation": texts,
            "embedding": [e.tolist() for e in emb],
        }
    )
    con.register("df", df)
    con.execute("INSERT INTO explanations BY NAME SELECT * FROM df")
    top = sql.semantic_search(con, embedder.embed(["cities in France"])[0], k=3)
    assert top["feature"].tolist()[0] == 0 and top["similarity"].is_monotonic_decreasing
    assert sql.semantic_search(con, embed_query("lions and zebras"), k=1)["feature"].tolist() == [2]
    only_a = sql.semantic_search(con, embed_query("lions and zebras"), k=5, sae_ids=["A"])
    assert set(only_a["sae_id"]) == {"A"}
    with pytest.raises(ValueError):
        sql.semantic_search(con, np.zeros(EMBED_DIM - 1), k=1)


def test_stage_scores_and_search_on_planted_atlas(planted_atlas: Path) -> None:
    w = _open(planted_atlas)
    out = explain_atlas(w, ExplainConfig(device="cpu"))
    assert out["saes"][SAE]["n_scored"] == 7  # all but the dead feature
    rows = w.con.execute("SELECT * FROM explanations ORDER BY feature").df().set_index("feature")
    assert rows.at[F_PARIS, "embedding_auroc"] > 0.7
    assert rows["embedding"].notna().sum() == 7
    assert sql.semantic_search(w.con, embed_query("Python code"), k=1)["feature"].item() == F_DEF
    french = sql.semantic_search(w.con, embed_query("French text"), k=2)["feature"].tolist()
    assert set(french) == {F_PARIS, F_FRENCH}
    again = explain_atlas(w, ExplainConfig(device="cpu"))  # idempotent: nothing left to do
    assert again["saes"][SAE]["explained_now"] == 1  # only the dead feature is retried
    w.close()
