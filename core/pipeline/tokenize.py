"""Corpus stage: documents → tokens (stored), and the fixed contexts the model reads.

Cost: O(corpus characters) to tokenize, O(N) to store N tokens, O(N log N) to cut contexts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from core.corpus import CorpusError, Document, default_corpus, load_corpus, with_ids
from core.paths import cache_dir
from core.pipeline.config import CorpusConfig

# Average characters per token over the default mix, used only to size the text we read.
_CHARS_PER_TOKEN = 3.6


def read_documents(cfg: CorpusConfig) -> list[Document]:
    if cfg.spec == "default":
        budget = int(cfg.n_tokens * _CHARS_PER_TOKEN * 1.3)
        return default_corpus(
            cache_dir(), max_chars=budget, seed=cfg.seed, max_doc_chars=cfg.max_doc_chars
        )
    return with_ids(load_corpus(cfg.spec))


def vocab_strings(tok: PreTrainedTokenizerBase) -> list[str]:
    """The display string of every token id (decoded one at a time, as shown in examples)."""
    n = max(len(tok), int(getattr(tok, "vocab_size", 0) or 0))
    return [str(tok.decode([i])) for i in range(n)]


def tokenize(
    docs: list[Document], tok: PreTrainedTokenizerBase, cfg: CorpusConfig, vocab: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (documents frame, tokens frame); stops once cfg.n_tokens tokens are collected."""
    texts = [d.text for d in docs]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    doc_rows, tok_frames, total = [], [], 0
    for doc, seq in zip(docs, ids, strict=True):
        if not seq:
            continue
        seq = seq[: cfg.n_tokens - total]
        arr = np.asarray(seq, dtype=np.int32)
        tok_frames.append(
            pd.DataFrame(
                {
                    "doc_id": np.full(len(arr), doc.doc_id, np.int32),
                    "pos": np.arange(len(arr), dtype=np.int32),
                    "token_id": arr,
                }
            )
        )
        doc_rows.append(
            {
                "doc_id": doc.doc_id,
                "source": doc.source,
                "topic": doc.topic,
                "language": doc.language,
                "licence": doc.licence,
                "title": doc.title,
                "n_tokens": len(arr),
            }
        )
        total += len(arr)
        if total >= cfg.n_tokens:
            break
    if total == 0:
        raise CorpusError(f"corpus {cfg.spec!r} produced no tokens")
    tokens = pd.concat(tok_frames, ignore_index=True)
    strings = np.asarray(vocab, dtype=object)
    tokens["token_str"] = strings[tokens["token_id"].to_numpy()]
    return pd.DataFrame(doc_rows), tokens


@dataclass
class Context:
    doc_id: int
    start: int
    ids: np.ndarray  # (T,) int32


def contexts(tokens: pd.DataFrame, ctx_len: int) -> list[Context]:
    """Split each document's tokens into consecutive contexts of at most ctx_len tokens."""
    out: list[Context] = []
    for doc_id, grp in tokens.groupby("doc_id", sort=True):
        ids = grp.sort_values("pos")["token_id"].to_numpy()
        for start in range(0, len(ids), ctx_len):
            out.append(Context(int(str(doc_id)), start, ids[start : start + ctx_len]))
    return out
