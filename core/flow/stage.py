"""The build's flow stage: matches, classes, score histograms and co-firing validation."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from core.flow import classes
from core.flow.config import FlowConfig
from core.flow.matching import match_all, plan_pairs
from core.flow.validation import validate
from core.model.sites import Site
from core.sae.model import SAE
from core.store import flow_sql
from core.store.runs import define_activations_view

if TYPE_CHECKING:
    from core.pipeline.context import BuildContext


def unit_decoders(saes: dict[Site, SAE]) -> dict[Site, torch.Tensor]:
    """(d_sae, d_in) unit decoder rows on the CPU, float32."""
    return {site: sae.unit_decoder().cpu() for site, sae in saes.items()}


def _hists(
    decoders: dict[Site, torch.Tensor], scores: pd.DataFrame, cfg: FlowConfig
) -> pd.DataFrame:
    """Observed and chance-level score histograms for every matched (residual SAE, kind)."""
    frames = []
    for pair in plan_pairs(decoders):
        dst_id = pair.dst.id
        t = cfg.thresholds(dst_id)[pair.kind]
        col = f"s_{pair.kind.lower()}"
        obs = scores.loc[scores["sae_id"] == dst_id, col].to_numpy(dtype=float)
        n_rand = cfg.n_random or decoders[pair.src].shape[0]
        seed = zlib.crc32(f"{cfg.seed}:{dst_id}:{pair.kind}".encode())  # own draw per plot
        rnd = classes.random_top1(decoders[pair.dst], n_rand, seed, cfg.chunk).numpy()
        frames.append(classes.score_hist(obs, dst_id, pair.kind, "observed", cfg.n_bins, t))
        frames.append(classes.score_hist(rnd, dst_id, pair.kind, "random", cfg.n_bins, t))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compute_flow(decoders: dict[Site, torch.Tensor], cfg: FlowConfig) -> dict[str, pd.DataFrame]:
    """flow_edges, flow_classes and flow_score_hist frames from unit decoders (d_sae, d)."""
    edges = match_all(decoders, cfg.top_k, cfg.chunk)
    resid = {s: int(d.shape[0]) for s, d in decoders.items() if s.kind == "resid_post"}
    table = classes.class_table(edges, resid, cfg)
    return {
        "flow_edges": edges,
        "flow_classes": table,
        "flow_score_hist": _hists(decoders, table, cfg),
    }


def summary(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The stage detail: edge count, class shares per SAE, co-firing matched vs random."""
    val = tables.get("flow_validation", pd.DataFrame())
    cofire = {
        f"{r.src_sae}->{r.dst_sae} {r.series}": round(float(r.share_cofire), 4)
        for r in val.itertuples()
    }
    return {
        "edges": len(tables["flow_edges"]),
        "class_shares": classes.class_shares(tables["flow_classes"]),
        "share_cofire": cofire,
    }


def stage_flow(ctx: BuildContext) -> dict[str, Any]:
    cfg: FlowConfig = getattr(ctx.cfg, "flow", FlowConfig())
    tables = compute_flow(unit_decoders(ctx.saes), cfg)
    con = ctx.writer.con  # co-firing reads the activations view over this run's Parquet
    define_activations_view(con, ctx.acts_dir)
    tables["flow_validation"] = validate(con, tables["flow_edges"], cfg)
    flow_sql.replace_flow_tables(con, tables)
    return summary(tables)
