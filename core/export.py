"""CSV export of feature sets and filtered tables: one row per feature, safe to open in a spreadsheet.

Columns: the ids and site, the explanation when the atlas has one, density and activations,
the top tokens (a JSON list, so tokens with commas or spaces survive), then whatever columns
later stages added (scores, lobe, umap_x/umap_y, flow_class, ...). Text cells that a
spreadsheet would run as a formula (leading = + - @, tab, CR) get a leading single quote, and so
does every line inside a cell (after CR, LF or CRLF) that starts with one of them. Rows end in
CRLF (RFC 4180), so the writer quotes every cell holding CR, LF, a comma or a quote: a bare CR
inside a cell never starts a new row.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from core.store import queries
from core.store.db import Cursor

LEADING_COLUMNS: tuple[str, ...] = (
    "sae_id",
    "feature",
    "layer",
    "site",
    "explanation",
    "density",
    "n_fire",
    "max_act",
    "mean_act",
    "top_tokens",
)
"""Always first, in this order, where present; every other column follows as it came."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# a line start inside a cell (after CR, LF or CRLF) followed by a formula character
_INNER_FORMULA = re.compile(r"(\r\n|\r|\n)(?=[=+\-@\t])")


def neutralise(value: Any) -> Any:
    """Prefix with a single quote a text cell, and each line in it, that a spreadsheet (or a
    reader that splits lines) would evaluate as a formula."""
    if not isinstance(value, str):
        return value
    value = _INNER_FORMULA.sub(lambda m: m.group(1) + "'", value)
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _cell(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value], ensure_ascii=False)
    return value


def export_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Order the columns, flatten list cells to JSON and neutralise formula-like text."""
    first = [c for c in LEADING_COLUMNS if c in rows.columns]
    rest = [c for c in rows.columns if c not in first]
    out = rows[first + rest].copy()
    for col in out.columns:
        if not (is_numeric_dtype(out[col]) or is_bool_dtype(out[col])):  # text, lists, objects
            out[col] = out[col].map(lambda v: neutralise(_cell(v)))
    return out


def to_csv_bytes(rows: pd.DataFrame) -> bytes:
    """UTF-8 CSV bytes (for st.download_button) of feature rows from `queries`."""
    text = export_frame(rows).to_csv(index=False, lineterminator="\r\n")
    return text.encode("utf-8")


def features_csv(cur: Cursor, keys: list[tuple[str, int]]) -> bytes:
    """A feature set as CSV: one row per (sae_id, feature) key, in the set's order."""
    return to_csv_bytes(queries.features_for_export(cur, keys))


def filtered_csv(
    cur: Cursor, flt: queries.FeatureFilter, sort: str, desc: bool, limit: int = 100_000
) -> bytes:
    """The filtered Features table as CSV (at most `limit` rows, in table order)."""
    rows = queries.search_features(cur, flt, sort=sort, desc=desc, limit=limit, offset=0)
    return to_csv_bytes(rows)
