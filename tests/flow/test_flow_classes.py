"""Planted carried / processed / MLP-born features get their classes."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from core.flow.config import FlowConfig
from core.flow.stage import compute_flow
from core.model.sites import Site
from core.store import flow_sql

R0, R1 = Site(3, "resid_post"), Site(4, "resid_post")
M1, A1 = Site(4, "mlp_out"), Site(4, "attn_out")
# Residual features of layer 4 by construction: 0-9 carried, 10-19 MLP-born, 20-24 attention-born,
# 25-29 carried + MLP, 30-35 unrelated to everything.
PLANTED = ["translated"] * 10 + ["newborn"] * 15 + ["processed"] * 5 + ["unexplained"] * 6


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _planted(q: torch.Tensor) -> dict[Site, torch.Tensor]:
    """Unit decoders built from orthonormal directions q (128, 128) plus a little noise."""
    r0, m1, a1 = q[0:40], q[40:80], q[80:120]  # disjoint directions: cosines exactly 0
    rows = [r0[i] for i in range(10)] + [m1[i] for i in range(10)] + [a1[i] for i in range(5)]
    rows += [r0[10 + i] + m1[10 + i] for i in range(5)] + [q[120 + i] for i in range(6)]
    r1 = torch.stack(rows)  # (36, 128)
    noisy = {
        s: _unit(w + 0.01 * torch.randn_like(w))
        for s, w in {R0: r0, R1: r1, M1: m1, A1: a1}.items()
    }
    return noisy


def _classes(decoders: dict[Site, torch.Tensor], cfg: FlowConfig | None = None) -> pd.DataFrame:
    t = compute_flow(decoders, cfg or FlowConfig())["flow_classes"]
    return t[t.sae_id == R1.id].sort_values("feature").reset_index(drop=True)


def test_planted_classes(basis: Callable[[int], torch.Tensor]) -> None:
    c = _classes(_planted(basis(128)))
    assert c["flow_class"].tolist() == PLANTED
    newborn = c.iloc[10:20]  # MLP-born: an MLP row, far from every layer-3 residual row
    assert (newborn["s_m"] > 0.95).all() and (newborn["s_r"] < 0.1).all()
    assert newborn["pred_m"].tolist() == list(range(10))
    assert (c.iloc[25:30]["s_r"].between(0.6, 0.8)).all()  # (r + m) / sqrt(2)


def test_residual_only_persists_or_emerges(basis: Callable[[int], torch.Tensor]) -> None:
    dec = _planted(basis(128))
    c = _classes({R0: dec[R0], R1: dec[R1]})
    want = ["persists" if p in ("translated", "processed") else "emerges" for p in PLANTED]
    assert c["flow_class"].tolist() == want
    assert c["s_m"].isna().all() and c["pred_m"].isna().all()


def test_thresholds_configurable_per_layer(basis: Callable[[int], torch.Tensor]) -> None:
    cfg = FlowConfig(per_layer={R1.id: {"t_r": 0.8}})  # processed rows have s_r ~ 0.71
    c = _classes(_planted(basis(128)), cfg)
    assert (c.iloc[25:30]["flow_class"] == "newborn").all()
    with pytest.raises(ValueError, match="unknown thresholds"):
        FlowConfig(per_layer={R1.id: {"t_x": 0.1}})


def test_tables_fit_schema(
    basis: Callable[[int], torch.Tensor], flow_db: Callable[..., duckdb.DuckDBPyConnection]
) -> None:
    tables = compute_flow(_planted(basis(128)), FlowConfig(top_k=2))
    con = flow_db(tables)
    first = con.execute(
        "SELECT count(*), count(flow_class) FROM flow_classes WHERE sae_id = ?", [R0.id]
    ).fetchone()
    assert first == (40, 0)  # no layer-2 SAE: rows without a class
    shares = flow_sql.class_shares(con)
    assert np.isclose(shares["share"].sum(), 1.0)
    hist = flow_sql.score_hist(con)
    assert set(hist["series"]) == {"observed", "random"} and set(hist["kind"]) == {"R", "M", "A"}
    obs = hist[(hist.series == "observed") & (hist.kind == "R")]
    assert obs["count"].sum() == 36 and (hist.loc[hist.kind == "M", "threshold"] == 0.25).all()
    assert flow_sql.feature_class(con, R1.id, 12)["flow_class"].item() == "newborn"
    assert flow_sql.predecessors(con, R1.id, 3)["kind"].tolist() == ["A", "A", "M", "M", "R", "R"]
