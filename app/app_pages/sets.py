"""Sets & export: named feature sets (kept in the workspace DB) — create, rename, delete,
review and prune members, download a set as CSV. `?set=NAME` opens a set directly."""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
import streamlit as st

from app import data, state, widgets
from app.text import code, plain
from core.workspace import FeatureSet, Workspace, WorkspaceError

MEMBER_COLUMNS = {
    "open": st.column_config.LinkColumn("", display_text="open", width="small"),
    "sae_id": st.column_config.TextColumn("SAE"),
    "top_tokens": st.column_config.ListColumn("top tokens", width="large"),
    "density": st.column_config.NumberColumn("density", format="%.2e"),
    "max_act": st.column_config.NumberColumn("max act", format="%.3f"),
}


CHOICE, NEXT = "sets-choice", "sets-next"  # the selectbox's key; a choice to apply on the next run


def file_name(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "feature-set"
    return f"{slug}.csv"


def create_form(ws: Workspace) -> None:
    with st.form("create-set", clear_on_submit=True, border=False):
        c = st.columns([4, 1], vertical_alignment="bottom")
        name = c[0].text_input("New set", placeholder="name, e.g. French tokens")
        if c[1].form_submit_button("Create", type="primary"):
            try:
                ws.create_set(name)
            except WorkspaceError as err:
                st.error(plain(err))
            else:
                st.session_state[NEXT] = " ".join(name.split())
                st.rerun()


def choose(sets: list[FeatureSet]) -> FeatureSet:
    """The set being shown: just created / renamed, else ?set=NAME, else the last choice."""
    names = [s.name for s in sets]
    wanted = st.session_state.pop(NEXT, None)
    if wanted is None and CHOICE not in st.session_state:
        wanted = st.query_params.get("set")
        if wanted is not None and wanted not in names:
            st.error(f"No feature set is named “{plain(wanted)}”; showing “{plain(names[0])}”.")
    if wanted in names:
        st.session_state[CHOICE] = wanted
    if st.session_state.get(CHOICE) not in names:
        st.session_state[CHOICE] = names[0]
    sizes = {s.name: s.size for s in sets}
    name = st.selectbox(
        "Feature set", names, key=CHOICE, format_func=lambda n: f"{n}  ({sizes[n]} features)"
    )
    st.query_params["set"] = name  # a shareable URL for this set
    return next(s for s in sets if s.name == name)


def manage(ws: Workspace, chosen: FeatureSet) -> None:
    with st.expander("Rename or delete this set"):
        with st.form("rename-set", border=False):
            c = st.columns([4, 1], vertical_alignment="bottom")
            new = c[0].text_input("New name", value=chosen.name)
            if c[1].form_submit_button("Rename"):
                _try(lambda: ws.rename_set(chosen.set_id, new), " ".join(new.split()))
        sure = st.checkbox(f"Yes, delete “{plain(chosen.name)}” and its {chosen.size} features")
        if st.button("Delete set", disabled=not sure, icon=":material/delete:"):
            _try(lambda: ws.delete_set(chosen.set_id), "")


def _try(action: Callable[[], None], select: str) -> None:
    """Run a workspace change; show the set named `select` next ("" = the first set)."""
    try:
        action()
    except WorkspaceError as err:
        st.error(plain(err))
        return
    st.session_state[NEXT] = select
    st.rerun()


def members(key: str, ws: Workspace, chosen: FeatureSet) -> None:
    keys = tuple(ws.members(chosen.set_id))
    if not keys:
        st.info("This set is empty. Add features from a feature page or from the Features table.")
        return
    rows: pd.DataFrame = data.features_for_export(key, keys)
    rows = rows.assign(
        open=[
            widgets.feature_url(s, f) for s, f in zip(rows["sae_id"], rows["feature"], strict=True)
        ]
    )
    order = ["open", "sae_id", "feature"] + [
        c for c in ("explanation", "top_tokens", "density", "max_act") if c in rows.columns
    ]
    event = st.dataframe(
        rows,
        hide_index=True,
        column_order=order,
        column_config=MEMBER_COLUMNS,
        on_select="rerun",
        selection_mode="multi-row",
        key=f"members-{chosen.set_id}-{len(keys)}",
    )
    picked = event.selection.rows if event is not None else []
    c = st.columns([1, 1, 3])
    c[0].download_button(
        "Download CSV",
        data.features_csv(key, keys),
        file_name=file_name(chosen.name),
        mime="text/csv",
        on_click="ignore",
        type="primary",
        icon=":material/download:",
    )
    if c[1].button(f"Remove {len(picked)} selected", disabled=not picked):
        ws.remove_features(
            chosen.set_id,
            [(str(rows.iloc[i]["sae_id"]), int(rows.iloc[i]["feature"])) for i in picked],
        )
        st.rerun()
    if len(rows) < len(keys):
        st.caption(
            f"{len(keys) - len(rows)} members are not in this atlas (another atlas's features)."
        )


def main() -> None:
    key = state.require_atlas()
    ws = state.workspace()
    st.title("Sets & export")
    st.caption(f"Workspace: {code(ws.path, limit=300)}")
    create_form(ws)
    sets = ws.list_sets()
    if not sets:
        st.info(
            "No feature sets yet: create one here, or use “Add to a feature set” on a feature page."
        )
        return
    chosen = choose(sets)
    manage(ws, chosen)
    members(key, ws, chosen)


main()
