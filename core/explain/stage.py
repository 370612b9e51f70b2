"""The explain stage: sample windows, explain every feature, score, store (METHODS §4).

Used by the build (`stage_explain`) and by `sae-atlas explain` (`explain_atlas`). Each
corpus window is embedded at most once per run and reused by every feature and SAE.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.explain import llm, scorers, statistical, windows
from core.explain.clients import (
    ChatBackend,
    LocalChat,
    OpenAIChat,
    Usage,
    openai_from_env,
    openai_settings,
)
from core.explain.config import ExplainConfig
from core.explain.embeddings import EMBED_DIM, Embedder
from core.store import explain_sql as sql
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view

if TYPE_CHECKING:
    from core.explain.ray_chat import RayChat
    from core.pipeline.config import RayConfig
    from core.pipeline.context import BuildContext


@dataclass
class _Run:
    """What one explain pass shares across SAEs."""

    writer: AtlasWriter
    cfg: ExplainConfig
    backend: ChatBackend | None
    embedder: Embedder
    run_id: str | None
    corpus: pd.DataFrame | None = None
    win_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBED_DIM), np.float32))
    have: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    @property
    def identity(self) -> tuple[str, str, str]:
        """(explainer, model, prompt_version) of the rows this pass writes."""
        if self.backend is None:
            return statistical.EXPLAINER, statistical.MODEL, statistical.PROMPT_VERSION
        return self.cfg.explainer, self.backend.model, llm.PROMPT_VERSION


def make_backend(cfg: ExplainConfig) -> ChatBackend | None:
    if cfg.explainer == "statistical":
        return None
    if cfg.explainer == "local":
        return LocalChat(cfg.model or "default", cfg.device, cfg.local_batch)
    return openai_from_env(
        cfg.base_url,
        cfg.model,
        cfg.api_key_env,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        usage=Usage(cfg.price_in, cfg.price_out),
    )


def make_ray_backend(cfg: ExplainConfig, ray_cfg: RayConfig) -> RayChat | None:
    """The LLM back-end on Ray actors: one local model per GPU (CPU: `ray.actors`, default 2),
    or endpoint clients sharing `concurrency` requests between them."""
    if cfg.explainer == "statistical":
        return None
    import ray

    from core.explain.ray_chat import RayChat
    from core.ray_cluster import start_ray

    owns = start_ray(ray_cfg.address, ray_cfg.num_cpus)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if cfg.explainer == "local":
        actors = ray_cfg.actors or gpus or 2
        factory: Any = partial(LocalChat, cfg.model or "default", cfg.device, cfg.local_batch)
        return RayChat(
            factory, cfg.model or "default", actors, cfg.local_batch, 1 if gpus else 0, owns
        )
    actors = ray_cfg.actors or 2
    url, name, key = openai_settings(cfg.base_url, cfg.model, cfg.api_key_env)
    per_actor = max(1, -(-cfg.concurrency // actors))  # the total stays ~ cfg.concurrency
    factory = partial(OpenAIChat, url, name, key, per_actor, cfg.timeout_s, cfg.max_retries)
    return RayChat(factory, name, actors, batch=4 * per_actor, owns_ray=owns)


def stage_explain(ctx: BuildContext) -> dict[str, Any]:
    """Build stage: explain and score every feature of every SAE (statistical by default);
    with `--ray`, the LLM calls fan out over Ray actors."""
    cfg = ctx.cfg.explain
    define_activations_view(ctx.writer.con, ctx.acts_dir)
    backend = make_ray_backend(cfg, ctx.cfg.ray) if ctx.cfg.ray.enabled else None
    try:
        sites = [s.id for s in ctx.sites]
        return explain_atlas(ctx.writer, cfg, sites, overwrite=True, backend=backend)
    finally:
        if backend is not None:
            backend.close()


def explain_atlas(
    writer: AtlasWriter,
    cfg: ExplainConfig,
    saes: list[str] | None = None,
    features: dict[str, list[int]] | None = None,
    overwrite: bool = False,
    backend: ChatBackend | None = None,
) -> dict[str, Any]:
    """Explain `features` (default: all) of `saes` (default: all) into `explanations`.

    Without `overwrite`, features that already have a non-NULL explanation from the same
    explainer, model and prompt version are skipped, so failed ones are retried. Needs the
    `activations` view on writer.con. Returns per-SAE embedding-AUROC summaries and timings.
    """
    con = writer.con
    all_saes = sql.sae_ids(con)
    saes = saes or all_saes
    if backend is None:
        backend = make_backend(cfg)
    run = _Run(
        writer,
        cfg,
        backend,
        Embedder(cfg.device, cfg.embed_dtype, cfg.embed_batch, cfg.embed_max_tokens),
        sql.current_run(con),
    )
    with run.timed("windows"):
        n_windows = windows.define(con, cfg)
        run.win_emb = np.zeros((n_windows, EMBED_DIM), np.float32)
        run.have = np.zeros(n_windows, bool)
        sql.drop_stale(con, run.run_id, all_saes)
    if backend is None:
        with run.timed("statistics"):
            sql.define_grams(con)
            run.corpus = sql.corpus_mix(con)
    out: dict[str, Any] = {}
    for sae_id in saes:
        todo = _todo(run, sae_id, features, overwrite)
        if todo:
            _explain_sae(run, sae_id, todo)
        out[sae_id] = summarize(con, sae_id, *run.identity)
        out[sae_id]["explained_now"] = len(todo)
        _log(sae_id, out[sae_id])
    sql.drop_temp(con)
    usage = backend.usage.summary() if backend is not None else None
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in run.seconds.items())
    print(
        f"[explain] {int(run.have.sum())} of {n_windows} windows embedded; {seconds}",
        file=sys.stderr,
    )
    return {
        "explainer": run.identity[0],
        "model": run.identity[1],
        "saes": out,
        "windows": n_windows,
        "windows_embedded": int(run.have.sum()),
        "seconds": {k: round(v, 1) for k, v in run.seconds.items()},
        "usage": usage,
    }


def _todo(
    run: _Run, sae_id: str, features: dict[str, list[int]] | None, overwrite: bool
) -> list[int]:
    feats = (
        features.get(sae_id, [])
        if features is not None
        else sql.sae_features(run.writer.con, sae_id)
    )
    if not overwrite:
        done = sql.explained_features(run.writer.con, sae_id, *run.identity)
        feats = [f for f in feats if f not in done]
    return sorted(set(feats))


def _explain_sae(run: _Run, sae_id: str, feats: list[int]) -> None:
    con, cfg = run.writer.con, run.cfg
    with run.timed("sampling"):
        samples = windows.sample(con, sae_id, feats, cfg)
    with run.timed("explain"):
        if run.backend is None:
            assert run.corpus is not None
            expl = statistical.explain(con, sae_id, feats, cfg, run.corpus)
        else:
            ex = windows.examples(con, samples, cfg, ("train",))
            train = {f: ex.get((f, "train"), []) for f in feats}
            expl = llm.explain(run.backend, train, feats, cfg.max_new_tokens)
    emb = _embed_explanations(run, expl)
    with run.timed("embed windows"):
        wins = samples.scoring_windows()
        _embed_windows(run, wins)
    with run.timed("score"):
        scores = scorers.embedding_scores(samples, emb, wins, run.win_emb[wins])
        llm_scores = _llm_scores(run, samples, expl) if run.backend is not None else None
    frame = _frame(run, sae_id, expl, emb, scores, llm_scores)
    run.writer.replace_rows(
        "explanations", frame, sql.EXPLANATION_KEY, [sae_id, *run.identity, feats]
    )


def _embed_explanations(run: _Run, expl: pd.DataFrame) -> dict[int, np.ndarray]:
    """feature -> unit embedding of its explanation (distinct texts embedded once)."""
    ok = expl[expl["explanation"].notna()]
    col = "embed_text" if "embed_text" in ok else "explanation"
    texts = [str(t) for t in ok[col]]
    uniq = sorted(set(texts))
    with run.timed("embed explanations"):
        vecs = run.embedder.embed(uniq)
    index = {t: i for i, t in enumerate(uniq)}
    return {int(f): vecs[index[t]] for f, t in zip(ok["feature"], texts, strict=True)}


def _embed_windows(run: _Run, wins: np.ndarray) -> None:
    """Embed the windows not embedded yet in this run."""
    missing = wins[~run.have[wins]]
    if not len(missing):
        return
    texts = windows.window_texts(run.writer.con, run.cfg, missing)
    run.win_emb[missing] = run.embedder.embed([texts.get(int(w), "") for w in missing])
    run.have[missing] = True


def _llm_scores(run: _Run, samples: windows.Samples, expl: pd.DataFrame) -> pd.DataFrame | None:
    """Detection and fuzzing with the explainer's own model, when configured."""
    cfg, backend = run.cfg, run.backend
    if not cfg.llm_scores or backend is None:
        return None
    ok = expl[expl["explanation"].notna()]
    n = cfg.score_windows
    ex = windows.examples(run.writer.con, samples, cfg, ("test", "random", "hard"))
    prompts = []
    for f, text in zip(ok["feature"].astype(int), ok["explanation"], strict=True):
        pos = _spread(ex.get((f, "test"), []), n)
        neg = _spread(ex.get((f, "random"), []), n - n // 2) + _spread(
            ex.get((f, "hard"), []), n // 2
        )
        prompts += scorers.build_prompts(f, text, pos, neg, cfg.per_prompt, cfg.seed)
    if not prompts:
        return None
    return scorers.llm_scores(backend, prompts)


def _spread(items: list[windows.Example], n: int) -> list[windows.Example]:
    """n items evenly spaced through the list (samples are ordered by quantile)."""
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _frame(
    run: _Run,
    sae_id: str,
    expl: pd.DataFrame,
    emb: dict[int, np.ndarray],
    scores: pd.DataFrame,
    llm_scores: pd.DataFrame | None,
) -> pd.DataFrame:
    explainer, model, version = run.identity
    df = expl.merge(scores, on="feature", how="left")
    if llm_scores is not None:
        df = df.merge(llm_scores, on="feature", how="left")
    df["detail"] = [_detail(r) for r in df.to_dict("records")]
    df["embedding"] = [emb[f].tolist() if f in emb else None for f in df["feature"]]
    df = df.assign(
        sae_id=sae_id,
        explainer=explainer,
        model=model,
        prompt_version=version,
        created=datetime.now(),
        run_id=run.run_id,
        scorer_model=model if llm_scores is not None else None,
    )
    for col in ("detection", "fuzzing", "simulation"):
        if col not in df:
            df[col] = np.nan
    cols = [
        "sae_id",
        "feature",
        "explainer",
        "model",
        "prompt_version",
        "created",
        "run_id",
        "explanation",
        "error",
        "embedding",
        "embedding_auroc",
        "embedding_auroc_hard",
        "detection",
        "fuzzing",
        "simulation",
        "scorer_model",
        "detail",
    ]
    return df[cols]


def _detail(row: dict[str, Any]) -> str:
    detail = json.loads(row["detail"]) if isinstance(row.get("detail"), str) else {}
    for key in ("n_test", "n_random", "n_hard", "n_failed"):
        if key in row and pd.notna(row[key]):
            detail[key] = int(row[key])
    return json.dumps(detail)


def summarize(con: Any, sae_id: str, explainer: str, model: str, version: str) -> dict[str, Any]:
    """Embedding-AUROC distribution (mean, quartiles) over the SAE's scored features, and the
    mean against the harder neighbour windows."""
    df = sql.auroc_values(con, sae_id, explainer, model, version)
    if df.empty:
        return {"n_scored": 0}
    v = df["embedding_auroc"].to_numpy(dtype=np.float64)
    q = np.quantile(v, [0.25, 0.5, 0.75])
    hard = df["embedding_auroc_hard"].dropna()
    return {
        "n_scored": len(v),
        "auroc_mean": round(float(v.mean()), 3),
        "auroc_q25": round(float(q[0]), 3),
        "auroc_median": round(float(q[1]), 3),
        "auroc_q75": round(float(q[2]), 3),
        "auroc_hard_mean": round(float(hard.mean()), 3) if len(hard) else None,
    }


def _log(sae_id: str, s: dict[str, Any]) -> None:
    if not s.get("n_scored"):
        print(f"[explain] {sae_id}: no embedding AUROC", file=sys.stderr)
        return
    print(
        f"[explain] {sae_id}: embedding AUROC over {s['n_scored']} features: mean "
        f"{s['auroc_mean']:.3f}, quartiles {s['auroc_q25']:.3f} / {s['auroc_median']:.3f} / "
        f"{s['auroc_q75']:.3f}; against neighbours' windows: mean {s['auroc_hard_mean']}",
        file=sys.stderr,
    )
