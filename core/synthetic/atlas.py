"""Generate a synthetic atlas in the real schema: every table filled, a run record, Parquet
activations, recorded stages; for benchmarks (16 SAEs × 65,536 features) and browser tests.

Costs, with W = width, S = saes, P = unique_texts, N = docs · doc_len, E = examples per SAE
(live features × (top + interval)):
  texts O(P) template fills; embedding O(P) model calls (~800 texts/s on 2 CPU cores, the
  largest fixed cost); corpus O(N log N); per SAE O(E · window + W · (50 + 20 + 384)) numpy
  and Arrow work and as many rows inserted. Memory: the embedded pool (P × 384 float32,
  200 MB at 131k) plus one SAE's frames at a time (~0.5 GB at W = 65,536).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.explain.embeddings import EMBED_MODEL, Embedder
from core.flow.config import FlowConfig
from core.geometry.config import GeometryConfig
from core.paths import cache_dir
from core.pipeline.stages import STAGE_NAMES
from core.store import schema
from core.store import synthetic_sql as sql
from core.store.atlas import AtlasWriter, sae_dir_name, tmp_path
from core.store.runs import finish_run, set_memory_limit, start_run
from core.synthetic import features as ft
from core.synthetic import layout as lay
from core.synthetic.config import SyntheticConfig
from core.synthetic.corpus import (
    Corpus,
    Vocab,
    documents_table,
    load_vocab,
    make_corpus,
    tokens_table,
    top_token_matrix,
)
from core.synthetic.texts import explanation_pool

EXPLAINER = {"explainer": "synthetic", "model": "templated", "prompt_version": "v1"}


class _Clock:
    """Seconds per step, summed per build stage (the stage names the atlas records)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = dict.fromkeys(STAGE_NAMES, 0.0)
        self.steps: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.stages[stage] += dt
        self.steps[step] = self.steps.get(step, 0.0) + dt


def _log(msg: str) -> None:
    print(f"[synthetic] {msg}", file=sys.stderr, flush=True)


def run_config(cfg: SyntheticConfig) -> dict[str, Any]:
    """The run config the app reads: model spec, geometry (default lobe k), flow thresholds."""
    geometry = GeometryConfig(
        window=lay.GEO_WINDOW, lobe_ks=lay.LOBE_KS, stats_ks=lay.LOBE_KS, default_k=ft.LOBE_K
    )
    return {
        "model": {"spec": cfg.model},
        "synthetic": asdict(cfg),
        "geometry": asdict(geometry),
        "flow": asdict(FlowConfig(top_k=lay.FLOW_TOP, t_r=lay.T_R)),
        "explain": {**EXPLAINER, "embed_model": EMBED_MODEL},
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("duckdb", "numpy", "pyarrow", "torch", "transformers", "sae-atlas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _clear(out: Path, acts: Path, overwrite: bool) -> None:
    """Remove an earlier atlas at `out` (only with overwrite), its temporary file and our
    activations folder: the generator always starts from an empty atlas."""
    old = [p for p in (out, tmp_path(out), acts) if p.exists()]
    if old and not overwrite:
        raise FileExistsError(f"{old[0]} exists; pass overwrite=True (--overwrite) to replace it")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def embed_texts(texts: list[str], batch: int, embedder: Embedder | None = None) -> np.ndarray:
    """(len(texts), 384) float32 unit-norm MiniLM embeddings, in chunks with progress lines."""
    emb = embedder or Embedder(batch_size=batch)
    out = np.empty((len(texts), 384), np.float32)
    chunk = 16 * batch
    t0 = time.perf_counter()
    for lo in range(0, len(texts), chunk):
        out[lo : lo + chunk] = emb.embed(texts[lo : lo + chunk])
        done = min(lo + chunk, len(texts))
        if done < len(texts) and (lo // chunk) % 16 == 15:
            rate = done / (time.perf_counter() - t0)
            _log(f"embedded {done}/{len(texts)} texts ({rate:.0f}/s)")
    return out


def cached_embeddings(
    texts: list[str], cfg: SyntheticConfig, embedder: Embedder | None = None
) -> np.ndarray:
    """embed_texts, read from / written to the cache folder when cfg.embed_cache (keyed by a
    hash of the texts and the embedding model)."""
    if not cfg.embed_cache:
        return embed_texts(texts, cfg.embed_batch, embedder)
    digest = hashlib.sha256("\n".join([EMBED_MODEL, *texts]).encode()).hexdigest()[:16]
    path = cache_dir() / "synthetic" / f"embeddings-{len(texts)}-{digest}.npy"
    if path.is_file():
        _log(f"embeddings from {path}")
        return np.load(path)
    out = embed_texts(texts, cfg.embed_batch, embedder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def generate(
    out: Path,
    cfg: SyntheticConfig,
    *,
    overwrite: bool = False,
    embedder: Embedder | None = None,
) -> Path:
    """Write the synthetic atlas at `out` (plus its activations folder beside it); the path.

    Steps print their seconds to stderr; `stages` records them under the build's stage names.
    """
    out = Path(out)
    acts_dir = f"acts-{cfg.run_id}"
    _clear(out, out.parent / acts_dir, overwrite)
    if cfg.with_replacement:
        _log(f"unique_texts {cfg.unique_texts} < width {cfg.width}: texts repeat within an SAE")
    clock, t0 = _Clock(), time.perf_counter()
    with clock("explain", "texts"):
        texts, hints = explanation_pool(cfg.unique_texts, cfg.seed)
    with clock("corpus", "vocab"):
        vocab = load_vocab(cfg.model)
        pool_top = top_token_matrix(vocab, hints, ft.N_TOP_TOKENS, np.random.default_rng(cfg.seed))
    with clock("explain", "embed"):
        embeddings = cached_embeddings(texts, cfg, embedder)
    _log(f"{len(texts)} texts embedded in {clock.steps['embed']:.1f}s")
    writer = AtlasWriter(out)
    try:
        set_memory_limit(writer.con, cfg.memory_limit)
        start_run(writer.con, cfg.run_id, run_config(cfg), _versions(), acts_dir)
        with clock("corpus", "corpus"):
            corpus = _write_corpus(writer, cfg, vocab, texts, hints)
        pool = _Pool(pa.array(texts, pa.string()), embeddings, pool_top)
        _write_saes(writer, cfg, vocab, corpus, pool, out.parent / acts_dir, clock)
        for stage, seconds in clock.stages.items():
            writer.finish_stage(stage, seconds, detail={"synthetic": True})
        finish_run(writer.con, clock.stages, run_config(cfg))
        counts = sql.table_counts(writer.con, list(schema.all_tables()))
        t1 = time.perf_counter()
        path = writer.commit()
        search = getattr(writer, "search_detail", None)  # the search indexes commit builds
        _log(f"commit {time.perf_counter() - t1:.1f}s" + (f" ({search})" if search else ""))
    except BaseException:
        writer.close()  # nothing to resume: a failed generation leaves no files behind
        tmp_path(out).unlink(missing_ok=True)
        shutil.rmtree(out.parent / acts_dir, ignore_errors=True)
        raise
    _summary(path, out.parent / acts_dir, counts, clock, time.perf_counter() - t0)
    return path


@dataclass(frozen=True)
class _Pool:
    """The embedded explanation texts every SAE draws from."""

    texts: pa.StringArray  # (P,)
    embeddings: np.ndarray  # (P, 384) float32, unit norm
    top: np.ndarray  # (P, N_TOP_TOKENS) int32 token ids of each text's top tokens


def _write_corpus(
    writer: AtlasWriter,
    cfg: SyntheticConfig,
    vocab: Vocab,
    texts: list[str],
    hints: list[tuple[str, ...]],
) -> Corpus:
    """documents, tokens and model_info; the corpus the examples are cut from."""
    rng = np.random.default_rng([cfg.seed, 1_000])
    corpus = make_corpus(vocab, texts, hints, (cfg.docs, cfg.doc_len), rng)
    sql.append(writer.con, "documents", documents_table(cfg.docs, cfg.doc_len, rng))
    sql.append(writer.con, "tokens", tokens_table(corpus, vocab))
    info = {
        "name": "SmolLM2-135M-Instruct" if cfg.model == "default" else cfg.model,
        "source": f"synthetic:{cfg.model}",
        "n_layers": max(30, cfg.saes),
        "d_model": cfg.d_in,
        "vocab_size": len(vocab.strings),
        "device": "cpu",
    }
    sql.append(writer.con, "model_info", pa.Table.from_pylist([info]))
    return corpus


def _write_saes(
    writer: AtlasWriter,
    cfg: SyntheticConfig,
    vocab: Vocab,
    corpus: Corpus,
    pool: _Pool,
    acts: Path,
    clock: _Clock,
) -> None:
    """Every SAE's tables, one SAE at a time (memory stays that of one SAE)."""
    joint = np.random.default_rng([cfg.seed, 2_000]).normal(0, 7, (ft.LOBE_K, 2))
    con = writer.con
    for layer, sae in enumerate(cfg.sae_ids):
        t0 = time.perf_counter()
        before = dict(clock.steps)
        rng = np.random.default_rng([cfg.seed, layer])
        d = ft.draw_sae(cfg, layer, pool.top, rng)
        keys = {"sae_id": sae}
        with clock("quality", "saes"):
            sql.append(con, "saes", lay.sae_frame(cfg, sae, d, rng))
        with clock("stats", "features"):
            sql.append(con, "features", ft.features_table(d, cfg.n_tokens, vocab), keys)
            sql.append(con, "histograms", ft.histograms_table(d, rng), keys)
        with clock("stats", "examples"):
            examples = ft.examples_table(d, cfg, corpus, vocab, rng)
            sql.append(con, "examples", examples, keys)
        with clock("capture", "activations"):
            folder = acts / sae_dir_name(sae)
            folder.mkdir(parents=True, exist_ok=True)
            rows = ft.activations_table(sae, examples, cfg.n_tokens, cfg.doc_len)
            pq.write_table(rows, folder / "part-0.parquet")
        with clock("logits", "logits"):
            sql.append(con, "logits", ft.logits_table(d, vocab, rng), keys)
        with clock("neighbours", "neighbours"):
            sql.append(con, "neighbours", ft.neighbours_table(d, rng), keys)
        with clock("explain", "explanations"):
            expl = ft.explanations_table(d, pool.texts, pool.embeddings, rng)
            sql.append(con, "explanations", expl, {**keys, **_explain_consts(cfg)})
        with clock("geometry", "geometry"):
            _write_geometry(writer, cfg, sae, d, joint, rng)
        with clock("flow", "flow"):
            _write_flow(writer, cfg, layer, rng)
        steps = {k: v - before.get(k, 0.0) for k, v in clock.steps.items()}
        shown = " ".join(f"{k} {v:.1f}s" for k, v in steps.items() if v >= 0.05)
        _log(f"{sae}: {time.perf_counter() - t0:.1f}s ({shown})")


def _explain_consts(cfg: SyntheticConfig) -> dict[str, Any]:
    detail = '{"n_test": 20, "n_random": 40, "n_hard": 20, "synthetic": true}'
    return {**EXPLAINER, "created": datetime.now(), "run_id": cfg.run_id,
            "scorer_model": "synthetic", "detail": detail}  # fmt: skip


def _write_geometry(
    writer: AtlasWriter,
    cfg: SyntheticConfig,
    sae: str,
    d: ft.SaeDraw,
    joint: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """feature_geometry, feature_lobes, cooccurrence, the lobe summaries, metrics, spectrum."""
    con, keys = writer.con, {"sae_id": sae}
    n_windows = cfg.docs * max(1, cfg.doc_len // lay.GEO_WINDOW)
    sql.append(con, "feature_geometry", lay.geometry_table(d, joint, n_windows, rng), keys)
    sql.append(con, "feature_lobes", lay.lobes_table(d), keys)
    sql.append(con, "cooccurrence", ft.cooccurrence_table(d, rng), keys)
    sql.derive_lobes(con, sae, cfg.seed)
    sql.append(con, "geometry_metrics", lay.metrics_frame(rng), keys)
    sql.append(con, "eigen_spectrum", lay.spectrum_frame(cfg.d_in, rng), keys)


def _write_flow(
    writer: AtlasWriter, cfg: SyntheticConfig, layer: int, rng: np.random.Generator
) -> None:
    """flow_classes of this SAE and, from the second layer on, the edges from the previous
    one, their score histogram and co-firing check."""
    con, sae = writer.con, cfg.sae_ids[layer]
    if layer == 0:
        sql.append(con, "flow_classes", lay.flow_classes_table(0, cfg.width), {"sae_id": sae})
        return
    prev = cfg.sae_ids[layer - 1]
    edges, s_r, pred = lay.flow_edges(prev, sae, cfg.width, rng)
    sql.append(con, "flow_edges", edges)
    classes = lay.flow_classes_table(layer, cfg.width, s_r, pred)
    sql.append(con, "flow_classes", classes, {"sae_id": sae})
    sql.append(con, "flow_score_hist", lay.score_hist_frame(s_r, rng), {"sae_id": sae})
    sql.append(con, "flow_validation", lay.validation_frame(prev, sae, rng))


def _summary(path: Path, acts: Path, counts: dict[str, int], clock: _Clock, seconds: float) -> None:
    size = path.stat().st_size
    acts_size = sum(p.stat().st_size for p in acts.rglob("*.parquet"))
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in clock.steps.items())
    _log(f"steps: {steps}")
    _log(f"rows: {', '.join(f'{t} {n:,}' for t, n in counts.items())}")
    _log(
        f"done in {seconds:.1f}s: {path} {size / 2**20:,.1f} MiB, activations {acts_size / 2**20:,.1f} MiB"
    )
