"""The model-side build stages, one function each (the registry in stages.py orders them).

Costs, with N corpus tokens, L the deepest SAE layer, d = d_model, and per SAE d_sae latents and
k active: corpus O(N); capture O(N·forward(L)), plus O(N·d·d_sae) per given SAE (encoded live);
train O(epochs·N·d·d_sae) per trained SAE; encode O(N·d·d_sae) per trained SAE; quality
O(eval tokens·forward(L) + ce contexts·#SAEs·full forward); stats O(nnz log nnz + examples ×
window) per SAE with nnz = N·k; logits O(d_sae·d·vocab) and neighbours O(d_sae²·d) per SAE, both
in row blocks (memory linear in d_sae).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.model.sites import Site, decoder_layers
from core.pipeline import capture as cap
from core.pipeline import directions, stats
from core.pipeline.context import BuildContext
from core.pipeline.faults import kill_point
from core.pipeline.shards import capture_on_ray, encode_on_ray
from core.pipeline.tokenize import Context, read_documents, tokenize
from core.sae.formats import save_saelens
from core.sae.quality import ce_metrics, reconstruction_metrics
from core.sae.train import TrainLog, train_topk
from core.store.pipeline_sql import save_train_log, token_positions, train_logs
from core.store.runs import define_activations_view


# ---- stages ----------------------------------------------------------------------------------
def stage_corpus(ctx: BuildContext) -> dict[str, Any]:
    docs = read_documents(ctx.cfg.corpus)
    documents, tokens = tokenize(docs, ctx.lm.tokenizer, ctx.cfg.corpus, ctx.vocab)
    ctx.writer.replace_rows("documents", documents)
    ctx.writer.replace_rows("tokens", tokens)
    m = ctx.lm.model
    info = pd.DataFrame(
        [
            {
                "name": ctx.lm.name,
                "source": ctx.lm.source,
                "n_layers": len(decoder_layers(m)),
                "d_model": ctx.d_model,
                "vocab_size": int(m.config.vocab_size),
                "device": str(ctx.lm.device),
            }
        ]
    )
    ctx.writer.replace_rows("model_info", info)
    ctx.forget_contexts()
    return {"documents": len(documents), "tokens": len(tokens)}


def stage_capture(ctx: BuildContext) -> dict[str, Any]:
    given = {s: sae for s, sae in ctx.saes.items() if ctx.spec(s).path is not None}
    dense = {s: ctx.dense(s, create=True) for s in ctx.to_train()}
    pool = ctx.ray_pool()
    if pool is not None:
        n = capture_on_ray(ctx, pool)
    else:
        n = cap.run_capture(
            ctx.lm.model,
            ctx.ctxs,
            ctx.sites,
            given,
            dense,
            ctx.acts_dir,
            ctx.cfg.model.batch_size,
            int(ctx.lm.tokenizer.pad_token_id or 0),
            ctx.lm.device,
            chunk_contexts=ctx.cfg.model.chunk_contexts,
        )
    return {
        "tokens": n,
        "encoded_live": [s.id for s in given],
        "stored_dense": [s.id for s in dense],
    }


def _eval_rows(ctx: BuildContext) -> np.ndarray:
    """Token rows of the held-out evaluation contexts (every k-th context), never trained on."""
    offsets = cap.token_offsets(ctx.ctxs)
    picks = _eval_contexts(ctx)
    return np.concatenate([offsets[i] + np.arange(len(ctx.ctxs[i].ids)) for i in picks])


def _eval_contexts(ctx: BuildContext) -> list[int]:
    n_ctx = len(ctx.ctxs)
    avg = max(1, ctx.n_tokens() // max(n_ctx, 1))
    want = max(1, min(n_ctx // 5, ctx.cfg.quality.eval_tokens // avg))
    step = max(1, n_ctx // want)
    return list(range(step // 2, n_ctx, step))[:want]


def stage_train(ctx: BuildContext) -> dict[str, Any]:
    """Train a TopK SAE per site without given weights; its weights go beside the atlas and its
    log into `saes.train_log` (kept there when the quality stage writes the rest of the row)."""
    held = np.zeros(ctx.n_tokens(), dtype=bool)
    held[_eval_rows(ctx)] = True
    held |= cap.context_firsts(ctx.ctxs)  # attention sinks: never encoded, never trained on
    for site in ctx.to_train():
        acts = torch.from_numpy(np.asarray(ctx.dense(site)[~held], dtype=np.float32))  # (N, d)
        k = ctx.spec(site).k or ctx.cfg.train.k
        # Each SAE its own seed: from one shared initialisation, SAEs of neighbouring layers
        # ended up index-aligned (feature i matched feature i), which would flatter the flow
        # matching with a similarity that comes from the init rather than the data.
        seed = ctx.cfg.train.seed + ctx.sites.index(site)
        tcfg = dataclasses.replace(ctx.cfg.train, device=str(ctx.lm.device), k=k, seed=seed)
        sae, log = train_topk(acts, tcfg, hook_name=site.id)
        sae.cfg.model_name, sae.cfg.source = ctx.lm.name, "trained"
        out = ctx.weights_dir(site)
        if out.exists():
            shutil.rmtree(out)
        save_saelens(sae, out)
        ctx.saes[site] = sae.to(ctx.lm.device)
        save_train_log(ctx.writer.con, site.id, _log_summary(log))
    return {"trained": [s.id for s in ctx.to_train()]}


def _log_summary(log: TrainLog) -> dict[str, Any]:
    """The log's scalars (final dead fraction, seconds, tokens/s, tokens); the curves stay out."""
    return {k: v for k, v in dataclasses.asdict(log).items() if isinstance(v, int | float | str)}


def stage_encode(ctx: BuildContext) -> dict[str, Any]:
    """Chunks already encoded (capture.ChunkLog) are skipped: a resumed encode finishes the rest."""
    trained = {s: ctx.saes[s] for s in ctx.to_train()}
    if not trained:
        return {}
    doc_id, pos = token_positions(ctx.writer.con)
    keep = ~cap.context_firsts(ctx.ctxs)
    pool = ctx.ray_pool()
    if pool is not None:
        encode_on_ray(ctx, pool, doc_id, pos, keep)
    else:
        dense = {s: ctx.dense(s) for s in trained}
        rows = ctx.cfg.model.chunk_contexts * ctx.cfg.corpus.ctx_len
        cap.encode_dense(trained, dense, doc_id, pos, keep, ctx.acts_dir, ctx.lm.device, rows)
    return {"encoded": [s.id for s in trained]}


def _eval_batches(
    ctx: BuildContext, picks: list[int]
) -> tuple[list[Context], list[tuple[list[int], torch.Tensor, torch.Tensor]]]:
    sub = [ctx.ctxs[i] for i in picks]
    pad = int(ctx.lm.tokenizer.pad_token_id or 0)
    return sub, list(cap.batches(sub, ctx.cfg.model.batch_size, pad))


def stage_quality(ctx: BuildContext) -> dict[str, Any]:
    """FVU, L0, dead fraction on held-out tokens; spliced next-token CE on a few contexts."""
    picks = _eval_contexts(ctx)
    sub, bats = _eval_batches(ctx, picks)
    acts: dict[Site, list[torch.Tensor]] = {s: [] for s in ctx.sites}
    dev = ctx.lm.device
    for _idx, ids, mask in bats:
        got = cap.capture(ctx.lm.model, ids.to(dev), mask.to(dev), ctx.sites)
        mask = mask.clone()
        mask[:, 0] = 0  # the attention sink is not the SAEs' business (see context_firsts)
        valid = mask.reshape(-1).bool().to(dev)
        for s in ctx.sites:
            acts[s].append(got[s].reshape(-1, ctx.d_model)[valid].float())
    n_ce = ctx.cfg.quality.ce_contexts
    pad = int(ctx.lm.tokenizer.pad_token_id or 0)
    ce_ids = [(i, m) for _, i, m in cap.batches(sub[:n_ce], ctx.cfg.model.batch_size, pad)]
    ce_rows: dict[Site, list[dict[str, float]]] = {s: [] for s in ctx.sites}
    for ids, mask in ce_ids:
        for s, m in ce_metrics(ctx.lm.model, ids.to(dev), mask.to(dev), ctx.saes, start=1).items():
            ce_rows[s].append(m)
    logs = train_logs(ctx.writer.con)  # read before the rows holding them are replaced
    rows = [_sae_row(ctx, s, torch.cat(acts[s]), ce_rows[s], logs.get(s.id)) for s in ctx.sites]
    ctx.writer.replace_rows("saes", pd.DataFrame(rows))
    return {r["sae_id"]: {k: r[k] for k in ("fvu", "l0", "dead_frac", "ce_increase")} for r in rows}


def _sae_row(
    ctx: BuildContext,
    site: Site,
    acts: torch.Tensor,
    ce: list[dict[str, float]],
    train_log: str | None,
) -> dict[str, Any]:
    sae = ctx.saes[site]
    rec = reconstruction_metrics(sae, acts, batch_size=4096)
    ce_mean = {k: float(np.mean([m[k] for m in ce])) for k in ce[0]} if ce else {}
    base, spliced, zero = (
        ce_mean.get("ce_base"),
        ce_mean.get("ce_spliced"),
        ce_mean.get("ce_zero_ablation"),
    )
    spec = ctx.spec(site)
    return {
        "sae_id": site.id,
        "layer": site.layer,
        "site": site.kind,
        "architecture": sae.cfg.architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "k": sae.cfg.k,
        "source": spec.path or "trained",
        "weights_path": str(spec.path or ctx.weights_dir(site).relative_to(ctx.folder)),
        "fvu": rec["fvu"],
        "l0": rec["l0"],
        "dead_frac": rec["dead_frac"],
        "ce_base": base,
        "ce_spliced": spliced,
        "ce_zero_ablation": zero,
        "ce_increase": (spliced - base) if base is not None and spliced is not None else None,
        "frac_loss_recovered": ((zero - spliced) / (zero - base))
        if base is not None and spliced is not None and zero is not None and zero != base
        else None,
        "n_tokens_eval": int(acts.shape[0]),
        "train_log": train_log,
        "cfg": json.dumps(sae.cfg.to_dict()),
    }


def stage_stats(ctx: BuildContext) -> dict[str, Any]:
    con = ctx.writer.con
    define_activations_view(con, ctx.acts_dir)
    corpus = stats.Corpus(con)
    out = {}
    for site in ctx.sites:
        sae_id, d_sae = site.id, ctx.saes[site].d_sae
        st = stats.sae_statistics(con, sae_id, d_sae, ctx.n_tokens(), ctx.cfg.stats, corpus)
        where, p = "sae_id = ?", [sae_id]
        ctx.writer.replace_rows("features", st.features, where, p)
        ctx.writer.replace_rows("histograms", st.histograms, where, p)
        ctx.writer.replace_rows("examples", st.examples, where, p)
        alive = int((st.features["n_fire"] > 0).sum())
        kill_point("mid:stats")  # one SAE written, the stage not finished
        out[sae_id] = {"alive": alive, "examples": len(st.examples)}
    return out


def _unembedding(ctx: BuildContext) -> torch.Tensor:
    head = ctx.lm.model.get_output_embeddings()
    return head.weight.detach()  # (vocab, d_model)


def stage_logits(ctx: BuildContext) -> dict[str, Any]:
    W_U = _unembedding(ctx)
    for site in ctx.sites:
        df = directions.logit_table(ctx.saes[site], site.id, W_U, ctx.vocab, ctx.cfg.stats.n_logits)
        ctx.writer.replace_rows("logits", df, "sae_id = ?", [site.id])
    return {}


def stage_neighbours(ctx: BuildContext) -> dict[str, Any]:
    for site in ctx.sites:
        df = directions.neighbour_table(ctx.saes[site].cpu(), site.id, ctx.cfg.stats.n_neighbours)
        ctx.saes[site].to(ctx.lm.device)
        ctx.writer.replace_rows("neighbours", df, "sae_id = ?", [site.id])
    return {}
