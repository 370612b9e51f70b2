"""One feature's page: its row, its SAE, top and interval examples, activation histogram, logit
effects and decoder neighbours (named functions over a cursor, `?` parameters only)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.store.db import Cursor, first, frame
from core.store.queries import feature_row, records


def feature_page(cur: Cursor, sae_id: str, feature: int) -> dict[str, Any] | None:
    """Everything the feature page shows, or None when the SAE or feature does not exist."""
    row = feature_row(cur, sae_id, feature)
    if row is None:
        return None
    return {
        "row": row,
        "sae": sae_info(cur, sae_id),
        "examples": examples(cur, sae_id, feature),
        "histogram": histogram(cur, sae_id, feature),
        "logits": logits(cur, sae_id, feature),
        "neighbours": neighbours(cur, sae_id, feature),
    }


def examples(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """Top then interval examples: kind, rank, bin, doc_id, pos, act, center, tokens, acts, doc
    info, and the window's token ids (their bytes join characters split across tokens)."""
    return frame(
        cur,
        "SELECT e.kind, e.rank, e.bin, e.doc_id, e.pos, e.act, e.center, e.tokens, e.acts, "
        "d.source, d.topic, d.title, "
        "(SELECT list(t.token_id ORDER BY t.pos) FROM tokens t WHERE t.doc_id = e.doc_id "
        "AND t.pos BETWEEN e.pos - e.center AND e.pos - e.center + len(e.tokens) - 1) "
        "AS token_ids "
        "FROM examples e LEFT JOIN documents d ON d.doc_id = e.doc_id "
        "WHERE e.sae_id = ? AND e.feature = ? "
        "ORDER BY e.kind = 'interval', e.bin DESC NULLS FIRST, e.rank",
        [sae_id, int(feature)],
    )


def histogram(cur: Cursor, sae_id: str, feature: int) -> dict[str, list[float]] | None:
    """{'edges': (n+1,), 'counts': (n,)} or None for a feature that never fires."""
    row = first(
        cur,
        "SELECT edges, counts FROM histograms WHERE sae_id = ? AND feature = ?",
        [sae_id, int(feature)],
    )
    if row is None:
        return None
    return {"edges": [float(v) for v in row[0]], "counts": [float(v) for v in row[1]]}


def logits(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """sign (+1 promoted / -1 suppressed), rank, token_id, token_str, value."""
    return frame(
        cur,
        "SELECT sign, rank, token_id, token_str, value FROM logits "
        "WHERE sae_id = ? AND feature = ? ORDER BY sign DESC, rank",
        [sae_id, int(feature)],
    )


def neighbours(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """Decoder-cosine neighbours in the same SAE, with their density and top tokens."""
    nb = frame(
        cur,
        "SELECT rank, neighbour, cosine FROM neighbours WHERE sae_id = ? AND feature = ? ORDER BY rank",
        [sae_id, int(feature)],
    )
    if nb.empty:
        return nb.assign(density=[], max_act=[], top_tokens=[])
    ids = [int(n) for n in nb["neighbour"]]
    info = frame(
        cur,
        "SELECT feature AS neighbour, density, max_act, top_tokens FROM features "
        "WHERE sae_id = ? AND feature BETWEEN ? AND ? AND list_contains(?, feature)",
        [sae_id, min(ids), max(ids), ids],
    )
    return nb.merge(info, on="neighbour", how="left")


def sae_info(cur: Cursor, sae_id: str) -> dict[str, Any] | None:
    df = frame(cur, "SELECT * EXCLUDE (train_log, cfg) FROM saes WHERE sae_id = ?", [sae_id])
    return records(df)[0] if len(df) else None
