"""One SAE's geometry and flow tables and its `saes` row, drawn from its SaeDraw.

UMAP points form one blob per decoder cluster; the joint layout shares blob centres across
layers (all SAEs read the same residual stream) with a small drift per layer. Flow: each
feature of layer L has a predecessor in layer L-1 (a random permutation); about two thirds
match it closely (persists), the rest weakly (emerges).

Costs per SAE: geometry O(W); flow edges O(W · FLOW_TOP) per layer pair; the rest O(1).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from core.synthetic.config import SyntheticConfig
from core.synthetic.features import LOBE_K, SaeDraw, ranked

LOBE_KS = (LOBE_K // 2, LOBE_K)
FLOW_TOP = 3  # candidates stored per feature and direction
T_R = 0.5  # s(R) threshold of 'persists'
GEO_WINDOW = 64  # tokens per co-occurrence window (n_windows)


def geometry_table(
    d: SaeDraw, joint_centres: np.ndarray, n_windows: int, rng: np.random.Generator
) -> pa.Table:
    """feature, umap_x/y, joint_x/y, lobe, geo_cluster, n_windows (windows it occurs in)."""
    w = d.width
    centres = rng.normal(0, 6, (LOBE_K, 2))  # (clusters, 2) this SAE's own layout
    umap = centres[d.geo] + rng.normal(0, 1.0, (w, 2))
    drift = np.array([0.3 * d.layer, 0.1 * d.layer])
    joint = joint_centres[d.geo] + drift + rng.normal(0, 1.2, (w, 2))
    windows = np.minimum(d.n_fire, n_windows) * rng.uniform(0.3, 1.0, w)
    return pa.table(
        {
            "feature": pa.array(np.arange(w, dtype=np.int32)),
            "umap_x": pa.array(umap[:, 0].astype(np.float32)),
            "umap_y": pa.array(umap[:, 1].astype(np.float32)),
            "joint_x": pa.array(joint[:, 0].astype(np.float32)),
            "joint_y": pa.array(joint[:, 1].astype(np.float32)),
            "lobe": pa.array(d.lobe.astype(np.int32)),
            "geo_cluster": pa.array(d.geo.astype(np.int32)),
            "n_windows": pa.array(np.ceil(windows).astype(np.int64)),
        }
    )


def lobes_table(d: SaeDraw) -> pa.Table:
    """k, feature, lobe, geo_cluster for k in LOBE_KS: k = 8 merges lobes 2i and 2i+1."""
    w = d.width
    per_k = [(k, LOBE_K // k) for k in LOBE_KS]
    return pa.table(
        {
            "k": pa.array(np.repeat([k for k, _ in per_k], w).astype(np.int32)),
            "feature": pa.array(np.tile(np.arange(w, dtype=np.int32), len(per_k))),
            "lobe": pa.array(np.concatenate([d.lobe // m for _, m in per_k]).astype(np.int32)),
            "geo_cluster": pa.array(
                np.concatenate([d.geo // m for _, m in per_k]).astype(np.int32)
            ),
        }
    )


def metrics_frame(rng: np.random.Generator) -> pd.DataFrame:
    """The geometry statistics with baselines (k, metric, value, baseline_mean/std, z, detail)."""
    rows: list[tuple[int | None, str, float, float, float]] = []
    for k in LOBE_KS:
        rows.append((k, "ami_geometry_vs_lobes", rng.uniform(0.05, 0.2), 0.002, 0.001))
        rows.append((k, "logreg_balanced_accuracy", rng.uniform(0.35, 0.7), 1.2 / k, 0.01))
    rows.append((None, "eigen_power_law_slope", -rng.uniform(0.4, 0.9), -0.05, 0.02))
    rows.append((None, "clustering_entropy", rng.uniform(-60, -40), -20.0, 1.5))
    df = pd.DataFrame(rows, columns=["k", "metric", "value", "baseline_mean", "baseline_std"])
    df["z"] = (df["value"] - df["baseline_mean"]) / df["baseline_std"]
    df["detail"] = json.dumps({"synthetic": True})
    return df.astype({"k": "Int32"})


def spectrum_frame(d_in: int, rng: np.random.Generator) -> pd.DataFrame:
    """rank, eigenvalue (a power law) and gaussian (flat, Marchenko-Pastur-like), each summing
    to 1: the covariance of unit rows has trace 1."""
    rank = np.arange(1, d_in + 1)
    eig = rank ** -rng.uniform(0.5, 0.9)
    gauss = np.sort(1 + 0.3 * rng.standard_normal(d_in).clip(-3, 3))[::-1]
    return pd.DataFrame(
        {"rank": rank, "eigenvalue": eig / eig.sum(), "gaussian": gauss / gauss.sum()}
    )


def flow_edges(
    src: str, dst: str, width: int, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """'R' edges from SAE `src` (layer L-1) to `dst` (layer L), both directions, FLOW_TOP ranks,
    and per dst feature its top-1 score s_r (W,) and predecessor pred_r (W,). O(W · FLOW_TOP)."""
    pred = rng.permutation(width)  # dst j's predecessor is src pred[j]
    succ = np.argsort(pred)  # src i's successor is dst succ[i]
    persists = rng.random(width) < 0.65
    s_r = np.where(persists, 0.5 + 0.45 * rng.beta(2, 2, width), 0.1 + 0.4 * rng.beta(2, 2, width))
    back = ranked(width, FLOW_TOP, 1.0, 1.0, rng) * s_r[:, None]  # (W, FLOW_TOP) dst rows
    fwd = ranked(width, FLOW_TOP, 1.0, 1.0, rng) * s_r[succ][:, None]  # (W, FLOW_TOP) src rows
    others = rng.integers(0, width, (2, width, FLOW_TOP))
    others[0, :, 0], others[1, :, 0] = pred, succ  # rank 1: the predecessor / successor
    n = width * FLOW_TOP
    this = np.repeat(np.arange(width, dtype=np.int32), FLOW_TOP)
    table = pa.table(
        {
            "src_sae": [src] * (2 * n),
            "src_feature": pa.array(np.concatenate([others[0].ravel(), this]).astype(np.int32)),
            "dst_sae": [dst] * (2 * n),
            "dst_feature": pa.array(np.concatenate([this, others[1].ravel()]).astype(np.int32)),
            "kind": ["R"] * (2 * n),
            "direction": ["back"] * n + ["fwd"] * n,
            "rank": pa.array(np.tile(np.arange(1, FLOW_TOP + 1, dtype=np.int32), 2 * width)),
            "cosine": pa.array(np.concatenate([back.ravel(), fwd.ravel()]).astype(np.float32)),
        }
    )
    return table, s_r.astype(np.float32), pred.astype(np.int32)


def flow_classes_table(
    layer: int, width: int, s_r: np.ndarray | None = None, pred: np.ndarray | None = None
) -> pa.Table:
    """feature, layer, s_r, pred_r, flow_class: persists / emerges by T_R; all NULL at the
    first layer (no residual SAE before it)."""
    if s_r is None or pred is None:
        score, pred_r = pa.nulls(width, pa.float32()), pa.nulls(width, pa.int32())
        cls = pa.nulls(width, pa.string())
    else:
        score, pred_r = pa.array(s_r), pa.array(pred)
        cls = pa.array(np.where(s_r >= T_R, "persists", "emerges"), pa.string())
    return pa.table(
        {
            "feature": pa.array(np.arange(width, dtype=np.int32)),
            "layer": pa.array(np.full(width, layer, np.int32)),
            "s_r": score,
            "pred_r": pred_r,
            "flow_class": cls,
        }
    )


def score_hist_frame(s_r: np.ndarray, rng: np.random.Generator, n_bins: int = 50) -> pd.DataFrame:
    """kind 'R', series observed / random, bin, lo, hi, count, threshold over [0, 1]."""
    edges = np.linspace(0, 1, n_bins + 1)
    chance = np.clip(rng.normal(0.13, 0.025, len(s_r)), 0, 1)
    parts = []
    for series, values in (("observed", s_r), ("random", chance)):
        counts, _ = np.histogram(values, bins=edges)
        parts.append(
            pd.DataFrame(
                {
                    "kind": "R",
                    "series": series,
                    "bin": np.arange(n_bins),
                    "lo": edges[:-1],
                    "hi": edges[1:],
                    "count": counts,
                    "threshold": T_R,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def validation_frame(src: str, dst: str, rng: np.random.Generator) -> pd.DataFrame:
    """Co-firing of matched vs random pairs for one layer pair (matched ones co-fire often)."""
    rows = []
    for series, level in (("matched", rng.uniform(0.25, 0.45)), ("random", 0.004)):
        rows.append(
            {
                "src_sae": src,
                "dst_sae": dst,
                "kind": "R",
                "series": series,
                "n_pairs": 500,
                "min_cosine": T_R,
                "cofire_overlap": 0.5,
                "mean_jaccard": level,
                "median_jaccard": level * 0.9,
                "mean_overlap": min(1.0, level * 1.6),
                "share_cofire": min(1.0, level * 1.8),
            }
        )
    return pd.DataFrame(rows)


def sae_frame(
    cfg: SyntheticConfig, sae_id: str, d: SaeDraw, rng: np.random.Generator
) -> pd.DataFrame:
    """The SAE's row: TopK, plausible reconstruction and CE numbers, a short training log; no
    weights (weights_path stays NULL)."""
    fvu = 0.08 + 0.012 * d.layer + rng.uniform(0, 0.03)
    ce_base = 2.9 + rng.uniform(-0.05, 0.05)
    ce_spliced = ce_base + 0.05 + 0.01 * d.layer + rng.uniform(0, 0.05)
    ce_zero = ce_base + 6 + rng.uniform(0, 2)
    steps = np.linspace(0, 2000, 11).astype(int)
    loss = (fvu + 0.6 * np.exp(-steps / 400)).round(4)
    log = {
        "step": steps.tolist(),
        "loss": loss.tolist(),
        "fvu": loss.tolist(),
        "auxk": [0.0] * 11,
        "dead_frac": float(1 - d.live.mean()),
        "n_tokens": cfg.n_tokens,
        "synthetic": True,
    }
    row = {
        "sae_id": sae_id,
        "layer": d.layer,
        "site": "resid_post",
        "architecture": "topk",
        "d_in": cfg.d_in,
        "d_sae": cfg.width,
        "k": cfg.k,
        "source": "synthetic",
        "fvu": fvu,
        "l0": float(cfg.k),
        "dead_frac": float(1 - d.live.mean()),
        "ce_base": ce_base,
        "ce_spliced": ce_spliced,
        "ce_zero_ablation": ce_zero,
        "ce_increase": ce_spliced - ce_base,
        "frac_loss_recovered": 1 - (ce_spliced - ce_base) / (ce_zero - ce_base),
        "n_tokens_eval": cfg.n_tokens // 10,
        "train_log": json.dumps(log),
        "cfg": json.dumps({"d_in": cfg.d_in, "d_sae": cfg.width, "k": cfg.k, "hook_name": sae_id}),
    }
    return pd.DataFrame([row])
