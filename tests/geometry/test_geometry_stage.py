"""The whole geometry computation on a small planted atlas, written through the real schema."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from core.geometry import umap_layout
from core.geometry.config import GeometryConfig
from core.geometry.stage import TABLES, compute_geometry, write_tables
from core.store import schema
from core.store.atlas import AtlasWriter

SAES = ("L1/resid_post", "L2/resid_post", "L2/mlp_out")
CFG = GeometryConfig(
    window=16,
    min_window_tokens=8,
    lobe_ks=(2, 4),
    default_k=4,
    stats_ks=(4,),
    n_permutations=20,
    umap_epochs=30,
    entropy_dims=20,
    spectrum_ranks=(3, 30),
)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, make_atlas: Any) -> dict[str, Any]:
    syn = make_atlas(saes=SAES, n_docs=80)
    kinds = {s: s.split("/")[1] for s in SAES}
    tables, summary = compute_geometry(syn.con, syn.decoders, kinds, CFG)
    writer = AtlasWriter(tmp_path_factory.mktemp("geo") / "atlas.duckdb")
    write_tables(writer, tables)
    write_tables(writer, tables)  # idempotent: the second write replaces the first
    return {"syn": syn, "tables": tables, "summary": summary, "con": writer.con}


def test_every_table_is_written_with_the_schema_columns(result: dict[str, Any]) -> None:
    con = result["con"]
    for name in TABLES:
        cols = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
        assert set(result["tables"][name].columns) == set(cols), name
        assert name in schema.GEOMETRY_TABLES
    n = con.execute("SELECT count(*) FROM feature_geometry").fetchone()
    assert n == (len(SAES) * 100,)


def test_lobes_recovered_and_statistics_far_above_baseline(result: dict[str, Any]) -> None:
    fg, truth = result["tables"]["feature_geometry"], result["syn"].truth
    for s in SAES:
        assert adjusted_mutual_info_score(truth, fg[fg["sae_id"] == s]["lobe"]) > 0.95
    m = result["tables"]["geometry_metrics"].set_index(["sae_id", "metric"])
    ami = m.loc[("L1/resid_post", "ami_geometry_vs_lobes")]
    assert ami["k"] == 4 and ami["value"] > 0.9 and ami["z"] > 10
    lr = m.loc[("L1/resid_post", "logreg_balanced_accuracy")]
    assert lr["value"] > lr["baseline_mean"] + 0.3
    slope = m.loc[("L1/resid_post", "eigen_power_law_slope")]
    assert {"ci_low", "ci_high", "gaussian"} <= set(json.loads(slope["detail"]))


def test_joint_layout_only_for_residual_saes(result: dict[str, Any]) -> None:
    fg = result["tables"]["feature_geometry"]
    resid = fg["sae_id"].str.endswith("resid_post")
    assert fg.loc[resid, ["joint_x", "joint_y"]].notna().all().all()
    assert fg.loc[~resid, ["joint_x", "joint_y"]].isna().all().all()
    assert result["summary"]["joint"] == ["L1/resid_post", "L2/resid_post"]
    assert np.isfinite(fg[["umap_x", "umap_y"]].to_numpy()).all()


def test_lobe_tables_cover_every_k(result: dict[str, Any]) -> None:
    t = result["tables"]
    assert set(t["feature_lobes"]["k"]) == {2, 4} and set(t["lobes"]["k"]) == {2, 4}
    sizes = t["lobes"].groupby(["sae_id", "k"])["size"].sum()
    assert (sizes == 100).all()
    top = t["cooccurrence"]
    assert (top["rank"] <= 10).all() and (top["feature"] != top["other"]).all()


def test_an_sae_that_never_fires_gets_lobe_minus_one(make_atlas: Any) -> None:
    syn = make_atlas(n_docs=20)
    rng = np.random.default_rng(0)
    dead = rng.standard_normal((30, 48))
    decoders = {**syn.decoders, "L3/resid_post": dead / np.linalg.norm(dead, axis=1, keepdims=True)}
    kinds = {s: "resid_post" for s in decoders}
    tables, summary = compute_geometry(syn.con, decoders, kinds, CFG)
    fg = tables["feature_geometry"]
    assert (fg[fg["sae_id"] == "L3/resid_post"]["lobe"] == -1).all()
    assert summary["saes"]["L3/resid_post"]["alive"] == 0
    assert fg[["joint_x", "joint_y"]].notna().all().all()


def test_umap_layout_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    unit = rng.standard_normal((150, 16))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    cfg = GeometryConfig(umap_epochs=30)
    a, b = umap_layout.layout(unit, cfg), umap_layout.layout(unit, cfg)
    assert a.shape == (150, 2) and np.array_equal(a, b)
