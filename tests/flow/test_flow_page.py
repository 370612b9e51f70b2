"""The Flow page renders a planted chain, its actions and the layer summaries (AppTest, no browser)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.flow.config import FlowConfig
from core.flow.stage import compute_flow
from core.model.sites import Site
from core.store import schema

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
SITES = [Site(0, "resid_post"), Site(1, "resid_post"), Site(2, "resid_post"), Site(2, "mlp_out")]


def _atlas(path: Path, q: torch.Tensor) -> None:
    """Planted chain L0 #3 -> L1 #3 -> L2 #3 (same direction); every other row its own direction."""
    dec = {s: q[8 * i : 8 * i + 8].clone() for i, s in enumerate(SITES)}  # (8, 64) each
    for s in SITES[1:3]:
        dec[s][3] = dec[SITES[0]][3]
    con = duckdb.connect(str(path))
    for stmt in schema.create_statements():
        con.execute(stmt)
    con.execute(
        "INSERT INTO runs (run_id, created, schema_version) VALUES ('t', ?, 1)", [datetime.now()]
    )
    feats = []
    for s in SITES:
        con.execute(
            "INSERT INTO saes (sae_id, layer, site, d_in, d_sae) VALUES (?, ?, ?, 64, 8)",
            [s.id, s.layer, s.kind],
        )
        feats.append(
            pd.DataFrame(
                {
                    "sae_id": s.id,
                    "feature": np.arange(8, dtype=np.int32),
                    "n_fire": 5,
                    "density": 0.01,
                    "max_act": np.float32(2.0),
                    "mean_act": np.float32(1.0),
                    "top_tokens": [["tok", "en"]] * 8,
                }
            )
        )
    tables = {"features": pd.concat(feats), **compute_flow(dec, FlowConfig(top_k=2))}
    for name, df in tables.items():
        con.register("_f", df)
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _f")
        con.unregister("_f")
    con.close()


@pytest.fixture
def app(
    tmp_path: Path, basis: Callable[[int], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> AppTest:
    _atlas(tmp_path / "atlas.duckdb", basis(64))
    monkeypatch.setenv("SAE_ATLAS_PATH", str(tmp_path / "atlas.duckdb"))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "ws.duckdb"))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("app_pages/flow.py")
    return at


def test_page_shows_chain_and_steer_link(app: AppTest) -> None:
    app.query_params.update({"sae": "L1/resid_post", "feature": "3"})
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    nodes = app.dataframe[0].value
    chain = nodes[nodes["role"].isin(["chain", "seed"])]
    assert chain["sae_id"].tolist() == ["L0/resid_post", "L1/resid_post", "L2/resid_post"]
    assert (chain["feature"] == 3).all()
    links = [parse_qs(p.proto.query_string) for p in app.get("page_link")]
    chains = [q["chain"][0] for q in links if "chain" in q]
    assert "L0/resid_post:3,L1/resid_post:3,L2/resid_post:3" in chains  # "steer with this chain"
    assert any("per layer" in str(m.value) for m in app.markdown)


def test_page_without_feature_and_with_bad_one(app: AppTest) -> None:
    app.run()
    assert not app.exception and any("Pick a feature" in c.value for c in app.caption)
    app.query_params.update({"sae": "L9/resid_post", "feature": "1"})
    app.run()
    assert not app.exception and "Unknown SAE" in app.error[0].value


HOSTILE_EXPLANATION = "<script>alert(1)</script> fires on <b>bold</b>"
HOSTILE_TOKEN = "<b>tok</b>"


def _page(path: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(path))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(path.parent / "ws.duckdb"))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.switch_page("app_pages/flow.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_hover_labels_reach_the_graph_escaped(
    tmp_path: Path, basis: Callable[[int], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explanations (from an LLM) and tokens (from the corpus) are text in the hover, never HTML."""
    path = tmp_path / "atlas.duckdb"
    _atlas(path, basis(64))
    con = duckdb.connect(str(path))
    con.execute("UPDATE features SET top_tokens = [?, 'x'] WHERE feature = 3", [HOSTILE_TOKEN])
    con.execute(
        "INSERT INTO explanations (sae_id, feature, explainer, model, prompt_version, "
        "explanation) VALUES ('L1/resid_post', 3, 'test', 'm', 'v1', ?)",
        [HOSTILE_EXPLANATION],
    )
    con.close()
    at = _page(path, monkeypatch, sae="L1/resid_post", feature="3")
    graph = json.loads(at.get("plotly_chart")[0].proto.spec)
    nodes = next(t for t in graph["data"] if "customdata" in t)
    seed = nodes["hovertext"][[c[0] for c in nodes["customdata"]].index("L1/resid_post")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; fires on &lt;b&gt;bold&lt;/b&gt;" in seed
    assert "&lt;b&gt;tok&lt;/b&gt;" in seed
    text = json.dumps(nodes["hovertext"] + nodes["text"])
    assert "<script>" not in text and "<b>tok" not in text and "<b>bold" not in text
    assert any("&lt;b&gt;tok" in t for t in nodes["text"])  # the token under each node


def test_sliders_start_at_the_thresholds_the_atlas_recorded(
    tmp_path: Path, basis: Callable[[int], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "atlas.duckdb"
    _atlas(path, basis(64))
    con = duckdb.connect(str(path))
    flow = asdict(FlowConfig(t_r=0.7, chain_min_module=0.3))
    con.execute("UPDATE runs SET config = ?", [json.dumps({"flow": flow})])
    con.close()
    at = _page(path, monkeypatch, sae="L1/resid_post", feature="3")
    assert at.slider(key="flow-min-r").value == pytest.approx(0.7)
    assert at.slider(key="flow-min-m").value == pytest.approx(0.3)


def test_sliders_fall_back_to_the_defaults_without_a_recorded_config(
    tmp_path: Path, basis: Callable[[int], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "atlas.duckdb"
    _atlas(path, basis(64))
    con = duckdb.connect(str(path))  # an impossible value recorded: the defaults stand
    con.execute("UPDATE runs SET config = ?", [json.dumps({"flow": {"t_r": 7.0}})])
    con.close()
    at = _page(path, monkeypatch, sae="L1/resid_post", feature="3")
    assert at.slider(key="flow-min-r").value == pytest.approx(FlowConfig().t_r)
    assert at.slider(key="flow-min-m").value == pytest.approx(FlowConfig().chain_min_module)
