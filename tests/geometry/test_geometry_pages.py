"""The Map and Lobes pages under Streamlit's AppTest against a small planted atlas file."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from core.geometry.config import GeometryConfig
from core.geometry.stage import compute_geometry
from core.store import geometry_sql

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
SAES = ("L1/resid_post", "L2/resid_post", "L2/mlp_out")
CFG = GeometryConfig(
    window=16,
    min_window_tokens=8,
    lobe_ks=(2, 4),
    default_k=4,
    stats_ks=(2, 4),
    n_permutations=20,
    umap_epochs=30,
    entropy_dims=20,
    spectrum_ranks=(3, 30),
)


def _finish(con: Any) -> None:
    """Tables a built atlas has around the geometry: runs, saes, feature statistics."""
    con.execute(
        "INSERT INTO runs (run_id, created, schema_version) VALUES ('t', ?, 1)", [datetime.now()]
    )
    for s in SAES:
        layer, site = int(s[1]), s.split("/")[1]
        con.execute("INSERT INTO saes (sae_id, layer, site, d_in, d_sae) VALUES (?, ?, ?, 48, 100)",
                    [s, layer, site])  # fmt: skip
    con.execute(
        "UPDATE features f SET n_fire = c.n, density = c.n / 14400, mean_act = 1.0 FROM "
        "(SELECT sae_id, feature, count(*) AS n FROM activations GROUP BY ALL) c "
        "WHERE c.sae_id = f.sae_id AND c.feature = f.feature"
    )
    con.execute("DROP TABLE activations")  # the app defines its own `activations` view


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory, make_atlas: Any) -> Path:
    path = tmp_path_factory.mktemp("geo-pages") / "atlas.duckdb"
    syn = make_atlas(saes=SAES, n_docs=80, path=str(path))
    tables, _ = compute_geometry(syn.con, syn.decoders, {s: s.split("/")[1] for s in SAES}, CFG)
    for name, df in tables.items():
        syn.con.register("_f", df)
        syn.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _f")
        syn.con.unregister("_f")
    _finish(syn.con)
    syn.con.close()
    return path


@pytest.fixture
def env(atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "ws.duckdb"))


def run_page(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_map_page_draws_the_joint_layout(env: None) -> None:
    at = run_page("map")
    assert at.title[0].value == "Feature map"
    assert any("200 features" in c.value for c in at.caption)  # two residual SAEs x 100
    assert at.get("plotly_chart")


def test_map_page_draws_density_beyond_the_point_limit_and_zooms(env: None) -> None:
    at = run_page("map")
    at.select_slider(key="map-limit").set_value(100).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("200 in view, shown as their density" in c.value for c in at.caption)
    assert at.button[1].disabled and at.button[2].disabled  # zoom out / whole map: at the whole map
    at.button[0].click().run()  # zoom in: half the width around the centre
    assert not at.exception and not at.button[1].disabled
    assert any(c.value.startswith("200 features · ") and " in view" in c.value for c in at.caption)


def test_map_coordinates_cover_every_feature_of_the_layout(atlas: Path) -> None:
    import duckdb

    con = duckdb.connect(str(atlas), read_only=True)
    ids = ["L1/resid_post", "L2/resid_post"]
    df = geometry_sql.map_coordinates(con, ids, True, 4)
    assert len(df) == 200 and set(df["sae"]) == {0, 1}
    assert list(df.columns) == ["sae", "feature", "x", "y", "lobe", "density"]
    assert df[["sae", "feature"]].drop_duplicates().shape[0] == 200
    assert geometry_sql.map_coordinates(con, ["L2/mlp_out"], True, 4).empty  # not joint
    con.close()


def test_lobes_page_shows_lobes_function_and_statistics(env: None) -> None:
    at = run_page("lobes", sae="L2/resid_post")
    assert at.selectbox(key="lobes-sae").value == "L2/resid_post"
    assert at.selectbox(key="lobes-k").value == 4  # the middle of (2, 4) when 8 is absent
    lobes = at.dataframe[0].value
    assert sorted(lobes["lobe"]) == [0, 1, 2, 3] and lobes["size"].sum() == 100
    stats = at.dataframe[2].value if len(at.dataframe) > 2 else None
    assert stats is not None and "AMI" in " ".join(stats["statistic"])
    assert any(s.value == "Layer-scale structure" for s in at.subheader)


def test_lobes_page_adds_a_lobe_to_a_set(env: None) -> None:
    at = run_page("lobes")
    at.text_input(key="lobes-add-new").input("lobe zero")
    at.button[0].click().run()
    assert not at.exception
    assert any("to “lobe zero”" in s.value for s in at.success)


def test_pages_start_at_the_lobe_count_the_atlas_recorded(
    atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    path = tmp_path / "atlas.duckdb"
    shutil.copy(atlas, path)
    con = duckdb.connect(str(path))
    geometry = asdict(replace(CFG, default_k=2))
    con.execute("UPDATE runs SET config = ?", [json.dumps({"geometry": geometry})])
    con.close()
    monkeypatch.setenv("SAE_ATLAS_PATH", str(path))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "ws.duckdb"))
    assert run_page("map").selectbox(key="map-k").value == 2
    assert run_page("lobes").selectbox(key="lobes-k").value == 2
