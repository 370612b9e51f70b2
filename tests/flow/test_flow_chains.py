"""Chains compose across layers and cut at the threshold; chains become steering specs."""

from __future__ import annotations

import math
from collections.abc import Callable

import duckdb
import pytest
import torch

from core.flow.chains import Node, flow_graph, graph_layout
from core.flow.config import FlowConfig
from core.flow.stage import compute_flow
from core.model.sites import Site
from core.steering.chain import chain_spec, format_chain, parse_chain, steering_params

L = [Site(i, "resid_post") for i in range(4)]
M2 = Site(2, "mlp_out")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _decoders(q: torch.Tensor) -> dict[Site, torch.Tensor]:
    """Chain u: L0 #3 -> L1 #7 -> L2 #2, then L3 #5 = 0.3 u + ... (cosine 0.3: cut at 0.5).

    L2/mlp_out #4 leans towards u (cosine ~0.3 > 0.15). Other rows are distinct orthonormal
    directions of q (128, 128)."""
    u, free = q[0], iter(q[1:])
    dec = {s: torch.stack([next(free) for _ in range(10)]) for s in (*L, M2)}  # (10, 128) each
    dec[L[0]][3], dec[L[1]][7], dec[L[2]][2] = u, u + 0.05 * q[100], u + 0.05 * q[101]
    dec[L[3]][5] = 0.3 * u + math.sqrt(1 - 0.09) * q[102]
    dec[M2][4] = 0.3 * u + math.sqrt(1 - 0.09) * q[103]
    return {s: _unit(w) for s, w in dec.items()}


@pytest.fixture
def con(
    basis: Callable[[int], torch.Tensor], flow_db: Callable[..., duckdb.DuckDBPyConnection]
) -> duckdb.DuckDBPyConnection:
    return flow_db(compute_flow(_decoders(basis(128)), FlowConfig(top_k=3)))


def test_chain_composes_and_cuts(con: duckdb.DuckDBPyConnection) -> None:
    want = [Node(L[0].id, 3), Node(L[1].id, 7), Node(L[2].id, 2)]
    for seed in want:  # backward, forward, or both from any point of the chain
        g = flow_graph(con, seed, min_r=0.5)
        assert g.chain == want
        assert [(e.src, e.dst) for e in g.chain_edges] == list(zip(want, want[1:], strict=False))
        assert all(e.cosine > 0.99 and e.kind == "R" for e in g.chain_edges)
    longer = flow_graph(con, Node(L[1].id, 7), min_r=0.25)
    assert longer.chain == [*want, Node(L[3].id, 5)]


def test_graph_modules_and_module_seed(con: duckdb.DuckDBPyConnection) -> None:
    g = flow_graph(con, Node(L[1].id, 7), min_r=0.5, min_module=0.15)
    assert [(e.src, e.dst, e.kind) for e in g.modules] == [(Node(M2.id, 4), Node(L[2].id, 2), "M")]
    assert abs(g.modules[0].cosine - 0.3) < 0.02
    assert flow_graph(con, Node(L[1].id, 7), min_module=0.5).modules == []
    from_mlp = flow_graph(con, Node(M2.id, 4), min_r=0.5)
    assert from_mlp.chain[-1] == Node(L[2].id, 2) and len(from_mlp.chain) == 3
    assert Node(M2.id, 4) in from_mlp.nodes()


def test_unmatched_feature_is_a_chain_of_one(con: duckdb.DuckDBPyConnection) -> None:
    g = flow_graph(con, Node(L[2].id, 9))
    assert g.chain == [Node(L[2].id, 9)] and g.edges() == []


def test_chain_spec_schedules() -> None:
    chain = [("L14/resid_post", 2), ("L12/resid_post", 5), ("L13/resid_post", 77)]
    const = chain_spec(chain, 4.0)
    assert [d["sae_id"] for d in const] == ["L12/resid_post", "L13/resid_post", "L14/resid_post"]
    assert all(d["strength"] == 4.0 for d in const)
    decay = chain_spec(chain, 4.0, "decay", alpha=-0.5)
    assert [d["strength"] for d in decay] == pytest.approx(
        [4.0, 4 * math.exp(-0.5), 4 * math.exp(-1)]
    )
    with pytest.raises(ValueError):
        chain_spec(chain, 1.0, "linear")  # type: ignore[arg-type]


def test_chain_url_round_trip() -> None:
    chain = [("L12/resid_post", 5), ("L13/resid_post", 77)]
    text = format_chain(chain)
    assert text == "L12/resid_post:5,L13/resid_post:77" and parse_chain(text) == chain
    assert steering_params(chain, "decay", alpha=-0.3) == {
        "chain": text,
        "schedule": "decay",
        "alpha": "-0.3",
    }
    with pytest.raises(ValueError, match="bad chain item"):
        parse_chain("L12/resid_post")


def test_layout_places_every_node(con: duckdb.DuckDBPyConnection) -> None:
    g = flow_graph(con, Node(L[1].id, 7))
    pos = graph_layout(g)
    assert set(pos) == set(g.nodes())
    assert [pos[n] for n in g.chain] == [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    assert pos[Node(M2.id, 4)] == (1.5, 1.0)
    assert len(set(pos.values())) == len(pos)
