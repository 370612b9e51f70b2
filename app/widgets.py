"""Small pieces several pages share: feature URLs and links, query-param parsing, "add to set"."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import streamlit as st

from app.text import code, plain
from core.workspace import Workspace, WorkspaceError

FEATURE_PAGE = "app_pages/feature.py"
"""Path of the feature page relative to app/main.py (what st.page_link / switch_page take)."""
FLOW_PAGE = "app_pages/flow.py"
STEERING_PAGE = "app_pages/steering.py"

_INT = re.compile(r"^\d{1,10}$")
_NEW_SET = "(new set)"


def feature_url(sae_id: str, feature: int) -> str:
    """A relative, shareable URL of a feature page (resolves next to the current page)."""
    return "feature?" + urlencode({"sae": sae_id, "feature": int(feature)})


def feature_params(sae_id: str, feature: int) -> dict[str, str]:
    return {"sae": sae_id, "feature": str(int(feature))}


def open_feature(sae_id: str, feature: int) -> None:
    st.switch_page(FEATURE_PAGE, query_params=feature_params(sae_id, feature))


def parse_feature_params(
    params: Mapping[str, str], d_sae: Mapping[str, int]
) -> tuple[str, int] | str | None:
    """(sae_id, feature) from ?sae=…&feature=…, an error message when invalid, None when absent."""
    sae_id, raw = params.get("sae"), params.get("feature")
    if sae_id is None and raw is None:
        return None
    if not sae_id:
        return "The link names no SAE (`?sae=`)."
    if sae_id not in d_sae:
        return f"Unknown SAE {code(sae_id)}. This atlas has: {', '.join(sorted(d_sae))}."
    if raw is None or not _INT.match(raw.strip()):
        return f"{code('?feature=' + (raw or ''))} is not a feature number (a whole number ≥ 0)."
    feature = int(raw.strip())
    if feature >= d_sae[sae_id]:
        return (
            f"Feature {feature} does not exist in `{sae_id}`, which has features "
            f"0–{d_sae[sae_id] - 1}."
        )
    return sae_id, feature


Keys = list[tuple[str, int]]


def add_to_set(
    ws: Workspace, keys: Keys | Callable[[], Keys], key: str, label: str = "Add"
) -> None:
    """Pick an existing set (or name a new one) and add `keys` (computed on submit) to it."""
    flash = st.session_state.pop(f"{key}-flash", None)
    if flash:
        st.success(flash)
    names = [s.name for s in ws.list_sets()]
    with st.form(f"add-to-set-{key}", border=False, clear_on_submit=True):
        cols = st.columns([3, 3, 1], vertical_alignment="bottom")
        choice = cols[0].selectbox("Feature set", [*names, _NEW_SET], key=f"{key}-choice")
        new_name = cols[1].text_input(
            "New set name", key=f"{key}-new", placeholder="…or name a new set"
        )
        submitted = cols[2].form_submit_button(label, type="primary")
    if submitted:
        message = _add(ws, keys() if callable(keys) else keys, choice, new_name)
        if message:
            st.session_state[f"{key}-flash"] = message
            st.rerun()


def _add(ws: Workspace, keys: Keys, choice: str, new_name: str) -> str | None:
    """Adds and returns the confirmation, or shows the error and returns None."""
    try:
        if new_name.strip() or choice == _NEW_SET:  # a typed name always means a new set
            set_id = ws.create_set(new_name, keys)  # the set and its members: one transaction
            name, added = " ".join(new_name.split()), len(ws.members(set_id))
        else:
            found = ws.get_set(choice)
            if found is None:
                raise WorkspaceError(f"the set {choice!r} no longer exists")
            name, added = found.name, ws.add_features(found.set_id, keys)
    except WorkspaceError as err:
        st.error(plain(err))
        return None
    return f"Added {added:,} feature{'s' if added != 1 else ''} to “{plain(name)}”" + (
        f" ({len(keys) - added:,} already there)." if added < len(keys) else "."
    )
