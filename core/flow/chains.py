"""Flow chains and graphs from stored edges, composed on demand (METHODS §6).

A chain follows a residual feature backward through its rank-1 predecessors and forward
through its rank-1 successors, one feature per layer, and stops where the cosine falls below
`min_r`. The graph adds each chain feature's MLP / attention predecessors (cosine >=
`min_module`) and the other residual features whose predecessor is a chain feature.
One query per chain feature: fast enough for the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.model.sites import Site
from core.store import flow_sql
from core.store.db import Cursor


@dataclass(frozen=True, order=True)
class Node:
    sae_id: str
    feature: int

    @property
    def site(self) -> Site:
        return Site.parse(self.sae_id)


@dataclass(frozen=True)
class Edge:
    src: Node
    dst: Node
    kind: str  # 'R' | 'M' | 'A'
    cosine: float


@dataclass
class FlowGraph:
    seed: Node
    chain: list[Node]
    """Residual features, one per layer, in layer order (the seed among them)."""
    chain_edges: list[Edge] = field(default_factory=list)
    """R edges between consecutive chain features."""
    modules: list[Edge] = field(default_factory=list)
    """MLP / attention features feeding chain features (or the module seed feeding the chain)."""
    branches: list[Edge] = field(default_factory=list)
    """Other residual features whose rank-1 predecessor is a chain feature."""

    def nodes(self) -> list[Node]:
        seen = dict.fromkeys([self.seed, *self.chain])
        for e in self.modules + self.branches:
            seen.update(dict.fromkeys([e.src, e.dst]))
        return list(seen)

    def edges(self) -> list[Edge]:
        return self.chain_edges + self.modules + self.branches


def _edge(row: pd.Series) -> Edge:
    return Edge(
        Node(row["src_sae"], int(row["src_feature"])),
        Node(row["dst_sae"], int(row["dst_feature"])),
        str(row["kind"]),
        float(row["cosine"]),
    )


def _pick(df: pd.DataFrame, node: Node, end: str, direction: str) -> pd.DataFrame:
    """Edges of `direction` whose `end` ('src' | 'dst') is the node."""
    mask = (
        (df["direction"] == direction)
        & (df[f"{end}_sae"] == node.sae_id)
        & (df[f"{end}_feature"] == node.feature)
    )
    return df[mask]


def _step(df: pd.DataFrame, node: Node, forward: bool, min_r: float) -> Edge | None:
    """The rank-1 R edge leaving the node backward or forward, if its cosine reaches min_r."""
    got = _pick(df, node, "src" if forward else "dst", "fwd" if forward else "back")
    got = got[(got["kind"] == "R") & (got["rank"] == 1) & (got["cosine"] >= min_r)]
    return _edge(got.iloc[0]) if len(got) else None


def walk(
    con: Cursor,
    seed: Node,
    forward: bool,
    min_r: float,
    cache: dict[Node, pd.DataFrame] | None = None,
) -> list[Edge]:
    """Chain edges from the seed, in walking order, until the cosine drops below min_r."""
    cache = {} if cache is None else cache
    out: list[Edge] = []
    node = seed
    while True:
        if node not in cache:
            cache[node] = flow_sql.incident_edges(con, node.sae_id, node.feature)
        e = _step(cache[node], node, forward, min_r)
        if e is None:
            return out
        out.append(e)
        node = e.dst if forward else e.src


def _module_seed(con: Cursor, seed: Node, min_module: float) -> Edge | None:
    """The best residual feature an MLP / attention seed feeds, if cosine >= min_module."""
    got = _pick(flow_sql.incident_edges(con, seed.sae_id, seed.feature), seed, "src", "fwd")
    got = got[(got["rank"] == 1) & (got["cosine"] >= min_module)]
    return _edge(got.iloc[0]) if len(got) else None


def _decorate(
    df: pd.DataFrame,
    node: Node,
    min_r: float,
    min_module: float,
) -> tuple[list[Edge], list[Edge]]:
    """(module predecessors, residual branches) of one chain feature."""
    back = _pick(df, node, "dst", "back")
    mods = back[back["kind"].isin(["M", "A"]) & (back["cosine"] >= min_module)]
    kids = _pick(df, node, "src", "back")
    kids = kids[(kids["kind"] == "R") & (kids["rank"] == 1) & (kids["cosine"] >= min_r)]
    return [_edge(r) for _, r in mods.iterrows()], [_edge(r) for _, r in kids.iterrows()]


def flow_graph(con: Cursor, seed: Node, min_r: float = 0.5, min_module: float = 0.15) -> FlowGraph:
    """The chain through `seed` with its module predecessors and residual branches."""
    root, entry = seed, None
    if seed.site.kind != "resid_post":
        entry = _module_seed(con, seed, min_module)
        if entry is None:
            return FlowGraph(seed, [])
        root = entry.dst
    cache: dict[Node, pd.DataFrame] = {}
    back = walk(con, root, False, min_r, cache)[::-1]
    fwd = walk(con, root, True, min_r, cache)
    chain = [e.src for e in back] + [root] + [e.dst for e in fwd]
    g = FlowGraph(seed, chain, back + fwd, [entry] if entry else [])
    for node in chain:
        if node not in cache:
            cache[node] = flow_sql.incident_edges(con, node.sae_id, node.feature)
        mods, kids = _decorate(cache[node], node, min_r, min_module)
        g.modules += [m for m in mods if m not in g.modules]
        g.branches += [k for k in kids if k not in g.chain_edges]
    return g


def graph_layout(g: FlowGraph) -> dict[Node, tuple[float, float]]:
    """(x, y) per node for a plot across layers: x = layer, chain on y = 0; MLP features above
    and attention features below it at x = layer - 0.5 (they write between resid L-1 and L);
    branches below their layer."""
    pos = {n: (float(n.site.layer), 0.0) for n in g.chain}
    used: dict[tuple[float, int], int] = {}
    for e in g.modules:
        if e.src in pos:
            continue
        side = 1 if e.kind == "M" else -1
        slot = (e.src.site.layer - 0.5, side)
        used[slot] = used.get(slot, 0) + 1
        pos[e.src] = (slot[0], side * float(used[slot]))
    for e in g.branches:
        if e.dst in pos:
            continue
        slot = (float(e.dst.site.layer), -2)
        used[slot] = used.get(slot, 0) + 1
        pos[e.dst] = (slot[0], -float(used[slot]))
    if g.seed not in pos:  # a seed without any chain
        pos[g.seed] = (float(g.seed.site.layer), 0.0)
    return pos
