"""Matched pairs co-fire on the same tokens far more than random pairs (synthetic activations)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from core.flow.config import FlowConfig
from core.flow.validation import summarize, validate

SRC, DST, N_TOK, N_FEAT = "L3/resid_post", "L4/resid_post", 3000, 40


def _activations(perm: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """src feature perm[j] fires on ~3% of tokens; its match, dst feature j, on 90% of those
    plus a few of its own. dst features 30-39 and their src matches never fire."""
    rows = []
    for j in range(30):
        tok = np.flatnonzero(rng.random(N_TOK) < 0.03)
        rows.append((SRC, tok, perm[j]))
        own = np.flatnonzero(rng.random(N_TOK) < 0.003)
        rows.append((DST, np.union1d(tok[rng.random(len(tok)) < 0.9], own), j))
    return pd.DataFrame(
        {
            "sae_id": np.concatenate([[s] * len(t) for s, t, _ in rows]),
            "doc_id": np.concatenate([t // 100 for _, t, _ in rows]).astype(np.int32),
            "pos": np.concatenate([t % 100 for _, t, _ in rows]).astype(np.int32),
            "feature": np.concatenate([np.full(len(t), f) for _, t, f in rows]).astype(np.int32),
            "act": np.float32(1.0),
        }
    )


def _edges(perm: np.ndarray) -> pd.DataFrame:
    """Rank-1 back edges dst j <- src perm[j]; the never-firing dst features too."""
    return pd.DataFrame(
        {
            "src_sae": SRC,
            "src_feature": perm,
            "dst_sae": DST,
            "dst_feature": np.arange(N_FEAT),
            "kind": "R",
            "direction": "back",
            "rank": 1,
            "cosine": np.float32(0.9),
        }
    )


def test_matched_pairs_cofire_random_do_not() -> None:
    rng = np.random.default_rng(0)
    perm = rng.permutation(N_FEAT)
    con = duckdb.connect()
    con.register("_acts", _activations(perm, rng))
    con.execute("CREATE TEMP VIEW activations AS SELECT * FROM _acts")
    val = validate(con, _edges(perm), FlowConfig(val_pairs=25)).set_index("series")
    assert val.loc["matched", "n_pairs"] == 25 and val.loc["random", "n_pairs"] == 25
    assert val.loc["matched", "share_cofire"] == 1.0 and val.loc["matched", "mean_jaccard"] > 0.7
    assert val.loc["random", "share_cofire"] < 0.2 and val.loc["random", "mean_jaccard"] < 0.1
    assert (val["src_sae"] == SRC).all() and (val["kind"] == "R").all()


def test_summarize_counts() -> None:
    counts = pd.DataFrame(
        {
            "series": ["matched", "matched", "random"],
            "n_src": [10, 4, 5],
            "n_dst": [10, 8, 5],
            "n_both": [10, 2, 0],
        }
    )
    s = summarize(counts, 0.5).set_index("series")
    assert s.loc["matched", "mean_jaccard"] == (1.0 + 2 / 10) / 2
    assert s.loc["matched", "share_cofire"] == 1.0  # overlaps 1.0 and 0.5
    assert s.loc["random", "mean_overlap"] == 0.0
