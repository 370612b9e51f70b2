"""Prompt search: which features fire on each token of a text, and which fire most overall."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from core.model.capture import capture
from core.steering.engine import SaeBank, SaeEntry
from core.steering.interventions import SteeringError

MAX_SEARCH_TOKENS = 2048
MAX_SEARCH_CHARS = 40_000


@dataclass
class PromptSearch:
    tokens: list[str]
    """Decoded piece of each token."""
    token_ids: list[int]
    per_token: pd.DataFrame
    """sae_id, pos, token, rank, feature, act, rel (act / atlas max_act): top-k per token, act > 0."""
    summary: pd.DataFrame
    """sae_id, feature, n_tokens, max_act_text, sum_act, score (sum of act / atlas max_act),
    first_pos: every feature that fired, best score first within each SAE."""


def tokenize_text(tok: PreTrainedTokenizerBase, text: str) -> list[int]:
    if not text or not text.strip():
        raise SteeringError("the text is empty")
    if len(text) > MAX_SEARCH_CHARS:
        raise SteeringError(f"the text has {len(text)} characters; the limit is {MAX_SEARCH_CHARS}")
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    if len(ids) > MAX_SEARCH_TOKENS:
        raise SteeringError(f"the text has {len(ids)} tokens; the limit is {MAX_SEARCH_TOKENS}")
    return ids


@torch.no_grad()
def search_text(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    bank: SaeBank,
    sae_ids: list[str],
    text: str,
    k: int = 5,
) -> PromptSearch:
    """One forward pass (stopping after the deepest SAE) and an encode per SAE."""
    if not sae_ids:
        raise SteeringError("choose at least one SAE")
    ids = tokenize_text(tok, text)
    entries = [bank.entry(s) for s in sae_ids]
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)  # (1, T)
    acts = capture(model, x, None, [e.site for e in entries])
    pieces = [str(tok.decode([i])) for i in ids]
    per_token, summary = [], []
    for e in entries:
        a = e.sae.encode(acts[e.site][0]).float().cpu()  # (T, d_sae)
        per_token.append(_top_per_token(e, a, pieces, k))
        summary.append(_summary(e, a))
    return PromptSearch(
        pieces, ids, pd.concat(per_token, ignore_index=True), pd.concat(summary, ignore_index=True)
    )


def _top_per_token(e: SaeEntry, a: torch.Tensor, pieces: list[str], k: int) -> pd.DataFrame:
    """(T, d_sae) activations → the top-k firing features of every token."""
    vals, idx = a.topk(min(k, a.shape[1]), dim=-1)  # (T, k)
    pos = torch.arange(a.shape[0])[:, None].expand_as(idx)
    rank = torch.arange(idx.shape[1])[None, :].expand_as(idx)
    keep = vals > 0
    feats = idx[keep]
    df = pd.DataFrame(
        {
            "sae_id": e.sae_id,
            "pos": pos[keep].numpy(),
            "rank": rank[keep].numpy(),
            "feature": feats.numpy(),
            "act": vals[keep].numpy(),
            "rel": (vals[keep] / e.max_act[feats].float()).numpy(),
        }
    )
    df.insert(2, "token", [pieces[p] for p in df["pos"]])
    return df


def _summary(e: SaeEntry, a: torch.Tensor) -> pd.DataFrame:
    """(T, d_sae) → per firing feature: tokens fired, max, sum, sum relative to atlas max_act."""
    fired = (a > 0).sum(0)  # (d_sae,)
    feats = torch.nonzero(fired).squeeze(-1)
    sub = a[:, feats]  # (T, n)
    max_act = e.max_act[feats].float()
    rel = sub.sum(0) / torch.where(max_act > 0, max_act, torch.nan)
    score = torch.where(torch.isfinite(rel), rel, sub.sum(0))
    df = pd.DataFrame(
        {
            "sae_id": e.sae_id,
            "feature": feats.numpy(),
            "n_tokens": fired[feats].numpy(),
            "max_act_text": sub.max(0).values.numpy(),
            "sum_act": sub.sum(0).numpy(),
            "score": score.numpy(),
            "first_pos": (sub > 0).float().argmax(0).numpy(),
        }
    )
    return df.sort_values("score", ascending=False, ignore_index=True)
