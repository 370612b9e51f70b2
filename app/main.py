"""SAE Atlas app: `streamlit run app/main.py [-- --atlas PATH]` (or `sae-atlas app`).

To add a page: put a thin script in app/app_pages/ and append one `st.Page` line to PAGES
(its URL is the file name: app_pages/map.py -> /map). Pages call `state.require_atlas()`
for the atlas key and read through the cached queries in `app/data.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `app` imports as a package whatever the working directory
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from app import data, state  # noqa: E402

PAGES: list[st.Page] = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("app_pages/features.py", title="Features", icon=":material/table_rows:"),
    st.Page("app_pages/feature.py", title="Feature", icon=":material/bubble_chart:"),
    st.Page("app_pages/sets.py", title="Sets & export", icon=":material/bookmarks:"),
    st.Page("app_pages/flow.py", title="Flow", icon=":material/account_tree:"),
    st.Page("app_pages/steering.py", title="Steering", icon=":material/tune:"),
    st.Page("app_pages/prompt_search.py", title="Prompt search", icon=":material/manage_search:"),
    st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("app_pages/lobes.py", title="Lobes", icon=":material/hub:"),
]

st.set_page_config(page_title="SAE Atlas", page_icon=":material/hub:", layout="wide")

data.warm_map()  # datashader compiles in the background while the first page loads
problem = state.atlas_problem()
if problem and state.atlas_key() is not None:
    # A file is there but is not a usable atlas (truncated, half-built, another DuckDB file):
    # one page says what is wrong, and no page runs against it (nor writes a workspace beside it).
    st.title("SAE Atlas")
    st.error(problem)
    st.markdown("Rebuild it from scratch, or point the app at another atlas:")
    st.code(
        f"{state.BUILD_COMMAND} --out ATLAS --overwrite corpus\nsae-atlas app --atlas ATLAS",
        language="bash",
    )
    st.stop()
if problem:
    page = st.navigation(
        [st.Page(state.no_atlas_page, title="No atlas", icon=":material/build:", url_path="setup")]
    )
else:
    data.warm_atlas(str(state.atlas_key()))  # the atlas file into the OS page cache, once
    page = st.navigation(PAGES)
page.run()
