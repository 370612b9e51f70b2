"""Overview: the model, the corpus, each SAE with its quality metrics, and how the atlas was built."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from app import data, state

SAE_COLUMNS = {
    "sae_id": st.column_config.TextColumn("SAE"),
    "site": st.column_config.TextColumn("site"),
    "d_sae": st.column_config.NumberColumn("features", format="%d"),
    "alive": st.column_config.NumberColumn("alive", format="%d"),
    "fvu": st.column_config.NumberColumn(
        "FVU", format="%.3f", help="fraction of variance unexplained"
    ),
    "l0": st.column_config.NumberColumn("L0", format="%.1f", help="active features per token"),
    "dead_frac": st.column_config.NumberColumn(
        "dead", format="percent", help="share of features that never fire"
    ),
    "ce_increase": st.column_config.NumberColumn(
        "CE increase",
        format="%.3f",
        help="next-token loss with the SAE spliced in, minus the model's own",
    ),
    "frac_loss_recovered": st.column_config.NumberColumn("loss recovered", format="percent"),
}


def model_section(ov: dict[str, Any]) -> None:
    model = ov["model"] or {}
    vocab = model.get("vocab_size")
    st.markdown(
        f"**Model** `{model.get('name', '—')}` · {model.get('n_layers', '?')} layers × "
        f"d_model {model.get('d_model', '?')} · vocabulary {f'{vocab:,}' if isinstance(vocab, int) else '?'} · "
        f"from {model.get('source', '?')} · built on {model.get('device', '?')}"
    )
    cols = st.columns(5)
    cols[0].metric("Corpus tokens", f"{ov['n_tokens']:,}")
    cols[1].metric("Documents", f"{ov['n_documents']:,}")
    cols[2].metric("SAEs", len(ov["saes"]))
    cols[3].metric("Features", f"{ov['n_features']:,}")
    cols[4].metric("Alive", f"{ov['n_alive']:,}", help="features that fire at least once")


def sae_section(saes: pd.DataFrame) -> None:
    st.subheader("Sparse autoencoders")
    # dead_frac and frac_loss_recovered are stored as fractions; format="percent" scales them
    st.dataframe(
        saes,
        hide_index=True,
        column_config=SAE_COLUMNS,
        column_order=[
            "sae_id",
            "site",
            "architecture",
            "d_in",
            "d_sae",
            "k",
            "alive",
            "fvu",
            "l0",
            "dead_frac",
            "ce_increase",
            "frac_loss_recovered",
            "source",
        ],
    )


def corpus_section(ov: dict[str, Any]) -> None:
    st.subheader("Corpus")
    left, right = st.columns(2)
    left.dataframe(ov["sources"], hide_index=True)
    left.dataframe(ov["languages"], hide_index=True)
    topics = ov["topics"]
    fig = px.bar(
        topics,
        x="tokens",
        y="topic",
        orientation="h",
        hover_data=["documents"],
        title="Tokens per topic",
    )
    fig.update_layout(
        height=max(240, 28 * len(topics) + 80),
        yaxis={"autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    right.plotly_chart(fig, width="stretch")


def build_section(ov: dict[str, Any]) -> None:
    st.subheader("Build")
    run = ov["run"] or {}
    st.caption(f"Run `{run.get('run_id', '?')}` · {run.get('created', '')}")
    stages: pd.DataFrame = ov["stages"]
    if len(stages):
        fig = px.bar(stages, x="seconds", y="stage", orientation="h", title="Seconds per stage")
        fig.update_layout(
            height=max(220, 26 * len(stages) + 80),
            yaxis={"autorange": "reversed"},
            margin={"l": 10, "r": 10, "t": 40, "b": 10},
        )
        st.plotly_chart(fig, width="stretch")
    with st.expander("Build config"):
        st.json(run.get("config") or {})
    with st.expander("Software versions"):
        st.json(run.get("versions") or {})


key = state.require_atlas()
st.title("Overview")
st.caption(f"Atlas: `{state.atlas_path()}`")
ov = data.overview(key)
model_section(ov)
sae_section(ov["saes"])
corpus_section(ov)
build_section(ov)
