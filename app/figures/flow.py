"""Figures of the Flow page: the chain graph across layers, class shares per layer and the score
distributions behind the thresholds (METHODS §6)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core import render
from core.flow.chains import FlowGraph, Node, graph_layout

CLASS_COLOURS = {
    "translated": "#2563eb",
    "persists": "#2563eb",
    "processed": "#7c3aed",
    "newborn": "#ea580c",
    "emerges": "#ea580c",
    "unexplained": "#9ca3af",
}
SITE_COLOURS = {"mlp_out": "#16a34a", "attn_out": "#db2777", "resid_post": "#d1d5db"}
KIND_NAMES = {"R": "s(R) residual L-1", "M": "s(M) MLP", "A": "s(A) attention"}

Info = dict[tuple[str, int], dict[str, Any]]
"""Feature rows of the graph's nodes by (sae_id, feature)."""


def roles(g: FlowGraph) -> dict[Node, str]:
    """Each node's part in the graph: seed, chain, module (feeds the chain) or branch."""
    out = {e.src: "module" for e in g.modules} | {e.dst: "branch" for e in g.branches}
    out |= {n: "chain" for n in g.chain}
    out[g.seed] = "seed"
    return out


def node_hover(node: Node, info: dict[str, Any], role: str) -> str:
    """Escaped hover text: key and role, explanation, class, scores, density, top tokens."""
    details = []
    if info.get("flow_class"):
        details.append(f"class: {info['flow_class']}")
    scores = [f"s({k.upper()}) {info[f's_{k}']:.2f}" for k in "rma" if _num(info.get(f"s_{k}"))]
    if scores:
        details.append(" · ".join(scores))
    if _num(info.get("density")):
        details.append(f"density {info['density']:.2e}")
    return render.feature_label(
        node.sae_id,
        node.feature,
        info.get("explanation"),
        info.get("top_tokens"),
        note=f" ({role})",
        details=details,
        max_chars=120,
        n_tokens=6,
    )


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not pd.isna(v)


def _node_text(node: Node, info: dict[str, Any]) -> str:
    """The number under a node and, below it, its first top token (escaped)."""
    tops = info.get("top_tokens")
    if tops is None or not len(tops):
        return f"{node.feature}"
    return f"{node.feature}<br>{render.plot_text(repr(str(list(tops)[0])[:12]))}"


def _edge_traces(g: FlowGraph, pos: dict[Node, tuple[float, float]]) -> list[go.Scatter]:
    traces = []
    styles = (
        ("chain", g.chain_edges, "#334155", 3),
        ("feeds", g.modules, "#16a34a", 1.5),
        ("branch", g.branches, "#94a3b8", 1),
    )
    for name, edges, colour, width in styles:
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in edges:
            (x0, y0), (x1, y1) = pos[e.src], pos[e.dst]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=name,
                hoverinfo="skip",
                line={"color": colour, "width": width},
            )
        )
    mids = [
        ((pos[e.src][0] + pos[e.dst][0]) / 2, (pos[e.src][1] + pos[e.dst][1]) / 2, e)
        for e in g.edges()
    ]
    traces.append(
        go.Scatter(
            x=[m[0] for m in mids],
            y=[m[1] for m in mids],
            mode="text",
            showlegend=False,
            text=[f"{m[2].cosine:.2f}" for m in mids],
            textposition="top center",
            hovertext=[f"{m[2].kind} cosine {m[2].cosine:.3f}" for m in mids],
            hoverinfo="text",
        )
    )
    return traces


def _node_trace(g: FlowGraph, pos: dict[Node, tuple[float, float]], info: Info) -> go.Scatter:
    nodes, role = g.nodes(), roles(g)
    rows = [info.get((n.sae_id, n.feature), {}) for n in nodes]
    colours = [
        CLASS_COLOURS.get(str(r.get("flow_class")), SITE_COLOURS[n.site.kind])
        for n, r in zip(nodes, rows, strict=True)
    ]
    return go.Scatter(
        x=[pos[n][0] for n in nodes],
        y=[pos[n][1] for n in nodes],
        mode="markers+text",
        text=[_node_text(n, r) for n, r in zip(nodes, rows, strict=True)],
        textposition="bottom center",
        showlegend=False,
        marker={
            "size": [26 if role[n] == "seed" else 18 for n in nodes],
            "color": colours,
            "symbol": ["square" if n.site.kind != "resid_post" else "circle" for n in nodes],
            "line": {"width": [3 if role[n] == "seed" else 1 for n in nodes], "color": "#0f172a"},
        },
        hovertext=[node_hover(n, r, role[n]) for n, r in zip(nodes, rows, strict=True)],
        hoverinfo="text",
        customdata=[[n.sae_id, n.feature] for n in nodes],
    )


def graph_figure(g: FlowGraph, info: Info) -> go.Figure:
    """The graph with layers left to right; click a node to select it (customdata: sae, feature)."""
    pos = graph_layout(g)
    fig = go.Figure([*_edge_traces(g, pos), _node_trace(g, pos, info)])
    layers = sorted({n.site.layer for n in g.nodes()})
    ys = [p[1] for p in pos.values()]
    fig.update_layout(
        height=200 + 70 * (max(ys) - min(ys)),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={
            "tickvals": layers,
            "ticktext": [f"layer {i}" for i in layers],
            "zeroline": False,
            "range": [min(layers) - 0.9, max(layers) + 0.6],
        },
        yaxis={"visible": False, "range": [min(ys) - 0.8, max(ys) + 0.8]},
        legend={"orientation": "h", "y": 1.08},
        clickmode="event+select",
    )
    return fig


def class_shares_figure(shares: pd.DataFrame) -> go.Figure:
    """Stacked shares of each flow class per residual SAE."""
    fig = go.Figure()
    for cls, grp in shares.groupby("flow_class", sort=False):
        fig.add_bar(
            x=grp["sae_id"],
            y=grp["share"],
            name=str(cls),
            marker_color=CLASS_COLOURS.get(str(cls)),
            customdata=grp["n"],
            hovertemplate="%{x}: %{y:.1%} (%{customdata} features)<extra>" + str(cls) + "</extra>",
        )
    fig.update_layout(
        barmode="stack",
        height=280,
        yaxis_tickformat=".0%",
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


def score_figure(h: pd.DataFrame, kind: str, show_legend: bool) -> go.Figure:
    """Observed vs chance scores of one kind ('R' | 'M' | 'A'), its threshold dashed."""
    fig = go.Figure()
    for series, colour in (("observed", "#2563eb"), ("random", "#9ca3af")):
        s = h[h["series"] == series]
        fig.add_bar(
            x=(s["lo"] + s["hi"]) / 2,
            y=s["count"],
            name=series,
            marker_color=colour,
            opacity=0.75,
        )
    t = float(h["threshold"].iloc[0])
    fig.add_vline(x=t, line_dash="dash", annotation_text=f"t = {t:.2f}")
    fig.update_layout(
        barmode="overlay",
        height=240,
        title=KIND_NAMES[kind],
        bargap=0,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis_range=[0, 1],
        showlegend=show_legend,
    )
    return fig
