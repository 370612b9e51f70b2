"""The build's stages, one function each; `pipeline.build` runs them in order."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.build import capture as cap
from core.build import directions, stats
from core.build.config import BuildConfig
from core.build.tokenize import Context, contexts, read_documents, tokenize, vocab_strings
from core.explain.stage import stage_explain
from core.flow.stage import stage_flow
from core.geometry.stage import stage_geometry
from core.model.loading import LoadedModel, load_model
from core.model.sites import Site, decoder_layers
from core.sae.formats import load_sae, save_saelens
from core.sae.model import SAE
from core.sae.quality import ce_metrics, reconstruction_metrics
from core.sae.train import train_topk
from core.store.atlas import AtlasWriter, define_activations_view, sae_dir_name

__all__ = ["BuildContext", "stage_explain", "stage_flow", "stage_geometry", "versions"]


def versions() -> dict[str, str]:
    pkgs = ["torch", "transformers", "duckdb", "numpy", "pandas", "sae-atlas"]
    out = {"python": platform.python_version()}
    for p in pkgs:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class BuildContext:
    cfg: BuildConfig
    writer: AtlasWriter
    folder: Path
    run_id: str
    acts_dir: Path
    timer: Any
    lm: LoadedModel
    sites: list[Site]
    saes: dict[Site, SAE] = field(default_factory=dict)
    _ctxs: list[Context] | None = None
    _vocab: list[str] | None = None

    @classmethod
    def open(
        cls,
        cfg: BuildConfig,
        writer: AtlasWriter,
        folder: Path,
        run_id: str,
        acts_name: str,
        timer: Any,
    ) -> BuildContext:
        with timer.stage("load model"):
            lm = load_model(cfg.model.spec, cfg.model.device, cfg.model.dtype)
        sites = [Site.parse(s.site) for s in cfg.saes]
        if not sites:
            raise ValueError("no SAE sites given: pass --sae SITE[=PATH] or use a profile")
        n_layers = len(decoder_layers(lm.model))
        for s in sites:  # fail before any work on a site the model lacks
            from core.model.sites import site_module

            site_module(lm.model, s)
        ctx = cls(cfg, writer, folder, run_id, folder / acts_name, timer, lm, sites)
        ctx.load_given_saes()
        del n_layers
        return ctx

    # ---- shared lazily-built pieces --------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.lm.model.config.hidden_size)

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = vocab_strings(self.lm.tokenizer)
        return self._vocab

    @property
    def ctxs(self) -> list[Context]:
        if self._ctxs is None:
            tokens = self.writer.con.execute(
                "SELECT doc_id, pos, token_id FROM tokens ORDER BY doc_id, pos"
            ).df()
            self._ctxs = contexts(tokens, self.cfg.corpus.ctx_len)
        return self._ctxs

    def n_tokens(self) -> int:
        return int(sum(len(c.ids) for c in self.ctxs))

    def spec(self, site: Site):  # noqa: ANN201
        return next(s for s in self.cfg.saes if Site.parse(s.site) == site)

    def to_train(self) -> list[Site]:
        return [s for s in self.sites if self.spec(s).path is None]

    def dense_file(self, site: Site) -> Path:
        return self.folder / f"work-{self.run_id}" / f"{sae_dir_name(site.id)}.f16"

    def weights_dir(self, site: Site) -> Path:
        return self.folder / f"saes-{self.run_id}" / sae_dir_name(site.id)

    def dense(self, site: Site, create: bool = False) -> np.memmap:
        path = self.dense_file(site)
        path.parent.mkdir(parents=True, exist_ok=True)
        mode: Any = "w+" if create and not path.exists() else "r+"
        return np.memmap(path, dtype=np.float16, mode=mode, shape=(self.n_tokens(), self.d_model))

    def load_given_saes(self) -> None:
        """Load user-given SAEs, and trained ones already saved by an earlier (resumed) run."""
        for site in self.sites:
            spec = self.spec(site)
            if spec.path is not None:
                self.saes[site] = load_sae(
                    spec.path, spec.format, expected_d_in=self.d_model, site=site.id
                )
            elif (self.weights_dir(site) / "cfg.json").exists():
                self.saes[site] = load_sae(self.weights_dir(site), "saelens")
        for sae in self.saes.values():
            sae.to(self.lm.device)


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
    ctx._ctxs = None
    return {"documents": len(documents), "tokens": len(tokens)}


def stage_capture(ctx: BuildContext) -> dict[str, Any]:
    given = {s: sae for s, sae in ctx.saes.items() if ctx.spec(s).path is not None}
    dense = {s: ctx.dense(s, create=True) for s in ctx.to_train()}
    pad = int(ctx.lm.tokenizer.pad_token_id or 0)
    n = cap.run_capture(
        ctx.lm.model,
        ctx.ctxs,
        ctx.sites,
        given,
        dense,
        ctx.acts_dir,
        ctx.cfg.model.batch_size,
        pad,
        ctx.lm.device,
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
    held = np.zeros(ctx.n_tokens(), dtype=bool)
    held[_eval_rows(ctx)] = True
    held |= cap.context_firsts(ctx.ctxs)  # attention sinks: never encoded, never trained on
    logs = {}
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
        logs[site.id] = _log_summary(log)
    return logs


def _log_summary(log: Any) -> dict[str, Any]:
    d = log.__dict__ if hasattr(log, "__dict__") else dict(log)
    return {k: v for k, v in d.items() if isinstance(v, int | float | str)}


def stage_encode(ctx: BuildContext) -> dict[str, Any]:
    trained = {s: ctx.saes[s] for s in ctx.to_train()}
    if not trained:
        return {}
    for s in trained:
        shutil.rmtree(ctx.acts_dir / sae_dir_name(s.id), ignore_errors=True)
    tok = ctx.writer.con.execute("SELECT doc_id, pos FROM tokens ORDER BY doc_id, pos").fetchnumpy()
    dense = {s: ctx.dense(s) for s in trained}
    cap.encode_dense(
        trained,
        dense,
        tok["doc_id"].astype(np.int32),
        tok["pos"].astype(np.int32),
        ~cap.context_firsts(ctx.ctxs),
        ctx.acts_dir,
        ctx.lm.device,
    )
    return {"encoded": [s.id for s in trained]}


def _eval_batches(ctx: BuildContext, picks: list[int]):  # noqa: ANN202
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
    rows = [_sae_row(ctx, s, torch.cat(acts[s]), ce_rows[s]) for s in ctx.sites]
    ctx.writer.replace_rows("saes", pd.DataFrame(rows))
    return {r["sae_id"]: {k: r[k] for k in ("fvu", "l0", "dead_frac", "ce_increase")} for r in rows}


def _sae_row(
    ctx: BuildContext, site: Site, acts: torch.Tensor, ce: list[dict[str, float]]
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
    train_detail = ctx.writer.con.execute(
        "SELECT detail FROM stages WHERE stage = 'train'"
    ).fetchone()
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
        "train_log": json.dumps(json.loads(train_detail[0]).get(site.id) if train_detail else None),
        "cfg": json.dumps(sae.cfg.to_dict()),
    }


def _reader(ctx: BuildContext):  # noqa: ANN202
    con = ctx.writer.con
    define_activations_view(con, str(ctx.acts_dir / "*" / "*.parquet"))
    return con


def stage_stats(ctx: BuildContext) -> dict[str, Any]:
    con = _reader(ctx)
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
