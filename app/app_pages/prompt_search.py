"""Prompt search: paste any text, see which features fire on each token and over the whole text.

Per SAE: a token grid coloured by the strongest feature's activation (relative to that
feature's max in the atlas; hover a token for its top features, click it to list them with
links), then the features that fire most over the text, to open, steer or add to a set.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state, widgets
from app.live import busy_note, d_sae, describe, live_model
from app.text import code, plain
from core.render import feature_label, plot_text, visible_token
from core.steering.interventions import SteeringError
from core.steering.prompt_search import PromptSearch

RESULT = "ps-result"
PER_ROW = 24  # tokens per row of the grid
LINKS = {
    "open": st.column_config.LinkColumn("", display_text="open", width="small"),
    "steer": st.column_config.LinkColumn("", display_text="steer", width="small"),
    "top_tokens": st.column_config.ListColumn("top tokens"),
    "rel": st.column_config.NumberColumn("act / max", format="%.2f"),
    "score": st.column_config.NumberColumn("Σ act / max", format="%.2f"),
}


def token_grid(toks: pd.DataFrame, tokens: list[str], sae_id: str) -> int | None:
    """The text as a grid of squares; returns the clicked token's position."""
    firsts = toks[toks["rank"] == 0].set_index("pos")["rel"].fillna(0.0)
    pos = list(range(len(tokens)))
    rel = [float(firsts.get(p, 0.0)) for p in pos]
    hover = [_hover(toks[toks["pos"] == p], tokens[p]) for p in pos]
    fig = go.Figure(
        go.Scatter(
            x=[p % PER_ROW for p in pos],
            y=[-(p // PER_ROW) for p in pos],
            mode="markers+text",
            text=[plot_text(visible_token(t)[:8]) for t in tokens],
            hovertext=hover,
            hoverinfo="text",
            customdata=pos,
            textfont={"size": 11, "color": "#111827"},
            marker={
                "symbol": "square",
                "size": 38,
                "color": rel,
                "cmin": 0,
                "cmax": 1,
                "colorscale": [[0, "#f8fafc"], [1, "#ea580c"]],
                "showscale": False,
            },
        )  # fmt: skip
    )
    fig.update_layout(
        height=60 + 46 * (1 + len(tokens) // PER_ROW),
        margin={"l": 5, "r": 5, "t": 5, "b": 5},
        xaxis={"visible": False, "range": [-0.6, PER_ROW - 0.4]},
        yaxis={"visible": False},
        dragmode=False,
    )
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=f"grid-{sae_id}")
    points = event.selection.points if event else []
    return int(points[0]["customdata"]) if points else None


def _hover(rows: pd.DataFrame, token: str) -> str:
    """The token in bold, then one line per feature firing on it (all text escaped)."""
    head = f"<b>{plot_text(visible_token(token))}</b>"
    if rows.empty:
        return head + "<br>no feature fires"
    lines = [
        feature_label(None, int(r.feature), note=f"  {r.act:.2f}  ({r.rel:.0%} of max)")
        for r in rows.itertuples()
    ]
    return head + "<br>" + "<br>".join(lines)


def with_links(key: str, df: pd.DataFrame) -> pd.DataFrame:
    """Atlas columns (top tokens, explanation) and open / steer links for feature rows."""
    info = describe(key, list(zip(df["sae_id"], df["feature"].astype(int), strict=True)))
    keep = [c for c in ("explanation", "top_tokens") if c in info.columns]
    out = df.reset_index(drop=True).join(info[keep])
    pairs = zip(out["sae_id"], out["feature"], strict=True)
    out["open"] = [widgets.feature_url(s, int(f)) for s, f in pairs]
    out["steer"] = [
        "steering?" + urlencode({"sae": s, "feature": int(f)})
        for s, f in zip(out["sae_id"], out["feature"], strict=True)
    ]
    return out


def sae_view(key: str, res: PromptSearch, sae_id: str) -> None:
    toks = res.per_token[res.per_token["sae_id"] == sae_id]
    st.caption("Hover a token for its top features; click it to list them below.")
    clicked = token_grid(toks, res.tokens, sae_id)
    if clicked is not None:
        st.markdown(f"**Token {clicked}: {code(visible_token(res.tokens[clicked]))}**")
        rows = with_links(key, toks[toks["pos"] == clicked])
        cols = ["open", "steer", "feature", "act", "rel", "explanation", "top_tokens"]
        st.dataframe(rows, hide_index=True, column_config=LINKS,
                     column_order=[c for c in cols if c in rows.columns])  # fmt: skip
    top_features(key, res, sae_id)


def top_features(key: str, res: PromptSearch, sae_id: str) -> None:
    st.markdown("#### Features firing most over the text")
    summ = res.summary[res.summary["sae_id"] == sae_id].head(50)
    if summ.empty:
        st.caption("No feature of this SAE fires on the text.")
        return
    rows = with_links(key, summ)
    cols = ["open", "steer", "feature", "score", "n_tokens", "max_act_text", "explanation",
            "top_tokens"]  # fmt: skip
    event = st.dataframe(rows, hide_index=True, column_config=LINKS, on_select="rerun",
                         selection_mode="multi-row", key=f"ps-top-{sae_id}",
                         column_order=[c for c in cols if c in rows.columns])  # fmt: skip
    picked = event.selection.rows if event else []
    keys = [(sae_id, int(rows.iloc[i]["feature"])) for i in picked] or [
        (sae_id, int(f)) for f in rows["feature"].head(10)
    ]
    st.caption(f"Add {'the selected' if picked else 'the top 10'} features to a set:")
    widgets.add_to_set(state.workspace(), keys, key=f"ps-add-{sae_id}")


def main() -> None:
    key = state.require_atlas()
    st.title("Prompt search")
    sizes = d_sae(key)
    live = live_model(key)
    with st.form("ps-form", border=False):
        text = st.text_area("Text", placeholder="Paste any text…", height=120)
        c = st.columns([4, 1, 1], vertical_alignment="bottom")
        saes = c[0].multiselect("SAEs", list(sizes), default=list(sizes)[:4])
        k = c[1].number_input("Top features per token", 1, 20, 5)
        go_ = c[2].form_submit_button("Search", type="primary", icon=":material/search:")
    busy_note(live)
    if go_:
        try:
            with st.spinner("Running the model (waiting for a turn if it is busy)…"):
                st.session_state[RESULT] = live.search(text, saes, int(k))
        except SteeringError as err:
            st.error(plain(err))
    res: PromptSearch | None = st.session_state.get(RESULT)
    if res is None:
        return
    shown = [s for s in sizes if s in set(res.per_token["sae_id"]) | set(res.summary["sae_id"])]
    st.caption(f"{len(res.tokens)} tokens.")
    for tab, sae_id in zip(st.tabs(shown or ["(none)"]), shown, strict=False):
        with tab:
            sae_view(key, res, sae_id)


main()
