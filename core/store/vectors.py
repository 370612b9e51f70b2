"""The vector index of explanation embeddings, beside the atlas, for semantic search.

Library: usearch (Unum; maintained, wheels for every platform, no compiler needed). Chosen over
faiss-cpu and hnswlib because an index file is *viewed* through a memory map (`view=True`):
the app opens it read-only, shares its pages between processes, and pays nothing to load it;
hnswlib must read the whole graph into memory and has had no release since 2023, and
faiss-cpu's HNSW needs a full load too and is a much larger dependency.

Layout: `<atlas>.vectors/manifest.json` and one HNSW graph per SAE, `<sae>.usearch`, keyed by
feature index, holding the embedding of the explanation the atlas shows for that feature (the
same pick as the Features table). One index per SAE keeps a search restricted to some SAEs exact
in what it may return, and the global top k is the merge of the per-SAE top k.
The manifest's `stamp` (a digest of every SAE's keys and vectors) equals the one stored in the
atlas (`vector_index` table); an index whose stamp differs (one of other vectors, e.g. left by a
crash between the two renames) is not used and search falls back to the exact scan.

Costs (F features with an embedding, d = 384): building O(F log F · d) (HNSW inserts, all cores;
~20–30 s per 65k on 2 cores; an SAE whose vectors did not change since the last commit keeps
its index file, so re-committing after `sae-atlas explain` of one SAE rebuilds only that one),
O(F · (d · 2 B + M · 8 B)) on disk (f16 vectors, M = 16 links);
a query O(S · ef · log(F/S) · d) over S SAE indexes, about a millisecond per 65k-feature SAE.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.store.db import Cursor, first, frame
from core.store.queries import features_for_export

EMBED_DIM = 384
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
"""HNSW search breadth: recall@50 against the exact scan is measured in app.benchmark."""
EXACT_BELOW = 16_384
"""An SAE index with fewer vectors is searched exhaustively (≤ ~1 ms): HNSW can leave an
outlying node unreachable, and at this size exactness costs nothing."""

_PICK = "explanation IS NULL, created DESC NULLS LAST, explainer, model, prompt_version"


def vectors_dir(atlas: Path) -> Path:
    return atlas.with_name(atlas.name + ".vectors")


def _staging_dir(atlas: Path) -> Path:
    return atlas.with_name(atlas.name + ".vectors.tmp")


def _file_name(sae_id: str) -> str:
    return sae_id.replace("/", "_") + ".usearch"


# ---- writing (at commit) -----------------------------------------------------------------------
def shown_embeddings(con: Cursor, sae_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(features (n,), embeddings (n, 384) float32) of the explanation shown for each feature
    of one SAE, where it has an embedding. O(F_sae) memory: one SAE at a time."""
    df = frame(
        con,
        f"SELECT feature, embedding FROM (SELECT feature, embedding FROM explanations "
        f"WHERE sae_id = ? QUALIFY row_number() OVER (PARTITION BY feature ORDER BY {_PICK}) = 1) "
        "WHERE embedding IS NOT NULL ORDER BY feature",
        [sae_id],
    )
    if df.empty:
        return np.zeros(0, np.uint64), np.zeros((0, EMBED_DIM), np.float32)
    vecs = np.stack(df["embedding"].to_numpy()).astype(np.float32)
    return df["feature"].to_numpy(np.uint64), vecs


def _embedded_saes(con: Cursor) -> list[str]:
    exists = first(
        con,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'main' "
        "AND table_name = 'explanations' AND column_name = 'embedding'",
    )
    if not exists or not exists[0]:
        return []
    rows = con.execute(
        "SELECT DISTINCT sae_id FROM explanations WHERE embedding IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _record(con: Cursor, stamp: str | None, detail: dict[str, Any]) -> None:
    con.execute("CREATE OR REPLACE TABLE vector_index (stamp VARCHAR, detail JSON)")
    if stamp is not None:
        con.execute("INSERT INTO vector_index VALUES (?, ?)", [stamp, json.dumps(detail)])


def prepare(con: Cursor, atlas: Path) -> dict[str, Any]:
    """Build one index per SAE with embeddings into `<atlas>.vectors.tmp/` and record its stamp
    in the atlas. Nothing is written (and the stamp is empty) when no SAE has embeddings."""
    from usearch.index import Index

    staging = _staging_dir(atlas)
    shutil.rmtree(staging, ignore_errors=True)
    saes = _embedded_saes(con)
    if not saes:
        _record(con, None, {})
        return {"vectors": 0}
    staging.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    published = _published(atlas)
    for sae_id in saes:
        keys, vecs = shown_embeddings(con, sae_id)
        digest = hashlib.sha1(keys.tobytes() + vecs.tobytes()).hexdigest()
        files[sae_id] = {"file": _file_name(sae_id), "n": int(len(keys)), "sha1": digest}
        target = staging / _file_name(sae_id)
        old = published.get(sae_id, {})
        if old.get("sha1") == digest and (vectors_dir(atlas) / old["file"]).is_file():
            shutil.copyfile(vectors_dir(atlas) / old["file"], target)  # unchanged: no rebuild
            continue
        index = Index(
            ndim=EMBED_DIM, metric="cos", dtype="f16", connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH,
        )  # fmt: skip
        if len(keys):
            index.add(keys, vecs)
        index.save(str(target))
    detail = {"library": "usearch", "metric": "cos", "dtype": "f16", "saes": files,
              "connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD}  # fmt: skip
    # the stamp is the content's digest: the same vectors give the same stamp (two builds of
    # one config give identical atlases), and an index of other vectors never matches
    stamp = hashlib.sha1(json.dumps(detail, sort_keys=True).encode()).hexdigest()
    (staging / "manifest.json").write_text(json.dumps({"stamp": stamp, **detail}, indent=1))
    _record(con, stamp, detail)
    return {"vectors": sum(f["n"] for f in files.values())}


def _published(atlas: Path) -> dict[str, dict[str, Any]]:
    """The per-SAE entries of the index now beside the atlas ({} when there is none)."""
    try:
        saes = json.loads((vectors_dir(atlas) / "manifest.json").read_text()).get("saes", {})
    except (OSError, ValueError):
        return {}
    return saes if isinstance(saes, dict) else {}


def publish(atlas: Path) -> None:
    """Replace `<atlas>.vectors` by the staged index (after the atlas itself was renamed)."""
    staging, final = _staging_dir(atlas), vectors_dir(atlas)
    shutil.rmtree(final, ignore_errors=True)
    if staging.is_dir():
        staging.rename(final)


# ---- reading (the app) -------------------------------------------------------------------------
def stored_stamp(cur: Cursor) -> str | None:
    """The stamp of the index the atlas was committed with (None: none, or an older atlas)."""
    has = first(cur, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'vector_index'")
    if not has or not has[0]:
        return None
    row = first(cur, "SELECT stamp FROM vector_index LIMIT 1")
    return str(row[0]) if row and row[0] else None


@dataclass
class VectorIndex:
    """The per-SAE indexes of one atlas, memory-mapped read-only."""

    indexes: dict[str, Any]

    @classmethod
    def open(cls, atlas: Path, stamp: str | None) -> VectorIndex | None:
        """The index beside `atlas` when it matches `stamp`; None when missing or stale."""
        from usearch.index import Index

        folder = vectors_dir(atlas)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if stamp is None or manifest.get("stamp") != stamp:
            return None
        indexes = {}
        for sae_id, entry in manifest.get("saes", {}).items():
            path = str(folder / entry["file"])
            index = Index.restore(path, view=True, expansion_search=EXPANSION_SEARCH)
            if index is None:
                return None
            indexes[sae_id] = index
        return cls(indexes)

    def search(
        self, query: np.ndarray, k: int, sae_ids: Sequence[str] | None = None
    ) -> list[tuple[str, int, float]]:
        """The k nearest (sae_id, feature, cosine similarity), best first, over `sae_ids` (all
        when None or empty): each SAE's top k, merged."""
        vec = np.asarray(query, dtype=np.float32).reshape(-1)
        if vec.shape[0] != EMBED_DIM:
            raise ValueError(f"query embedding must have {EMBED_DIM} values, got {vec.shape[0]}")
        hits: list[tuple[str, int, float]] = []
        for sae_id in sae_ids or list(self.indexes):
            index = self.indexes.get(sae_id)
            if index is None or len(index) == 0:
                continue
            exact = len(index) < EXACT_BELOW
            found = index.search(vec, min(k, len(index)), threads=1, exact=exact)
            hits += [
                (sae_id, int(f), 1.0 - float(d))
                for f, d in zip(found.keys, found.distances, strict=True)
            ]
        hits.sort(key=lambda h: (-h[2], h[0], h[1]))
        return hits[:k]


RESULT_COLUMNS = ["sae_id", "feature", "explanation", "explainer", "embedding_auroc"]


def nearest_features(
    cur: Cursor,
    index: VectorIndex,
    query: np.ndarray,
    k: int = 20,
    sae_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The same frame as the exact `explain_sql.semantic_search`, through the index: feature
    rows of the k nearest explanations with their `similarity`, best first."""
    hits = index.search(query, k, sae_ids)
    rows = features_for_export(cur, [(s, f) for s, f, _ in hits])
    cols = [c for c in RESULT_COLUMNS if c in rows.columns]
    out = rows[cols].reset_index(drop=True)
    sims = {(s, f): sim for s, f, sim in hits}
    out["similarity"] = [
        sims[(str(s), int(f))] for s, f in zip(out["sae_id"], out["feature"], strict=True)
    ]
    return out
