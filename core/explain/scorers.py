"""How far to trust an explanation (METHODS §4).

- embedding: AUROC of cosine(explanation, window) separating held-out activating windows from
  non-activating ones (random, and the harder windows of neighbouring features). Offline.
- detection: an LLM sees unhighlighted activating and non-activating windows, `per_prompt` at
  a time, and says which ones the explanation fits; balanced accuracy.
- fuzzing: activating windows with the right tokens highlighted, or as many wrong (non-firing)
  tokens highlighted; the LLM says which highlights fit; balanced accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from core.explain.clients import ChatBackend, Messages
from core.explain.llm import HIGHLIGHT_FRAC, highlight
from core.explain.windows import Example, Samples


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half; NaN if a side is empty."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def embedding_scores(
    samples: Samples, expl: dict[int, np.ndarray], windows: np.ndarray, window_emb: np.ndarray
) -> pd.DataFrame:
    """(feature, embedding_auroc, embedding_auroc_hard, n_test, n_random, n_hard).

    expl: feature -> unit explanation embedding (384,); windows: sorted window ids (W,) whose
    unit embeddings are the rows of window_emb (W, 384). Vectorised over all features.
    """
    df = samples.frame[samples.frame["role"].isin(["test", "random", "hard"])]
    df = df[df["feature"].isin(list(expl))]
    feats = np.asarray(sorted(expl), dtype=np.int64)
    emb = np.stack([expl[int(f)] for f in feats]) if len(feats) else np.zeros((0, 1), np.float32)
    fi = np.searchsorted(feats, df["feature"].to_numpy())
    wi = np.searchsorted(windows, df["win"].to_numpy())
    sims = np.empty(len(df), dtype=np.float32)
    for lo in range(0, len(df), 65536):  # (chunk, 384) gathers, not (n, 384) at once
        hi = lo + 65536
        sims[lo:hi] = np.einsum("ij,ij->i", emb[fi[lo:hi]], window_emb[wi[lo:hi]])
    df = df[["feature", "role"]].assign(sim=sims)
    counts = df.groupby(["feature", "role"]).size().unstack(fill_value=0)
    out = pd.DataFrame(index=counts.index)
    for col, neg in (("embedding_auroc", "random"), ("embedding_auroc_hard", "hard")):
        out[col] = _grouped_auroc(df[df["role"].isin(["test", neg])])
    for role in ("test", "random", "hard"):
        out[f"n_{role}"] = counts[role] if role in counts else 0
    return out.reset_index()


def _grouped_auroc(df: pd.DataFrame) -> pd.Series:
    """Per feature: Mann-Whitney AUROC of 'test' sims against the other rows (NaN if a side
    is empty), from average ranks inside each feature."""
    pos = df["role"] == "test"
    rank = df.groupby("feature")["sim"].rank(method="average")
    g = pd.DataFrame({"feature": df["feature"], "pos": pos, "r": rank.where(pos, 0.0)})
    agg = g.groupby("feature").agg(n_pos=("pos", "sum"), n=("pos", "size"), r=("r", "sum"))
    n_pos, n_neg = agg["n_pos"], agg["n"] - agg["n_pos"]
    auc = (agg["r"] - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc.where((n_pos > 0) & (n_neg > 0))


# ---- LLM scorers -----------------------------------------------------------------------------
DETECTION = """You check explanations of a hidden feature of a language model. You get an \
explanation and numbered text excerpts. For each excerpt decide whether the feature, as \
explained, is active somewhere in it. Answer with a Python list of 1 (active) or 0 (not \
active), one number per excerpt in order, for example [1, 0, 0, 1, 0]. Write nothing after it."""

FUZZING = """You check explanations of a hidden feature of a language model. You get an \
explanation and numbered text excerpts in which some tokens are marked <<like this>>. For each \
excerpt decide whether the marked tokens are where the feature, as explained, is active. Answer \
with a Python list of 1 (correctly marked) or 0 (wrongly marked), one number per excerpt in \
order, for example [0, 1, 1, 0, 0]. Write nothing after it."""

_LIST = re.compile(r"\[([\s01,]*)\]")


@dataclass
class _Prompt:
    feature: int
    kind: str  # detection | fuzzing
    labels: list[int]  # 1 = activating / correctly marked
    messages: Messages


def parse_labels(answer: str | None, n: int) -> list[int] | None:
    """The last bracketed list of n zeros/ones in the answer, or None."""
    for body in reversed(_LIST.findall(answer or "")):
        items = [s.strip() for s in body.split(",") if s.strip()]
        if len(items) == n:
            return [int(s) for s in items]
    return None


def _prompt(system: str, explanation: str, texts: list[str]) -> Messages:
    body = "\n".join(f"Excerpt {i}: {t}" for i, t in enumerate(texts, 1))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Explanation: {explanation}\n\n{body}"},
    ]


def _chunks(
    feature: int,
    kind: str,
    explanation: str,
    items: list[tuple[str, int]],
    per_prompt: int,
    rng: np.random.Generator,
) -> list[_Prompt]:
    order = rng.permutation(len(items))
    out = []
    for lo in range(0, len(order), per_prompt):
        part = [items[i] for i in order[lo : lo + per_prompt]]
        system = DETECTION if kind == "detection" else FUZZING
        out.append(
            _Prompt(
                feature,
                kind,
                [y for _, y in part],
                _prompt(system, explanation, [t for t, _ in part]),
            )
        )
    return out


def wrong_marks(ex: Example, rng: np.random.Generator) -> np.ndarray:
    """As many marks as the right highlight has, put on tokens where the feature is 0."""
    right = (ex.acts >= HIGHLIGHT_FRAC * ex.acts.max()) & (ex.acts > 0)
    off = np.flatnonzero(ex.acts <= 0)
    marks = np.zeros(len(ex.acts), dtype=bool)
    marks[rng.choice(off, size=min(int(right.sum()) or 1, len(off)), replace=False)] = True
    return marks


def build_prompts(
    feature: int,
    explanation: str,
    pos: list[Example],
    neg: list[Example],
    per_prompt: int,
    seed: int,
) -> list[_Prompt]:
    """Detection (pos vs neg windows) and fuzzing (pos windows, half of them mis-marked)."""
    rng = np.random.default_rng([seed, feature])
    det = [(e.text, 1) for e in pos] + [(e.text, 0) for e in neg]
    half = len(pos) // 2
    fuzz = [(highlight(e), 1) for e in pos[:half]]
    fuzz += [(highlight(e, marks=wrong_marks(e, rng)), 0) for e in pos[half:]]
    return _chunks(feature, "detection", explanation, det, per_prompt, rng) + _chunks(
        feature, "fuzzing", explanation, fuzz, per_prompt, rng
    )


def llm_scores(backend: ChatBackend, prompts: list[_Prompt], max_tokens: int = 64) -> pd.DataFrame:
    """(feature, detection, fuzzing, n_failed): balanced accuracy per feature and kind over the
    prompts whose answer parsed; NaN when none did."""
    answers = backend.complete([p.messages for p in prompts], max_tokens)
    got: dict[tuple[int, str], list[tuple[int, int]]] = {}
    failed: dict[int, int] = {}
    for p, a in zip(prompts, answers, strict=True):
        pred = parse_labels(a.text, len(p.labels))
        got.setdefault((p.feature, p.kind), [])
        if pred is None:
            failed[p.feature] = failed.get(p.feature, 0) + 1
            continue
        got[(p.feature, p.kind)].extend(zip(p.labels, pred, strict=True))
    feats = sorted({p.feature for p in prompts})
    rows = [
        {
            "feature": f,
            "detection": balanced_accuracy(got.get((f, "detection"), [])),
            "fuzzing": balanced_accuracy(got.get((f, "fuzzing"), [])),
            "n_failed": failed.get(f, 0),
        }
        for f in feats
    ]
    return pd.DataFrame(rows, columns=["feature", "detection", "fuzzing", "n_failed"])


def balanced_accuracy(pairs: list[tuple[int, int]]) -> float:
    """Mean of the recall on positives and on negatives; NaN without both classes."""
    y = np.asarray([t for t, _ in pairs])
    p = np.asarray([q for _, q in pairs])
    if not len(y) or y.all() or not y.any():
        return float("nan")
    return float(((p[y == 1] == 1).mean() + (p[y == 0] == 0).mean()) / 2)
