"""Page latency while sessions generate: the pages' atlas reads, timed under steered generation.

    python -m core.steering.page_load [--atlas data/atlases/default/atlas.duckdb]
        [--mode inline,worker] [--generators 2] [--readers 6] [--requests 50]

In one process (as in the app server): the atlas's live model, `--generators` threads that
generate and measure in a loop exactly as the Steering page does (48 tokens, T 0.5, one
additive intervention), and `--readers` threads that each run `--requests` page loads: the
core queries of the Overview, Features, Feature and Map pages in turn, on a fresh cursor.
Prints p50/p95 of the page loads with no generation and under generation, for each mode:

- inline: generation in the caller's thread with torch's default threads (the app before the
  model thread; one thread per core);
- worker: `LiveModel.stream`, on the model thread with its thread budget and lower priority.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import torch

from core.geometry.density import MapPoints, density_png
from core.steering.engine import prepare
from core.steering.generate import PairStep, SamplingConfig, stream_pair
from core.steering.interventions import Intervention
from core.steering.live import LiveModel
from core.steering.measure import measure_pair
from core.store import feature_sql, geometry_sql, overview_sql
from core.store import queries as q
from core.store.atlas import Atlas
from core.store.db import Cursor

PROMPT = "Tell me about your weekend."
CFG = SamplingConfig(max_new_tokens=48, temperature=0.5, freq_penalty=1.0, seed=16)


# ---- the pages' reads ------------------------------------------------------------------------
def overview_page(cur: Cursor, rng: random.Random) -> None:
    overview_sql.overview(cur)
    overview_sql.sae_table(cur)


def features_page(cur: Cursor, rng: random.Random) -> None:
    q.feature_source(cur)
    flt = q.FeatureFilter(text=rng.choice(["", "the", "ing", "("]))
    q.count_features(cur, flt)
    q.search_features(cur, flt, sort="density", desc=True, limit=50, offset=0)


def feature_page(cur: Cursor, rng: random.Random) -> None:
    saes = overview_sql.sae_table(cur)
    row = saes.iloc[rng.randrange(len(saes))]
    sae_id, feature = str(row["sae_id"]), rng.randrange(int(row["d_sae"]))
    feature_sql.feature_page(cur, sae_id, feature)  # every panel, co-occurrence and flow too


def map_page(cur: Cursor, rng: random.Random) -> None:
    saes = geometry_sql.geometry_saes(cur)
    ids = [str(saes["sae_id"].iloc[rng.randrange(len(saes))])]
    k = geometry_sql.lobe_ks(cur)[0]
    points = MapPoints.from_frame(tuple(ids), geometry_sql.map_coordinates(cur, ids, False, k))
    density_png(points, points.extent(), "lobe", 1000, 720)  # the Map's density image


PAGES: dict[str, Callable[[Cursor, random.Random], None]] = {
    "overview": overview_page,
    "features": features_page,
    "feature": feature_page,
    "map": map_page,
}


def read_pages(atlas: Atlas, seed: int, n: int, out: list[float]) -> None:
    """n page loads, cycling through PAGES; appends each load's seconds to `out`."""
    rng = random.Random(seed)
    fns = list(PAGES.values())
    for i in range(n):
        t0 = time.perf_counter()
        cur = atlas.cursor()
        try:
            fns[(seed + i) % len(fns)](cur, rng)
        finally:
            cur.close()
        out.append(time.perf_counter() - t0)


# ---- generation as the Steering page runs it -------------------------------------------------
def inline_stream(live: LiveModel, items: list[Intervention]) -> Generator[PairStep, None, None]:
    """LiveModel.stream as it was: the turn, then stream_pair in the caller's own thread."""
    lm = live.lm
    prepared = prepare(items, live.bank, lm.device, lm.model.dtype)
    ticket = live.turns.take()
    try:
        while not live.turns.wait(ticket, 0.25):
            yield PairStep(-1, (None, None), ("", ""), waiting=1)
        yield from stream_pair(lm.model, lm.tokenizer, PROMPT, prepared, CFG)
    finally:
        live.turns.leave(ticket)


def generate_until(live: LiveModel, mode: str, stop: threading.Event, runs: list[int]) -> None:
    sid = live.bank.ids()[0]
    items = [Intervention(sid, 1, strength=4.0)]
    while not stop.is_set():
        steps = inline_stream(live, items) if mode == "inline" else live.stream(PROMPT, items, CFG)
        res = None
        for step in steps:
            res = step.result or res
        if res is None:
            continue
        if mode == "inline":
            with live.turn():
                measure_pair(live.lm.model, live.bank, res, [(sid, 1)])
        else:
            live.measure(res, [(sid, 1)])
        runs.append(res.steps)


# ---- one measurement -------------------------------------------------------------------------
def measure(
    atlas: Atlas, live: LiveModel | None, mode: str, args: argparse.Namespace
) -> list[float]:
    """Page-load seconds from --readers threads, with --generators generating (if live)."""
    stop = threading.Event()
    runs: list[int] = []
    times: list[float] = []
    gens = [
        threading.Thread(target=generate_until, args=(live, mode, stop, runs), daemon=True)
        for _ in range(args.generators if live else 0)
    ]
    for g in gens:
        g.start()
    if gens:
        time.sleep(args.warmup)  # both sessions are generating or queued
    readers = [
        threading.Thread(target=read_pages, args=(atlas, i, args.requests, times))
        for i in range(args.readers)
    ]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    for g in gens:
        g.join()
    if gens:
        print(f"    ({len(runs)} generations finished meanwhile, {sum(runs)} tokens per row)")
    return times


def summary(name: str, times: list[float]) -> str:
    """One line: n, p50, p95 and max of latencies in seconds."""
    if len(times) < 2:
        return f"{name}: n={len(times)}"
    cuts = statistics.quantiles(times, n=20, method="inclusive")
    return (f"{name:34s} n={len(times):4d}  p50 {statistics.median(times):6.2f}s  "
            f"p95 {cuts[18]:6.2f}s  max {max(times):6.2f}s")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", type=Path, default=Path("data/atlases/default/atlas.duckdb"))
    ap.add_argument("--mode", default="inline,worker", help="inline, worker or both (comma)")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--readers", type=int, default=6)
    ap.add_argument("--requests", type=int, default=50, help="page loads per reader")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of generation first")
    args = ap.parse_args(argv)
    atlas = Atlas(args.atlas)
    default_threads = torch.get_num_threads()
    print(f"atlas {args.atlas}; {args.readers} readers × {args.requests} page loads; "
          f"{args.generators} generating sessions; torch default threads {default_threads}")  # fmt: skip
    print(summary("no generation", measure(atlas, None, "idle", args)))
    for mode in args.mode.split(","):
        torch.set_num_threads(default_threads)
        live = LiveModel.from_atlas(atlas)
        label = f"{mode}: threads {default_threads if mode == 'inline' else live.worker.threads}"
        print(summary(f"{label}, {args.generators} generating", measure(atlas, live, mode, args)))
    atlas.close()


if __name__ == "__main__":
    main()
