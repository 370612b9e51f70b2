"""Resources shared by every session: the read-only atlas and the writable workspace, opened once.

The atlas is named by `--atlas PATH` after `streamlit run app/main.py --`, else by
SAE_ATLAS_PATH (what `sae-atlas app` sets), else the default build location. Pages pass the
*atlas key* (path and modification time) to the cached queries in `app/data.py`, so a
rebuilt atlas is reopened and never answered from stale caches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import streamlit as st

from app.text import code
from core.paths import default_atlas_path
from core.store.atlas import Atlas, AtlasError
from core.store.db import Cursor
from core.workspace import Workspace, default_workspace_path

BUILD_COMMAND = "sae-atlas build"


def atlas_path() -> Path:
    """The atlas this server shows: `--atlas` script argument, else SAE_ATLAS_PATH / default."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--atlas", type=Path, default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.atlas or default_atlas_path()).expanduser().resolve()


def atlas_key() -> str | None:
    """'path|mtime' of the atlas, or None when there is no atlas file yet."""
    path = atlas_path()
    if not path.is_file():
        return None
    return f"{path}|{path.stat().st_mtime_ns}"


def atlas_file(key: str) -> Path:
    """The atlas file an atlas key names."""
    return Path(key.rsplit("|", 1)[0])


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_atlas(key: str) -> Atlas:
    return Atlas(atlas_file(key))


@contextmanager
def cursor(key: str) -> Iterator[Cursor]:
    """A fresh cursor on the shared read-only atlas (a DuckDB cursor is not thread-safe)."""
    cur = _open_atlas(key).cursor()
    try:
        yield cur
    finally:
        cur.close()


def atlas_problem() -> str | None:
    """Why the atlas cannot be shown (missing, unreadable), or None when it opens."""
    key = atlas_key()
    if key is None:
        return f"No atlas found at {code(atlas_path(), limit=300)}."
    try:
        _open_atlas(key)
    except (AtlasError, duckdb.Error) as err:
        return f"The atlas at {code(atlas_path(), limit=300)} cannot be opened: {err}"
    return None


def require_atlas() -> str:
    """The atlas key; a page without a usable atlas shows how to build one and stops."""
    key = atlas_key()
    if key is None or atlas_problem():
        no_atlas_page()
        st.stop()
    assert key is not None
    return key


def no_atlas_page() -> None:
    st.title("SAE Atlas")
    st.warning(atlas_problem() or "No atlas.")
    st.markdown("Build one (offline, the default model and corpus) with:")
    st.code(BUILD_COMMAND, language="bash")
    st.markdown("then start the app with `sae-atlas app`, or point it at another atlas:")
    st.code(
        "sae-atlas app --atlas path/to/atlas.duckdb\n"
        "streamlit run app/main.py -- --atlas path/to/atlas.duckdb",
        language="bash",
    )


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_workspace(path: str) -> Workspace:
    return Workspace(Path(path))


def workspace() -> Workspace:
    """The writable workspace (feature sets): SAE_ATLAS_WORKSPACE or beside the atlas."""
    return _open_workspace(str(default_workspace_path(atlas_path()).resolve()))
