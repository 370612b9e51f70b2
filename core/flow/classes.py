"""Where a residual feature comes from: translated, processed, newborn or unexplained (METHODS §6).

s(R), s(M), s(A) are a residual feature's top-1 decoder cosines to the residual SAE of layer
L-1 and the mlp_out / attn_out SAEs of layer L. With residual SAEs only, the class is
persists (s(R) high) or emerges (low). Without a layer L-1 residual SAE there is no class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.flow.config import FlowConfig
from core.flow.matching import topk_cosine
from core.model.sites import Site

KINDS = ("R", "M", "A")
CLASSES = ("translated", "processed", "newborn", "unexplained", "persists", "emerges")
CLASS_COLUMNS = [
    "sae_id",
    "feature",
    "layer",
    "s_r",
    "s_m",
    "s_a",
    "pred_r",
    "pred_m",
    "pred_a",
    "flow_class",
]


def predecessor_scores(edges: pd.DataFrame, sae_id: str, d_sae: int) -> pd.DataFrame:
    """(d_sae rows) feature, s_r/s_m/s_a and pred_r/pred_m/pred_a from the rank-1 back edges."""
    out = pd.DataFrame({"feature": np.arange(d_sae, dtype=np.int32)})
    top = edges[
        (edges["dst_sae"] == sae_id) & (edges["direction"] == "back") & (edges["rank"] == 1)
    ]
    for kind in KINDS:
        got = top[top["kind"] == kind].set_index("dst_feature")
        col = kind.lower()
        out[f"s_{col}"] = out["feature"].map(got["cosine"]).astype("float32")
        out[f"pred_{col}"] = out["feature"].map(got["src_feature"]).astype("Int32")
    return out


def classify(scores: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    """Class per row from s_r, s_m, s_a (NaN = that SAE is missing) and thresholds t[kind]."""
    s_r, s_m, s_a = (scores[c].to_numpy(dtype=np.float64) for c in ("s_r", "s_m", "s_a"))
    high_r = s_r >= t["R"]
    high_mod = (s_m >= t["M"]) | (s_a >= t["A"])  # NaN compares False
    has_mod = ~np.isnan(s_m) | ~np.isnan(s_a)
    with_mod = np.select(
        [high_r & ~high_mod, high_r & high_mod, ~high_r & high_mod],
        ["translated", "processed", "newborn"],
        "unexplained",
    )
    resid_only = np.where(high_r, "persists", "emerges")
    label = np.where(has_mod, with_mod, resid_only).astype(object)
    label[np.isnan(s_r)] = None
    return pd.Series(label, index=scores.index, name="flow_class")


def class_table(edges: pd.DataFrame, resid: dict[Site, int], cfg: FlowConfig) -> pd.DataFrame:
    """flow_classes rows for every residual SAE (site -> d_sae), thresholds from cfg."""
    frames = []
    for site, d_sae in sorted(resid.items()):
        df = predecessor_scores(edges, site.id, d_sae)
        df["flow_class"] = classify(df, cfg.thresholds(site.id))
        df.insert(0, "sae_id", site.id)
        df.insert(2, "layer", site.layer)
        frames.append(df[CLASS_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CLASS_COLUMNS)


def class_shares(classes: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{sae_id: {class: share}} over the features that have a class."""
    got = classes.dropna(subset=["flow_class"])
    shares = got.groupby("sae_id")["flow_class"].value_counts(normalize=True)
    out: dict[str, dict[str, float]] = {}
    for (sae_id, cls), v in shares.items():  # type: ignore[misc]
        out.setdefault(str(sae_id), {})[str(cls)] = round(float(v), 4)
    return out


# ---- score distributions (to judge the thresholds) ---------------------------------------------
def random_top1(dst_dec: torch.Tensor, n_src: int, seed: int, chunk: int = 4096) -> torch.Tensor:
    """(n_dst,) top-1 cosine of each unit row of dst_dec (n_dst, d) to n_src random unit directions."""
    g = torch.Generator().manual_seed(seed)
    rand = torch.randn(n_src, dst_dec.shape[1], generator=g, dtype=dst_dec.dtype)
    rand = rand / rand.norm(dim=1, keepdim=True)
    return topk_cosine(dst_dec, rand, 1, chunk)[0][:, 0]


def score_hist(
    scores: np.ndarray, sae_id: str, kind: str, series: str, n_bins: int, threshold: float
) -> pd.DataFrame:
    """Histogram rows of scores clipped to [0, 1] in n_bins equal bins."""
    vals = np.clip(scores[~np.isnan(scores)], 0.0, 1.0)
    counts, edges = np.histogram(vals, bins=n_bins, range=(0.0, 1.0))
    return pd.DataFrame(
        {
            "sae_id": sae_id,
            "kind": kind,
            "series": series,
            "bin": np.arange(n_bins, dtype=np.int32),
            "lo": edges[:-1].astype(np.float32),
            "hi": edges[1:].astype(np.float32),
            "count": counts.astype(np.int64),
            "threshold": np.float32(threshold),
        }
    )
