"""Sparse-vs-dense agreement of the geometry stage on a built atlas (METHODS §5).

    python -m core.geometry.agreement --atlas data/atlases/default/atlas.duckdb

Per SAE, with the atlas's own geometry config (window, threshold) and k lobes:
- lobes: AMI(exact-operator lobes, dense lobes) against AMI(dense seed a, dense seed b); the
  bar is new ≥ dense-vs-dense − 0.05;
- geo_cluster: AMI(kNN graph, dense angular affinity) and AMI(kNN + low rank, dense) against
  AMI(dense seed a, dense seed b);
- spatial statistics with the default (sparse) methods: AMI z-score of geo_cluster vs lobes over
  label permutations, and the logistic-regression balanced accuracy vs random Gaussian vectors.
Dense methods hold (d, d) arrays: run this on atlases of small SAEs only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score as ami

from core.geometry import cooccurrence as cooc
from core.geometry import lobes, spatial
from core.geometry.config import GeometryConfig
from core.geometry.stage import firing_matrix
from core.sae.formats import load_sae
from core.store import geometry_sql
from core.store.runs import define_activations_view, latest_run


def atlas_config(con: duckdb.DuckDBPyConnection) -> tuple[GeometryConfig, Path | None]:
    """The geometry config the atlas was built with, and its activation folder name."""
    run = latest_run(con)
    saved = dict((run.config if run else {}).get("geometry") or {})
    names = {f.name for f in dataclasses.fields(GeometryConfig)}
    kwargs: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names
    }
    cfg = GeometryConfig(**kwargs)
    return cfg, Path(run.acts_dir) if run and run.acts_dir else None


def lobe_agreement(B: Any, k: int, seeds: tuple[int, int]) -> dict[str, float]:
    """AMI of operator vs dense lobes (seed a) and of dense seed a vs dense seed b."""
    co = cooc.count(B)
    phi, alive = cooc.phi_coefficient(co), co.alive
    a, b = (lobes.cooccurrence_lobes(phi, alive, [k], s)[k][alive] for s in seeds)
    new = lobes.operator_lobes(B, [k], seeds[0])[k][alive]
    return {"lobes_new_vs_dense": ami(a, new), "lobes_dense_vs_dense": ami(a, b)}


def geo_agreement(
    unit: np.ndarray, lab: np.ndarray, k: int, seeds: tuple[int, int], cfg: GeometryConfig
) -> dict[str, float]:
    """geo_cluster agreement and the spatial statistics of the kNN clusters vs lobes `lab`."""
    a, b = (spatial.geometric_clusters(unit, [k], s, "dense")[k] for s in seeds)
    out = {"geo_dense_vs_dense": ami(a, b)}
    for method in ("knn", "knn_lowrank"):
        g = spatial.geometric_clusters(unit, [k], seeds[0], method, cfg.geo_neighbors)[k]
        out[f"geo_{method}_vs_dense"] = ami(a, g)
        if method == cfg.geo_method:
            z = spatial.ami_zscore(g, lab, cfg.n_permutations, cfg.seed)
            out.update(ami_geo_lobes=z.value, ami_z=z.z or float("nan"))
    z_dense = spatial.ami_zscore(a, lab, cfg.n_permutations, cfg.seed)
    out["ami_z_dense_geo"] = z_dense.z or float("nan")
    lr = spatial.logreg_vs_gaussian(unit, lab, cfg.test_frac, cfg.n_gaussian, cfg.seed)
    out.update(logreg_bacc=lr.value, logreg_gaussian=lr.baseline_mean)
    return out


def agreement_table(atlas: Path, k: int, seeds: tuple[int, int]) -> pd.DataFrame:
    """One row per SAE of the atlas (see the module docstring)."""
    con = duckdb.connect(str(atlas), read_only=True)
    cfg, acts = atlas_config(con)
    cfg.lobe_ks = tuple(sorted({*cfg.lobe_ks, k}))
    define_activations_view(con, atlas.parent / acts if acts else None)
    wins = geometry_sql.windows(con, cfg.window, cfg.min_window_tokens)
    saes = geometry_sql.sae_shapes(con)
    rows = []
    for sae_id, d_sae, path in saes.itertuples(index=False):
        p = Path(path) if Path(path).is_absolute() else atlas.parent / path
        unit = load_sae(p).unit_decoder().cpu().numpy()  # (d_sae, d_in)
        B = firing_matrix(con, sae_id, int(d_sae), wins, cfg)
        alive = cooc.occurrences(B) > 0
        row: dict[str, Any] = {"sae_id": sae_id, "alive": int(alive.sum())}
        row.update(lobe_agreement(B, k, seeds))
        lab = lobes.operator_lobes(B, [k], seeds[0])[k][alive]
        row.update(geo_agreement(unit[alive], lab, k, seeds, cfg))
        row["lobes_pass"] = row["lobes_new_vs_dense"] >= row["lobes_dense_vs_dense"] - 0.05
        row["geo_pass"] = row[f"geo_{cfg.geo_method}_vs_dense"] >= row["geo_dense_vs_dense"] - 0.05
        rows.append(row)
        print(f"{sae_id}: lobes {row['lobes_new_vs_dense']:.3f} vs bar "
              f"{row['lobes_dense_vs_dense'] - 0.05:.3f}", file=sys.stderr, flush=True)  # fmt: skip
    con.close()
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atlas", type=Path, default=Path("data/atlases/default/atlas.duckdb"))
    ap.add_argument("--k", type=int, default=8, help="number of lobes compared")
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 1), help="the two dense seeds")
    args = ap.parse_args(argv)
    table = agreement_table(args.atlas, args.k, tuple(args.seeds))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
    ok = bool(table["lobes_pass"].all() and table["geo_pass"].all()) if len(table) else False
    print("agreement bar met for every SAE" if ok else "agreement bar NOT met", flush=True)


if __name__ == "__main__":
    main()
