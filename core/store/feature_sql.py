"""One feature's page: its row, its SAE, top and interval examples, activation histogram, logit
effects and decoder neighbours (named functions over a cursor, `?` parameters only)."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from core.store import explain_sql, feature_cards, flow_sql, geometry_sql
from core.store import feature_rows as rows_sql
from core.store.db import Cursor, first, frame
from core.store.queries import (
    atlas_identity,
    feature_row,
    feature_source,
    has_table,
    records,
    sae_feature_info,
)


def feature_page(cur: Cursor, sae_id: str, feature: int) -> dict[str, Any] | None:
    """Everything the feature page shows, or None when the SAE or feature does not exist:
    row, sae, examples, histogram, logits, neighbours, explanations, cooccurring and flow
    ({'class', 'predecessors', 'successors'}, None for an atlas without the flow stage).
    One index probe of its card (core.store.feature_cards), else a query per table."""
    ranks = feature_cards.card_ranks(cur)
    if ranks is None:
        return _page_from_tables(cur, sae_id, feature)
    card = feature_cards.read(cur, ranks, sae_id, feature)
    if card is None:
        return None
    flow = ("flow_class", "predecessors", "successors")
    return {
        **{k: v for k, v in card.items() if k not in flow},
        "sae": sae_info(cur, sae_id),
        "flow": {"class": card["flow_class"], **{k: card[k] for k in flow[1:]}},
    }


def _page_from_tables(cur: Cursor, sae_id: str, feature: int) -> dict[str, Any] | None:
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
        "explanations": explain_sql.feature_explanations(cur, sae_id, feature)
        if has_table(cur, "explanations")
        else pd.DataFrame(),
        "cooccurring": geometry_sql.cooccurring(cur, sae_id, feature),
        "flow": {
            "class": flow_sql.feature_class(cur, sae_id, feature),
            "predecessors": flow_sql.predecessors(cur, sae_id, feature),
            "successors": flow_sql.successors(cur, sae_id, feature),
        }
        if has_table(cur, "flow_edges")
        else None,
    }


_EXAMPLES = """
SELECT kind, rank, bin, doc_id, pos, act, center, tokens, acts, {ids} AS token_ids
FROM examples e WHERE sae_id = ? AND feature = ?
ORDER BY kind = 'interval', bin DESC NULLS FIRST, rank
"""
_WINDOW_IDS = """(SELECT list(t.token_id ORDER BY t.pos) FROM tokens t WHERE t.doc_id = e.doc_id
    AND t.pos BETWEEN e.pos - e.center AND e.pos - e.center + len(e.tokens) - 1)"""


def examples(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """Top then interval examples: kind, rank, bin, doc_id, pos, act, center, tokens, acts, doc
    info, and the window's token ids (their bytes join characters split across tokens)."""
    try:
        ex = frame(cur, _EXAMPLES.format(ids="token_ids"), [sae_id, int(feature)])
    except duckdb.BinderException:  # an atlas from before examples.token_ids: look them up
        ex = frame(cur, _EXAMPLES.format(ids=_WINDOW_IDS), [sae_id, int(feature)])
    rows = cur.execute(  # a handful of documents: one keyed read, not a join per example
        "SELECT doc_id, source, topic, title FROM documents WHERE doc_id = ANY(?)",
        [sorted({int(d) for d in ex["doc_id"]})],
    ).fetchall()
    docs = {int(r[0]): r[1:] for r in rows}
    for i, col in enumerate(("source", "topic", "title")):
        ex[col] = [docs.get(int(d), (None, None, None))[i] for d in ex["doc_id"]]
    return ex


_TOKEN_IDS = f"UPDATE examples e SET token_ids = {_WINDOW_IDS} WHERE e.token_ids IS NULL"


def fill_token_ids(con: Cursor) -> None:
    """Give examples written without their windows' token ids (an atlas from before the
    column) those ids: one join over the missing windows, at commit."""
    if first(con, "SELECT 1 FROM examples WHERE token_ids IS NULL LIMIT 1") is not None:
        con.execute(_TOKEN_IDS)


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
    src = feature_source(cur)
    params = {"sae": sae_id, "f": int(feature)}
    if src.denormalised:
        sql = (
            "SELECT rank, neighbour, cosine, neighbour AS o FROM neighbours "
            "WHERE sae_id = $sae AND feature = $f"
        )
        return rows_sql.with_info(cur, sql, params, src.ranks, ("density", "max_act", "top_tokens"))
    nb = frame(
        cur,
        "SELECT rank, neighbour, cosine FROM neighbours WHERE sae_id = $sae AND feature = $f "
        "ORDER BY rank",
        params,
    )
    ids = [int(n) for n in nb["neighbour"]]
    info = sae_feature_info(cur, sae_id, ids, ("density", "max_act", "top_tokens"))
    return nb.merge(info.rename(columns={"feature": "neighbour"}), on="neighbour", how="left")


_SAE_INFO: dict[tuple[Any, str], dict[str, Any] | None] = {}


def sae_info(cur: Cursor, sae_id: str) -> dict[str, Any] | None:
    """One SAE's row (without its training log), memoised per read-only atlas file."""
    atlas = atlas_identity(cur)
    if atlas is not None and (atlas, sae_id) in _SAE_INFO:
        return _SAE_INFO[(atlas, sae_id)]
    df = frame(cur, "SELECT * EXCLUDE (train_log, cfg) FROM saes WHERE sae_id = ?", [sae_id])
    info = records(df)[0] if len(df) else None
    if atlas is not None:
        _SAE_INFO[(atlas, sae_id)] = info
    return info
