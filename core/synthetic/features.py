"""One SAE's per-feature tables, drawn with vectorised numpy into Arrow tables (no sae_id
column: the insert adds it). W = width, E = examples = live features × (top + interval).

Costs per SAE: draws O(W); examples O(E · window) cells; histograms O(W · 50); logits
O(W · 20); neighbours and co-occurrence O(W · 10); explanations O(W · 384) floats copied from
the embedded pool. Memory is a few of these arrays at once (~100 MB at W = 65,536).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from core.synthetic.config import SyntheticConfig
from core.synthetic.corpus import Corpus, Vocab

N_TOP_TOKENS = 5
N_BINS = 50  # histogram bins (edges: N_BINS + 1)
N_INTERVALS = 10  # equal-width intervals of [0, max_act] the interval examples come from
N_LOGITS = 10  # per sign
N_PARTNERS = 10  # neighbours and co-occurring features per feature
LOBE_K = 16  # the default lobe count; k = 8 merges pairs of these


@dataclass(frozen=True)
class SaeDraw:
    """The per-feature draws every table of one SAE is made from; arrays are (W,) by feature."""

    layer: int
    live: np.ndarray
    """bool: fires at least once."""
    n_fire: np.ndarray
    """int64, 0 where dead."""
    max_act: np.ndarray
    mean_act: np.ndarray
    text: np.ndarray
    """Index of the feature's explanation in the pool."""
    top_ids: np.ndarray
    """(W, N_TOP_TOKENS) int32 token ids (its explanation's hint tokens)."""
    lobe: np.ndarray
    """Lobe at k = LOBE_K, -1 where dead (never occurs in a window)."""
    geo: np.ndarray
    """Decoder-direction cluster at k = LOBE_K (mostly agrees with the lobe)."""

    @property
    def width(self) -> int:
        return len(self.live)


def draw_sae(
    cfg: SyntheticConfig, layer: int, pool_top: np.ndarray, rng: np.random.Generator
) -> SaeDraw:
    """Liveness, firing counts and scales, texts (without replacement when the pool allows),
    and lobes of uneven sizes. O(W)."""
    w = cfg.width
    live = rng.random(w) >= cfg.dead_frac * rng.uniform(0.5, 1.5)
    mean_fire = cfg.k * cfg.n_tokens / w  # each token activates k features
    n_fire = np.exp(rng.normal(np.log(mean_fire) - 0.72, 1.2, w))  # lognormal, mean ~mean_fire
    n_fire = np.clip(n_fire, cfg.top + cfg.interval, cfg.n_tokens).astype(np.int64) * live
    scale = 2.0 + 0.6 * layer  # residual norms grow with depth
    max_act = (np.exp(rng.normal(np.log(scale), 0.45, w)) * live).astype(np.float32)
    mean_act = (max_act * rng.uniform(0.15, 0.45, w)).astype(np.float32)
    text = rng.choice(len(pool_top), size=w, replace=cfg.with_replacement)
    lobe = rng.choice(LOBE_K, size=w, p=rng.dirichlet(np.full(LOBE_K, 3.0)))
    geo = np.where(rng.random(w) < 0.6, lobe, rng.integers(0, LOBE_K, w))
    return SaeDraw(
        layer=layer,
        live=live,
        n_fire=n_fire,
        max_act=max_act,
        mean_act=mean_act,
        text=text,
        top_ids=pool_top[text],
        lobe=np.where(live, lobe, -1),
        geo=geo,
    )


def ranked(rows: int, ranks: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """(rows, ranks) float32 decreasing along each row: the first in [lo, hi), then each 1-15 %
    below the one before (cosines, phi, logit effects, activations of top examples)."""
    first = rng.uniform(lo, hi, (rows, 1))
    steps = rng.uniform(0.85, 0.99, (rows, ranks))
    steps[:, 0] = 1.0
    return (first * np.cumprod(steps, axis=1)).astype(np.float32)


def partners(
    members: np.ndarray, group: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(len(members), n) distinct partners of each member, mostly from its own group: members
    are ordered by group and partner k of a member is k·stride places after it in that order
    (stride 1-3, distinct while 3n < len(members))."""
    order = members[np.argsort(group, kind="stable")]
    where = np.empty(len(members), np.int64)
    where[np.argsort(group, kind="stable")] = np.arange(len(members))
    stride = rng.integers(1, 4, (len(members), 1))
    return order[(where[:, None] + stride * np.arange(1, n + 1)) % len(members)]


def _lists(values: pa.Array, per_row: int, mask: np.ndarray | None = None) -> pa.ListArray:
    """A flat array cut into lists of per_row values (null where mask is True)."""
    n = len(values) // per_row
    offsets = pa.array(np.arange(0, n * per_row + 1, per_row, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values, mask=None if mask is None else pa.array(mask))


def features_table(d: SaeDraw, n_tokens: int, vocab: Vocab) -> pa.Table:
    """feature, n_fire, density, max_act, mean_act, top_tokens (NULL where dead, as the build)."""
    tops = vocab.strings.take(pa.array(d.top_ids.ravel()))
    return pa.table(
        {
            "feature": pa.array(np.arange(d.width, dtype=np.int32)),
            "n_fire": pa.array(d.n_fire),
            "density": pa.array(d.n_fire / n_tokens),
            "max_act": pa.array(d.max_act),
            "mean_act": pa.array(d.mean_act),
            "top_tokens": _lists(tops, N_TOP_TOKENS, mask=~d.live),
        }
    )


def examples_table(
    d: SaeDraw, cfg: SyntheticConfig, corpus: Corpus, vocab: Vocab, rng: np.random.Generator
) -> pa.Table:
    """Top then interval examples of every live feature, each a window of real corpus tokens:
    a top example centres on one of the feature's top tokens; interval example j comes from
    the j-th share of the N_INTERVALS intervals. O(E · window)."""
    feats = np.flatnonzero(d.live)
    per = cfg.top + cfg.interval
    feature = np.repeat(feats, per)  # (E,)
    slot = np.tile(np.arange(per), len(feats))  # (E,) 0..top-1 top, then interval
    is_top = slot < cfg.top
    acts = np.empty((len(feats), per), np.float32)  # (live, per) activation of each example
    acts[:, : cfg.top] = d.max_act[feats, None] * ranked(len(feats), cfg.top, 1.0, 1.0, rng)
    j = np.arange(cfg.interval)
    spread = (j + rng.random((len(feats), cfg.interval))) * N_INTERVALS // max(cfg.interval, 1)
    bins = np.minimum(spread, N_INTERVALS - 1).astype(np.int32)  # (live, interval)
    within = bins + rng.uniform(0.05, 1, bins.shape)
    acts[:, cfg.top :] = d.max_act[feats, None] * within / N_INTERVALS
    act = acts.ravel()
    rank = np.where(is_top, slot + 1, 0).astype(np.int32)
    bin_ = np.zeros(len(feature), np.int32)
    bin_[~is_top] = bins.ravel()
    rank[~is_top] = bin_[~is_top] + 1  # as the build: rank = bin · per_interval + i
    wanted = d.top_ids[feature, slot % N_TOP_TOKENS]
    anywhere = rng.integers(0, corpus.ids.size, len(feature))
    rows = np.where(is_top, corpus.rows_of(wanted, rng), anywhere)
    doc_id, pos, center, cells = _windows(rows, cfg.window, corpus.shape[1])
    ids = corpus.ids.ravel()[cells]  # (E, window) token ids
    # neighbouring tokens fire a little now and then; the centre carries the example's act
    weak = act[:, None] * rng.uniform(0.05, 0.5, ids.shape)
    cell_acts = np.where(rng.random(ids.shape) < 0.12, weak, 0).astype(np.float32)
    cell_acts[np.arange(len(act)), center] = act
    kind = pa.DictionaryArray.from_arrays(pa.array((~is_top).astype(np.int8)), ["top", "interval"])
    return pa.table(
        {
            "feature": pa.array(feature.astype(np.int32)),
            "kind": kind,
            "rank": pa.array(rank),
            "bin": pa.array(bin_, mask=is_top),
            "doc_id": pa.array(doc_id),
            "pos": pa.array(pos),
            "act": pa.array(act),
            "center": pa.array(center),
            "tokens": _lists(vocab.strings.take(pa.array(ids.ravel())), cfg.window),
            "acts": _lists(pa.array(cell_acts.ravel()), cfg.window),
        }
    )


def _windows(
    rows: np.ndarray, window: int, doc_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """doc_id, pos, center (int32, (E,)) and the flat corpus rows (E, window) of windows of
    `window` tokens around flat rows, kept inside their documents."""
    doc, pos = rows // doc_len, rows % doc_len
    start = np.clip(pos - window // 2, 0, doc_len - window)
    cells = (doc * doc_len + start)[:, None] + np.arange(window)
    return doc.astype(np.int32), pos.astype(np.int32), (pos - start).astype(np.int32), cells


def histograms_table(d: SaeDraw, rng: np.random.Generator) -> pa.Table:
    """Per live feature: N_BINS + 1 edges over (0, max_act] and counts summing to n_fire,
    decaying from the lowest bin, the maximum in the last. O(W · N_BINS)."""
    feats = np.flatnonzero(d.live)
    n = d.n_fire[feats]
    tau = rng.uniform(0.05, 0.4, (len(feats), 1))
    w = np.exp(-tau * np.arange(N_BINS))  # (live, N_BINS)
    counts = np.floor((n[:, None] - 1) * w / w.sum(1, keepdims=True)).astype(np.int64)
    counts[:, -1] += 1  # the maximum itself
    counts[:, 0] += n - counts.sum(1)
    edges = d.max_act[feats, None] * np.arange(N_BINS + 1, dtype=np.float32) / N_BINS
    return pa.table(
        {
            "feature": pa.array(feats.astype(np.int32)),
            "edges": _lists(pa.array(edges.astype(np.float32).ravel()), N_BINS + 1),
            "counts": _lists(pa.array(counts.ravel()), N_BINS),
        }
    )


def logits_table(d: SaeDraw, vocab: Vocab, rng: np.random.Generator) -> pa.Table:
    """N_LOGITS promoted (+1) and suppressed (-1) tokens per feature, dead ones too (they come
    from the decoder); the first promoted ones are the feature's top tokens. O(W · N_LOGITS)."""
    w, n = d.width, N_LOGITS
    ids = rng.choice(vocab.clean, size=(w, 2 * n)).astype(np.int32)
    ids[:, :3] = d.top_ids[:, :3]
    values = np.concatenate([ranked(w, n, 0.8, 3.0, rng), -ranked(w, n, 0.8, 3.0, rng)], axis=1)
    return pa.table(
        {
            "feature": pa.array(np.repeat(np.arange(w, dtype=np.int32), 2 * n)),
            "sign": pa.array(np.tile(np.repeat(np.array([1, -1], np.int8), n), w)),
            "rank": pa.array(np.tile(np.arange(1, n + 1, dtype=np.int32), 2 * w)),
            "token_id": pa.array(ids.ravel()),
            "token_str": vocab.strings.take(pa.array(ids.ravel())),
            "value": pa.array(values.ravel()),
        }
    )


def neighbours_table(d: SaeDraw, rng: np.random.Generator) -> pa.Table:
    """N_PARTNERS decoder neighbours per feature, mostly of its geo cluster, decreasing cosine."""
    feats = np.arange(d.width)
    nb = partners(feats, d.geo, N_PARTNERS, rng)
    return _pairs_table(
        feats, {"neighbour": nb, "cosine": ranked(d.width, N_PARTNERS, 0.3, 0.9, rng)}
    )


def cooccurrence_table(d: SaeDraw, rng: np.random.Generator) -> pa.Table:
    """N_PARTNERS co-occurring live features per live feature, mostly of its lobe, by phi."""
    feats = np.flatnonzero(d.live)
    other = partners(feats, d.lobe[feats], N_PARTNERS, rng).astype(np.int32)
    phi = ranked(len(feats), N_PARTNERS, 0.1, 0.6, rng)
    jaccard = (phi * rng.uniform(0.4, 0.9, phi.shape)).astype(np.float32)
    both = np.minimum(d.n_fire[feats, None], d.n_fire[other]) * jaccard
    n11 = np.maximum(np.ceil(both), 1).astype(np.int64)
    return _pairs_table(feats, {"other": other, "phi": phi, "jaccard": jaccard, "n11": n11})


def _pairs_table(feats: np.ndarray, cols: dict[str, np.ndarray]) -> pa.Table:
    """feature, rank 1..n and the (features, n) columns flattened row by row."""
    n = next(iter(cols.values())).shape[1]
    out = {
        "feature": pa.array(np.repeat(feats.astype(np.int32), n)),
        "rank": pa.array(np.tile(np.arange(1, n + 1, dtype=np.int32), len(feats))),
    }
    for name, v in cols.items():
        out[name] = pa.array(v.ravel())
    return pa.table(out)


def explanations_table(
    d: SaeDraw, texts: pa.StringArray, embeddings: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """One explanation per live feature: its pool text, that text's embedding (384,) and
    plausible scores. O(live · 384)."""
    feats = np.flatnonzero(d.live)
    idx = d.text[feats]
    emb = embeddings[idx]  # (live, 384) float32, unit norm
    auroc = 0.5 + 0.5 * rng.beta(4, 2, len(feats))
    hard = np.maximum(auroc - rng.uniform(0.02, 0.15, len(feats)), 0.4)
    detection = 0.5 + 0.45 * rng.beta(3, 2, len(feats))
    return pa.table(
        {
            "feature": pa.array(feats.astype(np.int32)),
            "explanation": texts.take(pa.array(idx)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
            "embedding_auroc": pa.array(auroc.astype(np.float32)),
            "embedding_auroc_hard": pa.array(hard.astype(np.float32)),
            "detection": pa.array(detection.astype(np.float32)),
            "fuzzing": pa.array((detection - rng.uniform(0, 0.1, len(feats))).astype(np.float32)),
        }
    )


def activations_table(sae_id: str, examples: pa.Table, n_tokens: int, doc_len: int) -> pa.Table:
    """sae_id, doc_id, pos, feature, act: the examples' activating tokens, one row per
    (token, feature), the layout of the build's Parquet activations."""
    doc = examples["doc_id"].to_numpy().astype(np.int64)
    pos = examples["pos"].to_numpy().astype(np.int64)
    feat = examples["feature"].to_numpy().astype(np.int64)
    key = feat * n_tokens + doc * doc_len + pos
    _, first = np.unique(key, return_index=True)  # sorted by (feature, doc, pos), deduplicated
    return pa.table(
        {
            "sae_id": pa.DictionaryArray.from_arrays(np.zeros(len(first), np.int32), [sae_id]),
            "doc_id": pa.array(doc[first].astype(np.int32)),
            "pos": pa.array(pos[first].astype(np.int32)),
            "feature": pa.array(feat[first].astype(np.int32)),
            "act": examples["act"].take(pa.array(first)),
        }
    )
