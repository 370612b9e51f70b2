"""Flow page (`?sae=…&feature=…`): where a feature comes from and where it goes (METHODS §6).

The chain of decoder-cosine matches across layers with the MLP / attention features that
feed it, as a graph; per-layer class shares; the score distributions behind the thresholds;
co-firing of matched vs random pairs; add the chain to a set or steer with it.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from app import data, state, widgets
from app.figures.flow import Info, class_shares_figure, graph_figure, roles, score_figure
from app.text import plain
from core.flow.chains import FlowGraph, Node
from core.steering.chain import ALPHA_RANGE, SCHEDULES, Schedule, chain_spec, steering_params

LINKS = {
    "page": st.column_config.LinkColumn("feature page", display_text="open"),
    "flow": st.column_config.LinkColumn("flow", display_text="re-centre"),
    "top_tokens": st.column_config.ListColumn("top tokens", width="medium"),
    "density": st.column_config.NumberColumn("density", format="%.2e"),
    "cosine": st.column_config.NumberColumn("cosine in", format="%.2f"),
}


def flow_url(sae_id: str, feature: int) -> str:
    return "flow?" + urlencode({"sae": sae_id, "feature": int(feature)})


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


def node_table(g: FlowGraph, info: Info) -> None:
    cos = {e.dst: e.cosine for e in g.chain_edges + g.branches} | {
        e.src: e.cosine for e in g.modules
    }
    role = roles(g)
    rows = []
    for n in sorted(g.nodes(), key=lambda n: (n.site.layer, n.sae_id, n.feature)):
        r = info.get((n.sae_id, n.feature), {})
        rows.append(
            {
                "role": role[n],
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
        schedule = cast(
            Schedule, s[0].radio("Strength per layer", SCHEDULES, horizontal=True, key="flow-sched")
        )
        alpha = s[1].number_input(
            "α (s·e^{α·l})",
            min_value=ALPHA_RANGE[0],
            max_value=ALPHA_RANGE[1],
            value=-0.3,
            step=0.1,
            format="%.2f",
            disabled=schedule != "decay",
            key="flow-alpha",
        )
        try:
            spec = pd.DataFrame(chain_spec(keys, 1.0, schedule, alpha))
        except ValueError as err:  # α beyond its range, or too steep for this chain's length
            st.error(plain(err))
            return
        st.caption("Relative strength per layer (× the strength chosen on the Steering page):")
        st.dataframe(spec, hide_index=True, width="stretch")
        _steer_link(steering_params(keys, schedule, alpha))


def _steer_link(params: dict[str, str]) -> None:
    try:
        st.page_link(
            widgets.STEERING_PAGE,
            label="Steer with this chain →",
            icon=":material/tune:",
            query_params=params,
        )
    except StreamlitAPIException:  # an app that does not register the Steering page
        st.markdown(f"[Steer with this chain →](steering?{urlencode(params)})")


def class_shares_chart(shares: pd.DataFrame) -> None:
    st.markdown("#### Where residual features come from, per layer")
    if shares.empty:
        st.caption("No classified features (the first residual SAE has no predecessor).")
        return
    st.plotly_chart(class_shares_figure(shares), width="stretch")


def score_chart(hist: pd.DataFrame, sae_id: str) -> None:
    """Observed vs chance score distributions of one residual SAE, thresholds drawn."""
    sub = hist[hist["sae_id"] == sae_id]
    kinds = [k for k in "RMA" if k in set(sub["kind"])]
    cols = st.columns(max(len(kinds), 1))
    for col, kind in zip(cols, kinds, strict=False):
        h = sub[sub["kind"] == kind]
        col.plotly_chart(score_figure(h, kind, kind == kinds[0]), width="stretch")


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
    cfg = data.flow_config(key)
    c = st.columns(2)
    min_r = c[0].slider("Cut the chain below s(R)", 0.0, 1.0, cfg.t_r, 0.05, key="flow-min-r")
    min_m = c[1].slider(
        "Show module features from cosine", 0.0, 1.0, cfg.chain_min_module, 0.05, key="flow-min-m"
    )
    g = data.flow_chain(key, sae_id, feature, min_r, min_m)
    rows = data.features_for_export(key, tuple(_k(n) for n in g.nodes()))
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
    summ = data.flow_summaries(key)
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
    if not data.has_flow(key):
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
