"""Builders for geometry tests: small synthetic atlases whose structure is planted.

A planted atlas has `n_groups` groups of `per_group` features. Each document belongs to one group
(its source/topic/language are named after it); in every window, the features of the document's
group fire with probability p_in and all others with p_out. Decoder rows of a group lie near a
random group centroid. `planted=False` gives the same sizes with no structure at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pytest

from core.store import schema


@dataclass
class Synthetic:
    con: duckdb.DuckDBPyConnection
    decoders: dict[str, np.ndarray]
    """{sae_id: (d_sae, d_in) unit rows}."""
    truth: np.ndarray
    """(d_sae,) planted group of each feature."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def decoder(truth: np.ndarray, d_in: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """(d_sae, d_in) unit rows scattered by `spread` around one random centroid per group."""
    centroids = _unit(rng.standard_normal((truth.max() + 1, d_in)))
    return _unit(
        centroids[truth] + spread * rng.standard_normal((len(truth), d_in)) / np.sqrt(d_in)
    )


def _activations(
    sae_id: str,
    doc_group: np.ndarray,
    truth: np.ndarray,
    window: int,
    wins_per_doc: int,
    p_in: float,
    p_out: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    rows = []
    for doc, g in enumerate(doc_group):
        for w in range(wins_per_doc):
            p = np.where(truth == g, p_in, p_out) if g >= 0 else np.full(len(truth), p_out)
            feats = np.flatnonzero(rng.random(len(truth)) < p)
            pos = w * window + rng.integers(0, window, len(feats))
            act = rng.uniform(0.5, 3.0, len(feats))
            rows.append(
                pd.DataFrame(
                    {"sae_id": sae_id, "doc_id": doc, "pos": pos, "feature": feats, "act": act}
                )
            )
    return pd.concat(rows, ignore_index=True)


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    con.register("_frame", df)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    con.unregister("_frame")


def _corpus(con: duckdb.DuckDBPyConnection, doc_group: np.ndarray, n_tok: int) -> None:
    names = [f"g{g}" for g in doc_group]
    docs = pd.DataFrame(
        {
            "doc_id": np.arange(len(doc_group)),
            "source": names,
            "topic": names,
            "language": names,
            "licence": "",
            "title": "",
            "n_tokens": n_tok,
        }
    )
    tokens = pd.DataFrame(
        {
            "doc_id": np.repeat(np.arange(len(doc_group)), n_tok),
            "pos": np.tile(np.arange(n_tok), len(doc_group)),
            "token_id": 0,
            "token_str": "x",
        }
    )
    _insert(con, "documents", docs)
    _insert(con, "tokens", tokens)


def synthetic_atlas(
    n_groups: int = 4,
    per_group: int = 25,
    d_in: int = 48,
    n_docs: int = 120,
    window: int = 16,
    wins_per_doc: int = 3,
    planted: bool = True,
    saes: tuple[str, ...] = ("L1/resid_post",),
    seed: int = 0,
    path: str = ":memory:",
) -> Synthetic:
    rng = np.random.default_rng(seed)
    con = duckdb.connect(path)
    for stmt in schema.create_statements():
        con.execute(stmt)
    truth = np.repeat(np.arange(n_groups), per_group)
    doc_group = rng.integers(0, n_groups, n_docs) if planted else np.full(n_docs, -1)
    _corpus(con, doc_group, window * wins_per_doc)
    p_in, p_out = (0.5, 0.02) if planted else (0.0, 0.1)
    acts, decs = [], {}
    for s in saes:
        acts.append(_activations(s, doc_group, truth, window, wins_per_doc, p_in, p_out, rng))
        decs[s] = decoder(
            truth if planted else rng.permutation(truth), d_in, 0.5 if planted else 1e6, rng
        )
        feats = pd.DataFrame(
            {
                "sae_id": s,
                "feature": np.arange(len(truth)),
                "max_act": 3.0,
                "top_tokens": [[f"t{g}", f"u{f}"] for f, g in enumerate(truth)],
            }
        )
        _insert(con, "features", feats)
    con.register("_acts", pd.concat(acts, ignore_index=True))
    con.execute("CREATE TABLE activations AS SELECT * FROM _acts")
    con.unregister("_acts")
    return Synthetic(con, decs, truth)


@pytest.fixture(scope="session")
def make_atlas() -> Callable[..., Synthetic]:
    """The `synthetic_atlas` builder (test modules here are not a package, so no imports)."""
    return synthetic_atlas
