"""Data-free matching of SAE features by decoder cosine (METHODS §6, Mechanistic Permutability).

For a residual SAE at layer L its predecessors are searched in the residual SAE of layer L-1
(kind 'R') and in the mlp_out / attn_out SAEs of layer L ('M', 'A'); all live in d_model space.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.model.sites import Site

MODULE_KINDS = {"mlp_out": "M", "attn_out": "A"}
EDGE_COLUMNS = [
    "src_sae",
    "src_feature",
    "dst_sae",
    "dst_feature",
    "kind",
    "direction",
    "rank",
    "cosine",
]


@dataclass(frozen=True)
class MatchPair:
    """Features of `dst` (a residual SAE) are explained by features of `src`."""

    src: Site
    dst: Site
    kind: str  # 'R' | 'M' | 'A'


def plan_pairs(sites: Iterable[Site]) -> list[MatchPair]:
    """Every (predecessor SAE, residual SAE) pair the atlas has, ordered by layer then kind."""
    have = set(sites)
    pairs = []
    for dst in sorted(s for s in have if s.kind == "resid_post"):
        prev = Site(dst.layer - 1, "resid_post")
        if prev in have:
            pairs.append(MatchPair(prev, dst, "R"))
        for site_kind, code in MODULE_KINDS.items():
            src = Site(dst.layer, site_kind)
            if src in have:
                pairs.append(MatchPair(src, dst, code))
    return pairs


def topk_cosine(
    query: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k keys per query row by cosine; both inputs (n, d) with unit rows.

    Returns values (n_q, k) and indices (n_q, k), best first; the (n_q, n_k) matrix is built
    `chunk` query rows at a time (fewer for wide keys): O(n_q·n_k·d) time, O(n_q·k) memory.
    """
    if query.shape[1] != keys.shape[1]:
        raise ValueError(
            f"cannot match SAEs of width {query.shape[1]} and {keys.shape[1]}: "
            "matching needs SAEs in the same space"
        )
    k = min(k, keys.shape[0])
    chunk = max(1, min(chunk, (1 << 24) // max(keys.shape[0], 1)))  # a block <= 64 MiB
    vals, idx = [], []
    for start in range(0, query.shape[0], chunk):
        sims = query[start : start + chunk] @ keys.T  # (c, n_k)
        v, i = sims.topk(k, dim=1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def _frame(pair: MatchPair, direction: str, vals: torch.Tensor, idx: torch.Tensor) -> pd.DataFrame:
    """Edges from a top-k result; rows of vals / idx are dst features for 'back', src for 'fwd'."""
    n, k = vals.shape
    own = np.repeat(np.arange(n, dtype=np.int32), k)
    other = idx.numpy().astype(np.int32).reshape(-1)
    src_f, dst_f = (other, own) if direction == "back" else (own, other)
    return pd.DataFrame(
        {
            "src_sae": pair.src.id,
            "src_feature": src_f,
            "dst_sae": pair.dst.id,
            "dst_feature": dst_f,
            "kind": pair.kind,
            "direction": direction,
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "cosine": vals.numpy().astype(np.float32).reshape(-1),
        }
    )


def match_pair(
    pair: MatchPair, src_dec: torch.Tensor, dst_dec: torch.Tensor, k: int, chunk: int = 4096
) -> pd.DataFrame:
    """Back and fwd top-k edges between two unit decoders src (n_src, d) and dst (n_dst, d)."""
    back = topk_cosine(dst_dec, src_dec, k, chunk)  # per dst feature: (n_dst, k)
    fwd = topk_cosine(src_dec, dst_dec, k, chunk)  # per src feature: (n_src, k)
    return pd.concat([_frame(pair, "back", *back), _frame(pair, "fwd", *fwd)], ignore_index=True)


def match_all(decoders: dict[Site, torch.Tensor], k: int, chunk: int = 4096) -> pd.DataFrame:
    """Edges for every pair `plan_pairs` finds among the given unit decoders (d_sae, d)."""
    frames = [
        match_pair(p, decoders[p.src], decoders[p.dst], k, chunk) for p in plan_pairs(decoders)
    ]
    if not frames:
        return pd.DataFrame({c: [] for c in EDGE_COLUMNS})
    return pd.concat(frames, ignore_index=True)
