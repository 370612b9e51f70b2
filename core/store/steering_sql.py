"""What steering reads from the atlas to load its live model: each SAE's weights and each
feature's max activation (the unit of steering strength)."""

from __future__ import annotations

import pandas as pd

from core.store.db import Cursor, frame


def sae_weights(cur: Cursor) -> list[tuple[str, str]]:
    """(sae_id, weights_path) of every SAE, by layer and site; paths as the build stored them."""
    rows = cur.execute("SELECT sae_id, weights_path FROM saes ORDER BY layer, site").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def max_acts(cur: Cursor) -> pd.DataFrame:
    """sae_id, feature, max_act of every feature."""
    return frame(cur, "SELECT sae_id, feature, max_act FROM features")
