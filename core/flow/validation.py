"""Validation with data: do matched features fire on the same tokens? (METHODS §6)

Per layer pair, a sample of matched pairs (rank-1 back edges at or above the class threshold)
and as many random pairs of live features are counted on the stored sparse activations.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from core.flow.config import FlowConfig
from core.store import flow_sql
from core.store.db import Cursor

VALIDATION_COLUMNS = [
    "src_sae",
    "dst_sae",
    "kind",
    "series",
    "n_pairs",
    "min_cosine",
    "cofire_overlap",
    "mean_jaccard",
    "median_jaccard",
    "mean_overlap",
    "share_cofire",
]


def sample_pairs(
    top1: pd.DataFrame,
    alive_src: np.ndarray,
    alive_dst: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Up to n matched pairs from `top1` (src_feature, dst_feature) among live features, and as
    many random live pairs; columns pair, series, src_feature, dst_feature."""
    ok = top1["src_feature"].isin(alive_src) & top1["dst_feature"].isin(alive_dst)
    m = top1.loc[ok, ["src_feature", "dst_feature"]].to_numpy()
    m = m[rng.permutation(len(m))[:n]]
    r = (
        np.stack([rng.choice(alive_src, len(m)), rng.choice(alive_dst, len(m))], axis=1)
        if len(m) and len(alive_src) and len(alive_dst)
        else np.zeros((0, 2), dtype=np.int64)
    )
    feats = np.concatenate([m, r]).astype(np.int32)  # (2 * n_matched, 2)
    return pd.DataFrame(
        {
            "pair": np.arange(len(feats), dtype=np.int32),
            "series": ["matched"] * len(m) + ["random"] * len(r),
            "src_feature": feats[:, 0],
            "dst_feature": feats[:, 1],
        }
    )


def summarize(counts: pd.DataFrame, cofire_overlap: float) -> pd.DataFrame:
    """Per series: n_pairs, mean / median Jaccard, mean overlap, share of co-firing pairs."""
    either = counts["n_src"] + counts["n_dst"] - counts["n_both"]
    rarer = np.minimum(counts["n_src"], counts["n_dst"])
    df = counts.assign(
        jaccard=counts["n_both"] / either.clip(lower=1),
        overlap=counts["n_both"] / rarer.clip(lower=1),
    )
    df["cofire"] = df["overlap"] >= cofire_overlap
    g = df.groupby("series")
    return pd.DataFrame(
        {
            "n_pairs": g.size().astype("int32"),
            "mean_jaccard": g["jaccard"].mean(),
            "median_jaccard": g["jaccard"].median(),
            "mean_overlap": g["overlap"].mean(),
            "share_cofire": g["cofire"].mean(),
        }
    ).reset_index()


def validate_pair(
    con: Cursor,
    edges: pd.DataFrame,
    src_sae: str,
    dst_sae: str,
    kind: str,
    min_cos: float,
    cfg: FlowConfig,
    alive: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """flow_validation rows ('matched', 'random') for one (src SAE, dst SAE) layer pair.

    `alive` caches each SAE's live features across calls."""
    top1 = edges[
        (edges["src_sae"] == src_sae)
        & (edges["dst_sae"] == dst_sae)
        & (edges["direction"] == "back")
        & (edges["rank"] == 1)
        & (edges["cosine"] >= min_cos)
    ]
    alive = {} if alive is None else alive
    for sae in (src_sae, dst_sae):
        if sae not in alive:
            alive[sae] = flow_sql.alive_features(con, sae)["feature"].to_numpy()
    rng = np.random.default_rng([cfg.seed, zlib.crc32(f"{src_sae}>{dst_sae}".encode())])
    pairs = sample_pairs(top1, alive[src_sae], alive[dst_sae], cfg.val_pairs, rng)
    if pairs.empty:
        return pd.DataFrame(columns=VALIDATION_COLUMNS)
    out = summarize(flow_sql.pair_counts(con, src_sae, dst_sae, pairs), cfg.cofire_overlap)
    out = out.assign(
        src_sae=src_sae,
        dst_sae=dst_sae,
        kind=kind,
        min_cosine=np.float32(min_cos),
        cofire_overlap=np.float32(cfg.cofire_overlap),
    )
    return out[VALIDATION_COLUMNS]


def validate(con: Cursor, edges: pd.DataFrame, cfg: FlowConfig) -> pd.DataFrame:
    """flow_validation rows for every (src SAE, dst SAE, kind) present in the edges."""
    combos = edges[["src_sae", "dst_sae", "kind"]].drop_duplicates().itertuples(index=False)
    alive: dict[str, np.ndarray] = {}
    frames = [
        validate_pair(con, edges, src, dst, kind, cfg.thresholds(dst)[kind], cfg, alive)
        for src, dst, kind in combos
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=VALIDATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)
