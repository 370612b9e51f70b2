"""Flow page (`?sae=…&feature=…`): where a feature comes from and where it goes (METHODS §6).

The chain of decoder-cosine matches across layers with the MLP / attention features that
feed it, as a graph; per-layer class shares; the score distributions behind the thresholds;
co-firing of matched vs random pairs; add the chain to a set or steer with it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitAPIException

from app import data, state, widgets
from core.flow.chains import FlowGraph, Node, flow_graph, graph_layout
from core.flow.config import FlowConfig
from core.steering.chain import SCHEDULES, chain_spec, steering_params
from core.store import flow_sql
from core.store import queries as q

FLOW_PAGE = "app_pages/flow.py"
STEERING_PAGE = "app_pages/steering.py"
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
LINKS = {
    "page": st.column_config.LinkColumn("feature page", display_text="open"),
    "flow": st.column_config.LinkColumn("flow", display_text="re-centre"),
    "top_tokens": st.column_config.ListColumn("top tokens", width="medium"),
    "density": st.column_config.NumberColumn("density", format="%.2e"),
    "cosine": st.column_config.NumberColumn("cosine in", format="%.2f"),
}


# ---- cached reads ------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def has_flow(key: str) -> bool:
    with state.cursor(key) as cur:
        return flow_sql.has_flow(cur)


@st.cache_data(show_spinner=False, max_entries=256)
def graph(key: str, sae_id: str, feature: int, min_r: float, min_module: float) -> FlowGraph:
    with state.cursor(key) as cur:
        return flow_graph(cur, Node(sae_id, feature), min_r, min_module)


@st.cache_data(show_spinner=False, max_entries=256)
def node_rows(key: str, keys: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    with state.cursor(key) as cur:
        return q.features_for_export(cur, list(keys))


@st.cache_data(show_spinner=False, max_entries=16)
def summaries(key: str) -> dict[str, pd.DataFrame]:
    with state.cursor(key) as cur:
        return {
            "shares": flow_sql.class_shares(cur),
            "hist": flow_sql.score_hist(cur),
            "validation": flow_sql.validation(cur),
        }


def flow_url(sae_id: str, feature: int) -> str:
    return "flow?" + urlencode({"sae": sae_id, "feature": int(feature)})


# ---- graph -------------------------------------------------------------------------------------
def _hover(node: Node, info: dict[str, Any], role: str) -> str:
    lines = [f"<b>{node.sae_id} · {node.feature}</b> ({role})"]
    if isinstance(info.get("explanation"), str):
        lines.append(info["explanation"][:120])
    if info.get("flow_class"):
        lines.append(f"class: {info['flow_class']}")
    scores = [f"s({k.upper()}) {info[f's_{k}']:.2f}" for k in "rma" if _num(info.get(f"s_{k}"))]
    if scores:
        lines.append(" · ".join(scores))
    if _num(info.get("density")):
        lines.append(f"density {info['density']:.2e}")
    tops = info.get("top_tokens")
    if tops is not None and len(tops):
        lines.append("top: " + ", ".join(repr(str(t)) for t in list(tops)[:6]))
    return "<br>".join(lines)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not pd.isna(v)


def _roles(g: FlowGraph) -> dict[Node, str]:
    roles = {e.src: "module" for e in g.modules} | {e.dst: "branch" for e in g.branches}
    roles |= {n: "chain" for n in g.chain}
    roles[g.seed] = "seed"
    return roles


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


def _node_trace(
    g: FlowGraph, pos: dict[Node, tuple[float, float]], info: dict[tuple[str, int], dict[str, Any]]
) -> go.Scatter:
    nodes, roles = g.nodes(), _roles(g)
    rows = [info.get((n.sae_id, n.feature), {}) for n in nodes]
    colours = [
        CLASS_COLOURS.get(str(r.get("flow_class")), SITE_COLOURS[n.site.kind])
        for n, r in zip(nodes, rows, strict=True)
    ]
    labels = [
        f"{n.feature}"
        + (
            f"<br>{str(list(r['top_tokens'])[0])[:12]!r}"
            if r.get("top_tokens") is not None and len(r["top_tokens"])
            else ""
        )
        for n, r in zip(nodes, rows, strict=True)
    ]
    return go.Scatter(
        x=[pos[n][0] for n in nodes],
        y=[pos[n][1] for n in nodes],
        mode="markers+text",
        text=labels,
        textposition="bottom center",
        showlegend=False,
        marker={
            "size": [26 if roles[n] == "seed" else 18 for n in nodes],
            "color": colours,
            "symbol": ["square" if n.site.kind != "resid_post" else "circle" for n in nodes],
            "line": {"width": [3 if roles[n] == "seed" else 1 for n in nodes], "color": "#0f172a"},
        },
        hovertext=[_hover(n, r, roles[n]) for n, r in zip(nodes, rows, strict=True)],
        hoverinfo="text",
        customdata=[[n.sae_id, n.feature] for n in nodes],
    )


def graph_figure(g: FlowGraph, info: dict[tuple[str, int], dict[str, Any]]) -> go.Figure:
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


# ---- sections ----------------------------------------------------------------------------------
def picker(sae_ids: list[str], current: tuple[str, int] | None) -> None:
    with st.form("flow-pick", border=False):
        c = st.columns([3, 2, 1], vertical_alignment="bottom")
        idx = sae_ids.index(current[0]) if current else 0
        sae = c[0].selectbox("SAE", sae_ids, index=idx)
        feat = c[1].number_input("Feature", min_value=0, step=1, value=current[1] if current else 0)
        if c[2].form_submit_button("Trace", type="primary"):
            st.query_params.from_dict(widgets.feature_params(sae, int(feat)))
            st.rerun()


def node_table(g: FlowGraph, info: dict[tuple[str, int], dict[str, Any]]) -> None:
    cos = {e.dst: e.cosine for e in g.chain_edges + g.branches} | {
        e.src: e.cosine for e in g.modules
    }
    roles = _roles(g)
    rows = []
    for n in sorted(g.nodes(), key=lambda n: (n.site.layer, n.sae_id, n.feature)):
        r = info.get((n.sae_id, n.feature), {})
        rows.append(
            {
                "role": roles[n],
                "sae_id": n.sae_id,
                "feature": n.feature,
                "class": r.get("flow_class"),
                "cosine": cos.get(n),
                "explanation": r.get("explanation"),
                "top_tokens": r.get("top_tokens"),
                "density": r.get("density"),
                "feature_page": widgets.feature_url(*_k(n)),
                "flow_link": flow_url(*_k(n)),
            }
        )
    df = pd.DataFrame(rows).rename(columns={"feature_page": "page", "flow_link": "flow"})
    st.dataframe(df, hide_index=True, width="stretch", column_config=LINKS)


def _k(n: Node) -> tuple[str, int]:
    return n.sae_id, n.feature


def chain_actions(g: FlowGraph) -> None:
    keys = [_k(n) for n in g.chain]
    c = st.columns(2, gap="large")
    with c[0]:
        st.markdown("#### Add the chain to a feature set")
        widgets.add_to_set(state.workspace(), keys, key="flow-chain", label="Add")
    with c[1]:
        st.markdown("#### Steer with this chain")
        s = st.columns(2)
        schedule = s[0].radio("Strength per layer", SCHEDULES, horizontal=True, key="flow-sched")
        alpha = s[1].number_input(
            "α (s·e^{α·l})",
            value=-0.3,
            step=0.1,
            format="%.2f",
            disabled=schedule != "decay",
            key="flow-alpha",
        )
        spec = pd.DataFrame(chain_spec(keys, 1.0, schedule, alpha))  # type: ignore[arg-type]
        st.caption("Relative strength per layer (× the strength chosen on the Steering page):")
        st.dataframe(spec, hide_index=True, width="stretch")
        _steer_link(steering_params(keys, schedule, alpha))  # type: ignore[arg-type]


def _steer_link(params: dict[str, str]) -> None:
    try:
        st.page_link(
            STEERING_PAGE,
            label="Steer with this chain →",
            icon=":material/tune:",
            query_params=params,
        )
    except StreamlitAPIException:  # steering page not registered in this app (yet)
        st.markdown(f"[Steer with this chain →](steering?{urlencode(params)})")


def class_shares_chart(shares: pd.DataFrame) -> None:
    st.markdown("#### Where residual features come from, per layer")
    if shares.empty:
        st.caption("No classified features (the first residual SAE has no predecessor).")
        return
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
    st.plotly_chart(fig, width="stretch")


def score_chart(hist: pd.DataFrame, sae_id: str) -> None:
    """Observed vs chance score distributions of one residual SAE, thresholds drawn."""
    sub = hist[hist["sae_id"] == sae_id]
    kinds = [k for k in "RMA" if k in set(sub["kind"])]
    cols = st.columns(max(len(kinds), 1))
    for col, kind in zip(cols, kinds, strict=False):
        h = sub[sub["kind"] == kind]
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
            showlegend=kind == kinds[0],
        )
        col.plotly_chart(fig, width="stretch")


def validation_table(val: pd.DataFrame) -> None:
    st.markdown("#### Do matched features fire on the same tokens?")
    if val.empty:
        st.caption("No co-firing check in this atlas.")
        return
    wide = val.pivot_table(
        index=["src_sae", "dst_sae", "kind"],
        columns="series",
        values=["share_cofire", "mean_jaccard", "n_pairs"],
    )
    wide.columns = [f"{v} {series}" for v, series in wide.columns]
    cols = [f"{v} {s}" for v in ("share_cofire", "mean_jaccard") for s in ("matched", "random")]
    wide = wide.reindex(columns=[*cols, "n_pairs matched"]).reset_index()
    st.caption(
        "Share of pairs whose rarer feature shares at least "
        f"{float(val['cofire_overlap'].iloc[0]):.0%} of its firing tokens with the other, and "
        "the mean Jaccard overlap of their firing tokens: top-1 matches above the class "
        "threshold vs as many random pairs of live features."
    )
    fmt = {c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f") for c in cols}
    st.dataframe(wide, hide_index=True, width="stretch", column_config=fmt)


# ---- page --------------------------------------------------------------------------------------
def flow_view(key: str, sae_id: str, feature: int) -> None:
    cfg = FlowConfig()
    c = st.columns(2)
    min_r = c[0].slider("Cut the chain below s(R)", 0.0, 1.0, cfg.t_r, 0.05, key="flow-min-r")
    min_m = c[1].slider(
        "Show module features from cosine", 0.0, 1.0, cfg.chain_min_module, 0.05, key="flow-min-m"
    )
    g = graph(key, sae_id, feature, min_r, min_m)
    rows = node_rows(key, tuple(_k(n) for n in g.nodes()))
    info = {(r["sae_id"], int(r["feature"])): r for r in rows.to_dict("records")}
    if not g.chain:
        st.info("This feature feeds no residual feature above the module threshold.")
    event = st.plotly_chart(
        graph_figure(g, info),
        width="stretch",
        on_select="rerun",
        selection_mode="points",
        key="flow-graph",
    )
    _follow_click(event, (sae_id, feature))
    st.caption(f"{len(g.chain)} layer(s) in the chain · click a node to re-centre on it")
    node_table(g, info)
    if g.chain:
        chain_actions(g)


def _follow_click(event: Any, current: tuple[str, int]) -> None:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for p in points:
        cd = p.get("customdata")
        if cd and (str(cd[0]), int(cd[1])) != current:
            st.query_params.from_dict(widgets.feature_params(str(cd[0]), int(cd[1])))
            st.rerun()


def layer_view(key: str, focus: str | None) -> None:
    summ = summaries(key)
    class_shares_chart(summ["shares"])
    hist = summ["hist"]
    if not hist.empty:
        st.markdown("#### Score distributions behind the thresholds")
        ids = sorted(set(hist["sae_id"]), key=lambda s: (int(s[1:].split("/")[0]), s))
        pick = st.selectbox("Residual SAE", ids, index=ids.index(focus) if focus in ids else 0)
        score_chart(hist, pick)
    validation_table(summ["validation"])


def main() -> None:
    key = state.require_atlas()
    st.title("Feature flow")
    if not has_flow(key):
        st.info(
            "This atlas has no flow tables yet. Add them with `sae-atlas build --overwrite flow`."
        )
        return
    saes = data.sae_table(key)
    d_sae = {str(s): int(n) for s, n in zip(saes["sae_id"], saes["d_sae"], strict=True)}
    target = widgets.parse_feature_params(st.query_params.to_dict(), d_sae)
    if isinstance(target, str):
        st.error(target)
    current = target if isinstance(target, tuple) else None
    picker(list(d_sae), current)
    if current:
        st.page_link(
            widgets.FEATURE_PAGE,
            label=f"{current[0]} · {current[1]}: feature page",
            query_params=widgets.feature_params(*current),
        )
        flow_view(key, *current)
    else:
        st.caption("Pick a feature to trace its chain across layers.")
    st.divider()
    layer_view(key, current[0] if current else None)


main()
