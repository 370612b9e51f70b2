"""The geometry build stage (METHODS §5): co-occurrence, lobes, spatial statistics, layer-scale
structure and UMAP layouts, for every SAE of the atlas; writes the GEOMETRY_TABLES.

`compute_geometry` needs only a DuckDB connection (tokens, documents, features and the
`activations` view) and the unit decoders, so tests and benchmarks run it without a model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from core.geometry import cooccurrence as cooc
from core.geometry import layer_structure, lobes, spatial, spectral, umap_layout
from core.geometry.config import GeometryConfig
from core.store import geometry_sql
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view

if TYPE_CHECKING:
    from core.pipeline.context import BuildContext

Frames = dict[str, list[pd.DataFrame]]
TABLES = (
    "feature_geometry",
    "feature_lobes",
    "cooccurrence",
    "lobes",
    "lobe_function",
    "geometry_metrics",
    "eigen_spectrum",
)
"""The tables this stage owns (schema.GEOMETRY_TABLES), rewritten whole on every run."""


class Clock:
    """Wall and CPU seconds per part, summed over SAEs (reported in the stage detail)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0


def _metric(sae_id: str, k: int | None, name: str, m: spatial.Measured) -> dict[str, Any]:
    return {
        "sae_id": sae_id,
        "k": k,
        "metric": name,
        "value": m.value,
        "baseline_mean": m.baseline_mean,
        "baseline_std": m.baseline_std,
        "z": m.z,
        "detail": json.dumps(m.detail),
    }


def _tokens(con: duckdb.DuckDBPyConnection, sae_id: str, d_sae: int) -> list[list[str]]:
    """(d_sae,) top-token lists from `features` (empty where missing)."""
    out: list[list[str]] = [[] for _ in range(d_sae)]
    for f, toks in geometry_sql.feature_top_tokens(con, sae_id).itertuples(index=False):
        if 0 <= f < d_sae and isinstance(toks, list | np.ndarray):  # NULL for dead features
            out[f] = [str(t) for t in toks]
    return out


def firing_matrix(
    con: duckdb.DuckDBPyConnection, sae_id: str, d_sae: int, wins: pd.DataFrame, cfg: GeometryConfig
) -> sp.csr_matrix:
    """(n_windows, d_sae) binary B: the feature fires somewhere in the window. O(nnz B)."""
    fire = geometry_sql.window_firing(
        con, wins, sae_id, cfg.window, cfg.threshold, cfg.threshold_relative
    )
    f = fire["feature"].to_numpy()
    keep = (f >= 0) & (f < d_sae)
    return cooc.binary_matrix(fire["win"].to_numpy()[keep], f[keep], len(wins), d_sae)


def cluster_lobes(B: sp.csr_matrix, cfg: GeometryConfig) -> dict[int, np.ndarray]:
    """{k: (d,) lobe, -1 where the feature never occurs} by cfg.lobe_method."""
    if cfg.lobe_method == "dense":  # the paper's (d, d) phi: small SAEs only
        co = cooc.count(B)
        return lobes.cooccurrence_lobes(cooc.phi_coefficient(co), co.alive, cfg.lobe_ks, cfg.seed)
    return lobes.operator_lobes(B, cfg.lobe_ks, cfg.seed)


def _lobe_frames(
    sae_id: str,
    labels: dict[int, np.ndarray],
    B: sp.csr_matrix,
    tokens: list[list[str]],
    wins: pd.DataFrame,
    out: Frames,
) -> None:
    phi = spectral.PhiAffinity(B)  # hubs by mean phi within the lobe, without (d, d) phi
    for k, lab in labels.items():
        winner = lobes.winning_lobe(lobes.lobe_fractions(B, lab, k))  # (n_windows,)
        table = lobes.lobe_table(lab, k, lobes.hub_scores(phi, lab, k), tokens, winner)
        func = lobes.lobe_function(winner, wins)
        for df in (table, func):
            df.insert(0, "k", k)
            df.insert(0, "sae_id", sae_id)
        out["lobes"].append(table)
        out["lobe_function"].append(func)


def _spatial_frames(
    sae_id: str,
    unit: np.ndarray,
    labels: dict[int, np.ndarray],
    alive: np.ndarray,
    cfg: GeometryConfig,
    clock: Clock,
    out: Frames,
) -> dict[int, np.ndarray]:
    """AMI z-score and logistic regression per k in stats_ks; returns the geometric clusters."""
    ks = [k for k in cfg.stats_ks if k in labels]
    with clock.part("geometric clusters"):
        geo = spatial.geometric_clusters(
            unit[alive], ks, cfg.seed, cfg.geo_method, cfg.geo_neighbors
        )  # {k: (n_alive,)}
    rows = []
    for k in geo:
        y = labels[k][alive]
        with clock.part("ami permutations"):
            m = spatial.ami_zscore(geo[k], y, cfg.n_permutations, cfg.seed)
            rows.append(_metric(sae_id, k, "ami_geometry_vs_lobes", m))
        with clock.part("logistic regression"):
            m = spatial.logreg_vs_gaussian(unit[alive], y, cfg.test_frac, cfg.n_gaussian, cfg.seed)
            rows.append(_metric(sae_id, k, "logreg_balanced_accuracy", m))
    out["geometry_metrics"].append(pd.DataFrame(rows))
    return {k: lobes.expand(g, alive) for k, g in geo.items()}


def _layer_frames(sae_id: str, unit: np.ndarray, cfg: GeometryConfig, out: Frames) -> None:
    lo, hi = cfg.spectrum_ranks
    slope, eig, g = layer_structure.spectrum_vs_gaussian(unit, lo, hi, cfg.seed)
    ent = layer_structure.clustering_entropy(
        unit, cfg.entropy_dims, cfg.entropy_k, cfg.n_gaussian, cfg.seed
    )
    out["geometry_metrics"].append(
        pd.DataFrame(
            [
                _metric(sae_id, None, "eigen_power_law_slope", slope),
                _metric(sae_id, None, "clustering_entropy", ent),
            ]
        )
    )
    out["eigen_spectrum"].append(
        pd.DataFrame(
            {
                "sae_id": sae_id,
                "rank": np.arange(1, len(eig) + 1, dtype=np.int32),
                "eigenvalue": eig,
                "gaussian": g,
            }
        )
    )


def _feature_frames(
    sae_id: str,
    n_i: np.ndarray,
    labels: dict[int, np.ndarray],
    geo: dict[int, np.ndarray],
    xy: np.ndarray,
    cfg: GeometryConfig,
    out: Frames,
) -> None:
    d = len(n_i)
    none = np.full(d, -1, dtype=np.int32)
    out["feature_geometry"].append(
        pd.DataFrame(
            {
                "sae_id": sae_id,
                "feature": np.arange(d, dtype=np.int32),
                "umap_x": xy[:, 0],
                "umap_y": xy[:, 1],
                "joint_x": np.nan,
                "joint_y": np.nan,
                "lobe": labels.get(cfg.default_k, none),
                "geo_cluster": geo.get(cfg.default_k, none),
                "n_windows": n_i,
            }
        )
    )
    for k, lab in labels.items():
        out["feature_lobes"].append(
            pd.DataFrame(
                {
                    "sae_id": sae_id,
                    "k": k,
                    "feature": np.arange(d, dtype=np.int32),
                    "lobe": lab,
                    "geo_cluster": geo.get(k, none),
                }
            )
        )


def sae_geometry(
    con: duckdb.DuckDBPyConnection,
    sae_id: str,
    unit: np.ndarray,
    wins: pd.DataFrame,
    cfg: GeometryConfig,
    clock: Clock,
    out: Frames,
) -> dict[str, Any]:
    """Everything for one SAE; unit is its (d_sae, d_in) unit-norm decoder. Appends to `out`.

    Cost with d = d_sae, n = windows, default methods: co-occurrence O(nnz(B)·d + d²) time;
    lobes O(iterations·nnz(B)·k); geo_cluster O(d²·d_in) time in blocks; UMAP kNN the same;
    memory O(nnz(B) + d·(d_in + k + m)) throughout — no (d, d) array."""
    d_sae = unit.shape[0]
    with clock.part("co-occurrence"):
        B = firing_matrix(con, sae_id, d_sae, wins, cfg)
        n_i = cooc.occurrences(B)
        pairs = cooc.top_partners(B, cfg.n_cooccur, cfg.cooccur_block_cells)
        pairs.insert(0, "sae_id", sae_id)
        out["cooccurrence"].append(pairs)
    with clock.part("lobes"):
        labels = cluster_lobes(B, cfg)
        _lobe_frames(sae_id, labels, B, _tokens(con, sae_id, d_sae), wins, out)
    geo = _spatial_frames(sae_id, unit, labels, n_i > 0, cfg, clock, out)
    with clock.part("layer structure"):
        _layer_frames(sae_id, unit, cfg, out)
    with clock.part("umap"):
        xy = umap_layout.layout(unit, cfg)  # (d_sae, 2)
    _feature_frames(sae_id, n_i, labels, geo, xy, cfg, out)
    return {"alive": int((n_i > 0).sum())}


def _joint_layout(
    decoders: dict[str, np.ndarray], kinds: dict[str, str], cfg: GeometryConfig, fg: pd.DataFrame
) -> list[str]:
    """Joint UMAP of the SAEs whose kind is in cfg.joint_kinds, written into fg's joint_x/y."""
    ids = [s for s in decoders if kinds.get(s) in cfg.joint_kinds]
    if not ids:
        return []
    xy = (
        umap_layout.layout(np.concatenate([decoders[s] for s in ids]), cfg)
        if len(ids) > 1
        else None
    )  # one SAE alone: its own layout is the joint one
    lo = 0
    for s in ids:
        rows = (fg["sae_id"] == s).to_numpy()
        n = len(decoders[s])
        src = fg.loc[rows, ["umap_x", "umap_y"]].to_numpy() if xy is None else xy[lo : lo + n]
        fg.loc[rows, ["joint_x", "joint_y"]] = src
        lo += n
    return ids


def compute_geometry(
    con: duckdb.DuckDBPyConnection,
    decoders: dict[str, np.ndarray],
    kinds: dict[str, str],
    cfg: GeometryConfig,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """All geometry tables for the given SAEs: {table: frame}, and a summary for the stage detail.

    decoders: {sae_id: (d_sae, d_in) unit-norm decoder rows}; kinds: {sae_id: site kind}.
    """
    clock = Clock()
    with clock.part("windows"):
        wins = geometry_sql.windows(con, cfg.window, cfg.min_window_tokens)
    out: Frames = {t: [] for t in TABLES}
    per_sae = {}
    for s, unit in decoders.items():
        c0 = time.process_time()
        per_sae[s] = sae_geometry(con, s, unit, wins, cfg, clock, out)
        per_sae[s]["cpu_seconds"] = round(time.process_time() - c0, 2)
    tables = {t: pd.concat(fs, ignore_index=True) for t, fs in out.items() if fs}
    if "feature_geometry" in tables:
        with clock.part("umap"):
            joint = _joint_layout(decoders, kinds, cfg, tables["feature_geometry"])
    else:
        joint = []
    summary = {
        "windows": len(wins),
        "window": cfg.window,
        "saes": per_sae,
        "joint": joint,
        "seconds": {k: round(v, 2) for k, v in clock.seconds.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in clock.cpu.items()},
    }
    return tables, summary


def write_tables(writer: AtlasWriter, tables: dict[str, pd.DataFrame]) -> None:
    """Replace every geometry table wholesale (the stage always recomputes all SAEs)."""
    for name in TABLES:
        df = tables.get(name)
        if df is None:
            geometry_sql.clear_table(writer.con, name)
        else:
            writer.replace_rows(name, df)


def stage_geometry(ctx: BuildContext) -> dict[str, Any]:
    cfg: GeometryConfig = getattr(ctx.cfg, "geometry", None) or GeometryConfig()
    con = ctx.writer.con
    define_activations_view(con, ctx.acts_dir)
    decoders = {s.id: ctx.saes[s].unit_decoder().cpu().numpy() for s in ctx.sites}
    kinds = {s.id: s.kind for s in ctx.sites}
    with limited_threads(cfg.threads):
        tables, summary = compute_geometry(con, decoders, kinds, cfg)
    write_tables(ctx.writer, tables)
    return summary


@contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """BLAS / OpenMP pools and torch's intra-op pool at `n` threads (None: leave them)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
