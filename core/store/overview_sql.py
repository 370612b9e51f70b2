"""What the atlas holds as a whole, for the Overview page: the model, the run that built it, its
stages, its SAEs with their quality metrics, and the corpus broken down by source / topic /
language."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.store.db import Cursor, first, frame, ident
from core.store.queries import records
from core.store.runs import latest_run


def sae_table(cur: Cursor) -> pd.DataFrame:
    """Each SAE with its site, size and quality metrics, and how many features ever fire."""
    return frame(
        cur,
        "SELECT s.sae_id, s.layer, s.site, s.architecture, s.d_in, s.d_sae, s.k, s.source, "
        "s.fvu, s.l0, s.dead_frac, s.ce_base, s.ce_spliced, s.ce_increase, s.frac_loss_recovered, "
        "s.n_tokens_eval, (SELECT count(*) FROM features f WHERE f.sae_id = s.sae_id "
        "AND f.n_fire > 0) AS alive "
        "FROM saes s ORDER BY s.layer, s.site",
    )


def model_info(cur: Cursor) -> dict[str, Any] | None:
    df = frame(cur, "SELECT * FROM model_info LIMIT 1")
    return records(df)[0] if len(df) else None


def run_info(cur: Cursor) -> dict[str, Any] | None:
    """The latest run: id, created, and its config / versions / timings parsed from JSON."""
    run = latest_run(cur)
    if run is None:
        return None
    return {
        "run_id": run.run_id,
        "created": run.created,
        "config": run.config,
        "versions": run.versions,
        "timings": run.timings,
    }


def stages(cur: Cursor) -> pd.DataFrame:
    return frame(cur, "SELECT stage, finished, seconds FROM stages ORDER BY finished")


def corpus_breakdown(cur: Cursor, by: str) -> pd.DataFrame:
    """Documents and tokens per `source`, `topic` or `language` (most tokens first)."""
    if by not in ("source", "topic", "language"):
        raise ValueError(f"cannot group the corpus by {by!r}")
    col = ident(by)
    return frame(
        cur,
        f"SELECT coalesce({col}, '(none)') AS {col}, count(*) AS documents, "
        f"sum(n_tokens)::BIGINT AS tokens FROM documents GROUP BY ALL ORDER BY tokens DESC, {col}",
    )


def overview(cur: Cursor) -> dict[str, Any]:
    """Model, corpus totals and breakdowns, SAEs, run config and stage timings."""
    row = first(cur, "SELECT count(*), coalesce(sum(n_tokens), 0) FROM documents")
    n_docs, n_tokens = (int(row[0]), int(row[1])) if row else (0, 0)
    row = first(cur, "SELECT count(*), count(*) FILTER (WHERE n_fire > 0) FROM features")
    n_feat, n_alive = (int(row[0]), int(row[1])) if row else (0, 0)
    return {
        "model": model_info(cur),
        "run": run_info(cur),
        "stages": stages(cur),
        "saes": sae_table(cur),
        "n_documents": n_docs,
        "n_tokens": n_tokens,
        "n_features": n_feat,
        "n_alive": n_alive,
        "sources": corpus_breakdown(cur, "source"),
        "topics": corpus_breakdown(cur, "topic"),
        "languages": corpus_breakdown(cur, "language"),
    }
