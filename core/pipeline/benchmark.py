"""Build throughput vs a bare forward pass through the same layers on the same tokens.

Three runs, interleaved (bare, capture, build, bare, ...) so that machine noise hits all alike:
the bare truncated forward; the capture alone (the same forward with the site hooks, no SAE);
and the build (capture + encode + Parquet, then per-feature statistics). The ratio is build
tokens/s ÷ bare tokens/s, and the split shows where the difference goes. The statistics have a
part that does not grow with the corpus (top and interval example windows per feature), so the
ratio rises with --tokens; the default build uses 220k.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from core.model.capture import bare_forward
from core.model.loading import load_model
from core.model.sites import Site
from core.pipeline import capture as cap
from core.pipeline import stats
from core.pipeline.config import CorpusConfig, StatsConfig, default_profile
from core.pipeline.tokenize import Context, contexts, read_documents, tokenize, vocab_strings
from core.sae.formats import load_sae
from core.sae.model import SAE, SAEConfig
from core.store import schema
from core.store.atlas import sae_dir_name
from core.store.runs import define_activations_view, replace_table


def _saes(
    sites: list[Site], atlas: Path | None, d_model: int, d_sae: int, k: int
) -> dict[Site, SAE]:
    """The default atlas's trained SAEs when built; otherwise random TopK SAEs of the same shape."""
    out = {}
    for s in sites:
        folder = next(atlas.parent.glob(f"saes-*/{sae_dir_name(s.id)}"), None) if atlas else None
        if folder is not None:
            out[s] = load_sae(folder, "saelens")
            continue
        sae = SAE(SAEConfig(d_in=d_model, d_sae=d_sae, architecture="topk", k=k, hook_name=s.id))
        with torch.no_grad():
            sae.W_enc.normal_(0, d_model**-0.5)
            sae.W_dec.copy_(sae.W_enc.T)
        out[s] = sae
    return out


def _capture_once(
    model: torch.nn.Module,
    ctxs: list[Context],
    sites: list[Site],
    saes: dict[Site, SAE],
    folder: Path,
    batch: int,
) -> Path:
    """The one forward pass, encoding into Parquet when `saes` is not empty."""
    acts_dir = folder / f"acts-{time.time_ns()}"
    cap.run_capture(model, ctxs, sites, saes, {}, acts_dir, batch, 0, torch.device("cpu"))
    return acts_dir


def _build_once(
    model: torch.nn.Module,
    ctxs: list[Context],
    sites: list[Site],
    saes: dict[Site, SAE],
    tokens_df: pd.DataFrame,
    folder: Path,
    batch: int,
) -> tuple[float, float]:
    """Capture + encode + Parquet, then per-feature statistics; returns both in seconds."""
    t0 = time.perf_counter()
    acts_dir = _capture_once(model, ctxs, sites, saes, folder, batch)
    t1 = time.perf_counter()
    con = duckdb.connect()
    for stmt in schema.create_statements():
        con.execute(stmt)
    replace_table(con, "tokens", tokens_df)
    define_activations_view(con, acts_dir)
    corpus = stats.Corpus(con)
    for s, sae in saes.items():
        stats.sae_statistics(con, s.id, sae.d_sae, len(tokens_df), StatsConfig(), corpus)
    con.close()
    return t1 - t0, time.perf_counter() - t1


def _bare_once(model: torch.nn.Module, ctxs: list[Context], last_layer: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _idx, ids, mask in cap.batches(ctxs, batch, 0):
        bare_forward(model, ids, mask, last_layer)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tokens", type=int, default=48_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--atlas", type=Path, default=Path(default_profile().out))
    args = p.parse_args(argv)
    prof = default_profile()
    lm = load_model("default", device="cpu")
    sites = [Site.parse(s.site) for s in prof.saes]
    saes = _saes(
        sites, args.atlas if args.atlas.exists() else None, 576, prof.train.d_sae, prof.train.k
    )
    ccfg = CorpusConfig(n_tokens=args.tokens, seed=1)
    vocab = vocab_strings(lm.tokenizer)
    _docs, tokens_df = tokenize(read_documents(ccfg), lm.tokenizer, ccfg, vocab)
    ctxs = contexts(tokens_df, ccfg.ctx_len)
    n = len(tokens_df)
    last = max(s.layer for s in sites)
    bare: list[float] = []
    hooks: list[float] = []
    full: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        _bare_once(lm.model, ctxs[:4], last, prof.model.batch_size)  # warm-up
        for _ in range(args.repeats):
            bare.append(_bare_once(lm.model, ctxs, last, prof.model.batch_size))
            t0 = time.perf_counter()
            _capture_once(lm.model, ctxs, sites, {}, Path(tmp), prof.model.batch_size)
            hooks.append(time.perf_counter() - t0)
            full.append(
                _build_once(
                    lm.model, ctxs, sites, saes, tokens_df, Path(tmp), prof.model.batch_size
                )
            )
    tb, th = float(np.median(bare)), float(np.median(hooks))
    tc, ts = (float(np.median([f[i] for f in full])) for i in (0, 1))
    tf = tc + ts
    print(
        f"tokens: {n}  SAEs: {len(saes)} ({', '.join(s.id for s in sites)})  threads: {torch.get_num_threads()}"
    )
    print(f"medians of {args.repeats}, seconds and share of the bare forward:")
    for name, t in [
        (f"bare forward to layer {last}", tb),
        ("capture (site hooks, no SAE)", th),
        ("capture + encode + Parquet", tc),
        ("per-feature statistics", ts),
        ("build (capture..statistics)", tf),
    ]:
        print(f"  {name:<30} {t:7.1f}s  {t / tb:6.1%}  {n / t:7.0f} tok/s")
    print(f"ratio build/bare: {tb / tf:.3f}   (target >= 0.8)")


if __name__ == "__main__":
    main()
