"""The shared live model (Steering and Prompt search pages): loaded once per server and atlas.

`LiveModel` serialises every forward pass through a FIFO turnstile, so sessions never see
each other's steering hooks; the pages show the queue while they wait.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import data
from core.steering.live import LiveModel


@st.cache_resource(show_spinner="Loading the model and its SAEs…", max_entries=1)
def _live(key: str) -> LiveModel:
    return LiveModel.from_atlas(Path(key.rsplit("|", 1)[0]))


def live_model(key: str) -> LiveModel:
    """The atlas's model with lazy SAE loaders (one per server; a rebuilt atlas replaces it)."""
    return _live(key)


def d_sae(key: str) -> dict[str, int]:
    """sae_id → number of features, in layer order."""
    table = data.sae_table(key)
    return {str(s): int(n) for s, n in zip(table["sae_id"], table["d_sae"], strict=True)}


def describe(key: str, keys: list[tuple[str, int]]) -> pd.DataFrame:
    """Atlas rows (top tokens, explanation, max_act …) of the given features, in their order."""
    if not keys:
        return pd.DataFrame(columns=["sae_id", "feature"])
    rows = data.features_for_export(key, tuple(keys))
    order = pd.DataFrame(keys, columns=["sae_id", "feature"]).astype({"feature": "int64"})
    return order.merge(rows.astype({"feature": "int64"}), on=["sae_id", "feature"], how="left")


def label(row: pd.Series) -> str:
    """'L4/resid_post #24 · explanation' or '… · top tokens'."""
    text = row.get("explanation")
    if not isinstance(text, str) or not text:
        tops = row.get("top_tokens")
        text = " ".join(repr(str(t)) for t in list(tops)[:4]) if hasattr(tops, "__len__") else ""
    return f"{row['sae_id']} #{int(row['feature'])}" + (f" · {text}" if text else "")


def busy_note(live: LiveModel) -> None:
    if live.busy:
        n = live.turns.queued
        st.caption(
            f":material/hourglass_top: The model is busy ({n} session{'s' if n != 1 else ''} "
            "generating or queued); your request will wait its turn."
        )
