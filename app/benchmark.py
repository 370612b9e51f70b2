"""Server-side latency of every view the app answers, on one atlas, over randomised requests.

    python -m app.benchmark --atlas PATH [--requests 200] [--threads 2] [--recall 200]

Each view runs the queries (and for the Map, the figure and its JSON) that its page runs,
uncached (st.cache_* is bypassed: every request is a cold query on a warm process), with
random arguments: sorts and directions, pages among the first 20, tokens and words taken from
the atlas, researcher-style queries (core.synthetic.texts.user_queries), random features and
map views. Prints p50 / p95 per view against the targets of a 2-core server, and recall@50 of
the vector index against the exact scan over every stored embedding (a hit counts when it is
at least as similar as the exact 50th, minus f16 rounding, so exact ties are not misses).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.figures import map as map_figures
from core.explain.embeddings import embed_query
from core.geometry.density import MapPoints, point_rows, warm_up
from core.store import explain_sql, feature_sql, geometry_sql, overview_sql, vectors
from core.store import queries as q
from core.store.atlas import Atlas, prefetch
from core.store.db import Cursor
from core.synthetic.texts import user_queries

TARGETS_MS = {
    "features: default view": 150, "features: sort": 150, "features: top-token search": 150,
    "features: explanation search": 150, "semantic search (with embedding)": 100,
    "feature page (all queries)": 30, "map: first paint (warm)": 2000, "map: zoomed to points": 1000,
}  # fmt: skip


@dataclass
class Bench:
    cur: Cursor
    atlas: Path
    rng: random.Random
    src: q.FeatureSource
    saes: list[tuple[str, int]]
    index: vectors.VectorIndex | None
    points: MapPoints | None

    def feature(self) -> tuple[str, int]:
        sae, d = self.saes[self.rng.randrange(len(self.saes))]
        return sae, self.rng.randrange(d)

    def page(self, flt: q.FeatureFilter, sort: str, desc: bool) -> None:
        """What the Features page asks for: one page of 50 among the first 20, and the count."""
        q.page_with_count(self.cur, flt, sort, desc, 50, 50 * self.rng.randrange(20))


# ---- the views ---------------------------------------------------------------------------------
def default_view(b: Bench) -> None:
    b.page(q.FeatureFilter(), "density", True)


def sort_view(b: Bench) -> None:
    sort = b.rng.choice([s for s in b.src.sortable])
    b.page(q.FeatureFilter(), sort, b.rng.random() < 0.5)


def token_search(b: Bench) -> None:
    row = q.feature_row(b.cur, *b.feature()) or {}
    tokens = [t.strip() for t in row.get("top_tokens") or [] if t.strip()] or ["the"]
    b.page(q.FeatureFilter(text=b.rng.choice(tokens)), "density", True)


def explanation_search(b: Bench) -> None:
    row = q.feature_row(b.cur, *b.feature()) or {}
    words = [w for w in str(row.get("explanation") or "the").split() if len(w) > 3] or ["the"]
    b.page(q.FeatureFilter(text=b.rng.choice(words)), "density", True)


def semantic(b: Bench, queries: list[str]) -> Callable[[Bench], None]:
    def run(b: Bench) -> None:
        vec = embed_query(b.rng.choice(queries))
        if b.index is None:
            explain_sql.semantic_search(b.cur, vec, 25)
        else:
            vectors.nearest_features(b.cur, b.index, vec, 25)

    return run


def feature_page(b: Bench) -> None:
    sae_id, f = b.feature()
    assert feature_sql.feature_page(b.cur, sae_id, f) is not None  # every panel: see its doc


def map_first(b: Bench) -> None:
    assert b.points is not None
    colour = b.rng.choice(["lobe", "layer", "density"])
    whole = b.points.extent().with_aspect(map_figures.ASPECT)
    map_figures.density_figure(b.points, whole, colour).to_json()


def map_zoomed(b: Bench) -> None:
    """A view around a random feature, narrowed until it holds at most 20,000 points."""
    assert b.points is not None
    i = b.rng.randrange(len(b.points))
    cx, cy = (float(b.points.frame[c].iat[i]) for c in ("x", "y"))
    view = b.points.extent().with_aspect(map_figures.ASPECT).zoomed(1.0, cx, cy)
    while int(b.points.mask(view).sum()) > 20_000:
        view = view.zoomed(0.5)
    df = point_rows(b.cur, b.points, view)
    map_figures.points_figure(df, b.rng.choice(["lobe", "layer"]), view).to_json()


# ---- running -----------------------------------------------------------------------------------
def timed(fn: Callable[[Bench], None], b: Bench, n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn(b)
        out.append(time.perf_counter() - t)
    return np.asarray(out) * 1000


def report(name: str, ms: np.ndarray) -> None:
    target = TARGETS_MS.get(name)
    p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
    verdict = "" if target is None else ("ok" if p95 <= target else "MISSED")
    tgt = "" if target is None else f"{target:>6} ms"
    print(f"{name:36s} {len(ms):5d} {p50:9.1f} {p95:9.1f}  {tgt:>9}  {verdict}", flush=True)


def recall_at(b: Bench, queries: list[str], k: int = 50) -> tuple[float, float]:
    """(tie-aware, strict) mean recall@k of the index over `queries` against the exact scan."""
    assert b.index is not None
    per_sae = {s: vectors.shown_embeddings(b.cur, s) for s in b.index.indexes}
    keys = [(s, int(f)) for s, (fs, _) in per_sae.items() for f in fs]
    mat = np.concatenate([v for _, v in per_sae.values()])  # (F, 384)
    tie, strict = [], []
    for text in queries:
        vec = embed_query(text)
        sims = mat @ vec
        top = np.argpartition(-sims, k)[:k]
        kth = float(np.min(sims[top]))
        got = b.index.search(vec, k)
        tie.append(sum(s >= kth - 2e-3 for _, _, s in got) / k)
        strict.append(len({keys[i] for i in top} & {(s, f) for s, f, _ in got}) / k)
    return float(np.mean(tie)), float(np.mean(strict))


def open_bench(atlas: Path, threads: int, seed: int) -> tuple[Bench, dict[str, float]]:
    """The atlas opened as the app opens it, with one-off costs measured (ms)."""
    once: dict[str, float] = {}
    t = time.perf_counter()
    read = prefetch(atlas)  # as the server does in the background at its first session
    name = f"atlas into the OS page cache ({read / 2**30:.1f} GiB; in the background)"
    once[name] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    cur = Atlas(atlas).cursor()
    cur.execute(f"SET threads = {int(threads)}")
    src = q.feature_source(cur)
    saes = [(str(r.sae_id), int(r.d_sae)) for r in overview_sql.sae_table(cur).itertuples()]
    index = vectors.VectorIndex.open(atlas, vectors.stored_stamp(cur))
    once["open atlas + feature source + vector index"] = (time.perf_counter() - t) * 1000
    b = Bench(cur, atlas, random.Random(seed), src, saes, index, None)
    geo, ks = geometry_sql.geometry_saes(cur), geometry_sql.lobe_ks(cur)
    if len(geo) and ks:
        ids = tuple(geo.loc[geo["joint"], "sae_id"]) or (str(geo["sae_id"].iloc[0]),)
        t = time.perf_counter()
        warm_up()
        once["map: datashader compile (cold, once per server)"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        frame = geometry_sql.map_coordinates(cur, list(ids), bool(geo["joint"].any()), ks[-1])
        b.points = MapPoints.from_frame(ids, frame)
        once["map: layout load (once per layout)"] = (time.perf_counter() - t) * 1000
    return b, once


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.benchmark", description=__doc__.split("\n")[0])
    ap.add_argument("--atlas", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=200, help="randomised requests per view")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (the server's cores)")
    ap.add_argument("--recall", type=int, default=200, help="queries for recall@50 (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    b, once = open_bench(args.atlas, args.threads, args.seed)
    n_features = sum(d for _, d in b.saes)
    print(f"atlas {args.atlas} · {n_features:,} features in {len(b.saes)} SAEs · "
          f"{args.requests} requests per view · DuckDB threads {args.threads}")  # fmt: skip
    queries = user_queries(max(args.recall, 50), args.seed + 1)
    t = time.perf_counter()
    embed_query("warm up")
    once["embedding model load (once per server)"] = (time.perf_counter() - t) * 1000
    if b.points is not None:
        t = time.perf_counter()
        map_first(b)
        once["map: first paint after compile + load"] = (time.perf_counter() - t) * 1000
    for name, ms in once.items():
        print(f"  once: {name:52s} {ms:9.1f} ms")
    views: dict[str, Callable[[Bench], None]] = {
        "features: default view": default_view, "features: sort": sort_view,
        "features: top-token search": token_search, "features: explanation search": explanation_search,
        "semantic search (with embedding)": semantic(b, queries), "feature page (all queries)": feature_page,
    }  # fmt: skip
    if b.points is not None:
        views |= {"map: first paint (warm)": map_first, "map: zoomed to points": map_zoomed}
    print(f"{'view':36s} {'n':>5s} {'p50 ms':>9s} {'p95 ms':>9s}  {'target p95':>9s}")
    for name, fn in views.items():
        fn(b)  # one untimed call: the view's code paths are imported
        report(name, timed(fn, b, args.requests))
    if args.recall and b.index is not None:
        tie, strict = recall_at(b, queries[: args.recall])
        print(f"recall@50 of the vector index over {args.recall} queries: {tie:.3f} "
              f"(tie-aware; strict by feature id {strict:.3f}); target ≥ 0.95")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
