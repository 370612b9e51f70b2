"""The synthetic corpus: sentences made from the explanation texts and their hint words ("French
words for family members, for example le, mother and la."), tokenized by the atlas model's
tokenizer, so windows read as text, a feature's top tokens occur in it, and the app's
byte-level rendering of a window matches its stored token strings.

Costs: decoding the vocabulary O(V) (~0.5 s for 49k tokens); the corpus O(N) tokenization
(~25k sentences/s, N = docs · doc_len ≈ 12 N tokens per sentence) and one O(N log N) sort of its
tokens, which lets an example window be cut around a chosen token in O(1) per example.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from core.model.loading import load_tokenizer

# (source, language, licence, topics): facets of the documents, like the default corpus's.
SOURCES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("wiki_en", "en", "CC-BY-SA-4.0", ("Science", "History", "Geography", "Sport", "Music")),
    ("wiki_fr", "fr", "CC-BY-SA-4.0", ("Sciences", "Histoire", "Géographie", "Sport")),
    ("wiki_es", "es", "CC-BY-SA-4.0", ("Ciencia", "Historia", "Deporte")),
    ("wiki_de", "de", "CC-BY-SA-4.0", ("Wissenschaft", "Geschichte", "Sport")),
    ("lee_news", "en", "LGPL-2.1", ("news",)),
    ("python_stdlib", "code", "PSF-2.0", ("asyncio", "email", "json", "os", "unittest")),
    ("github_js", "code", "MIT", ("react", "node", "express")),
    ("forum_en", "en", "CC-BY-4.0", ("programming", "cooking", "travel", "gaming")),
)


@dataclass(frozen=True)
class Vocab:
    """The tokenizer's vocabulary as decoded strings (what the tokens table stores)."""

    tokenizer: Any
    strings: pa.StringArray
    """(V,) tokenizer.decode([id]) by id."""
    clean: np.ndarray
    """Ids fit to show as a top token or logit: not special or added, not blank, no broken
    UTF-8."""
    lookup: dict[str, int]
    """Decoded string -> its first id."""

    def hint_ids(self, word: str) -> list[int]:
        """Ids of ' word', 'word' (and ' Word') where each is a single token."""
        forms = (" " + word, word, " " + word[:1].upper() + word[1:])
        return [self.lookup[f] for f in dict.fromkeys(forms) if f in self.lookup]


def load_vocab(spec: str = "default") -> Vocab:
    tok = load_tokenizer(spec)
    strings = tok.batch_decode([[i] for i in range(len(tok))])
    special = set(tok.all_special_ids) | set(tok.added_tokens_decoder)
    plain = [i for i in range(len(strings)) if i not in special]
    ok = [i for i in plain if strings[i].strip() and strings[i].isprintable()]
    ok = [i for i in ok if "\ufffd" not in strings[i]]
    lookup: dict[str, int] = {}
    for i in plain:
        lookup.setdefault(strings[i], i)
    return Vocab(tok, pa.array(strings, pa.string()), np.asarray(ok, np.int32), lookup)


def top_token_matrix(
    vocab: Vocab, hints: list[tuple[str, ...]], n_top: int, rng: np.random.Generator
) -> np.ndarray:
    """(texts, n_top) int32 token ids per explanation text: its hint words that are single
    tokens, padded with random clean tokens. O(texts · hints) dictionary look-ups."""
    cache: dict[str, list[int]] = {}
    out = rng.choice(vocab.clean, size=(len(hints), n_top))  # the padding, overwritten below
    for row, words in enumerate(hints):
        ids: list[int] = []
        for w in words:
            if w not in cache:
                cache[w] = vocab.hint_ids(w)
            ids += [i for i in cache[w][:1] if i not in ids]  # one form per word
        out[row, : min(len(ids), n_top)] = ids[:n_top]
    return out.astype(np.int32)


@dataclass(frozen=True)
class Corpus:
    ids: np.ndarray
    """(docs, doc_len) int32 token ids."""
    by_token: np.ndarray
    """(N,) flat token rows sorted by token id: rows of token t are by_token[start[t]:start[t+1]]."""
    start: np.ndarray
    """(V + 1,) offsets into by_token."""

    @property
    def shape(self) -> tuple[int, int]:
        docs, doc_len = self.ids.shape
        return int(docs), int(doc_len)

    def rows_of(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) a random flat row holding each wanted token, or any row where it never occurs."""
        lo, hi = self.start[tokens], self.start[tokens + 1]
        pick = lo + (rng.random(len(tokens)) * (hi - lo)).astype(np.int64)
        anywhere = rng.integers(0, self.ids.size, len(tokens))
        return np.where(hi > lo, self.by_token[np.minimum(pick, len(self.by_token) - 1)], anywhere)


def _sentence(text: str, hints: tuple[str, ...], u: float) -> str:
    """One corpus sentence naming an explanation and its hint words; u in [0, 1) picks the form."""
    words = [h for h in hints if h.strip()][:3] or ["this"]
    head = text[:1].upper() + text[1:]
    listed = ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]
    body = f"{head}, for example {listed}." if u < 0.6 else f"{head}: {' '.join(words)}."
    return body + ("\n" if u > 0.85 else " ")


def make_corpus(
    vocab: Vocab,
    texts: list[str],
    hints: list[tuple[str, ...]],
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> Corpus:
    """shape = (docs, doc_len) tokens of random pool sentences, tokenized and cut into documents."""
    need = shape[0] * shape[1]
    parts: list[np.ndarray] = []
    have = 0
    while have < need:
        picks = rng.integers(0, len(texts), (need - have) // 10 + 64)
        forms = rng.random(len(picks))
        batch = [_sentence(texts[i], hints[i], u) for i, u in zip(picks, forms, strict=True)]
        ids = vocab.tokenizer(batch, add_special_tokens=False)["input_ids"]
        parts.append(np.fromiter(itertools.chain.from_iterable(ids), np.int32))
        have += len(parts[-1])
    flat = np.concatenate(parts)[:need]
    order = np.argsort(flat, kind="stable")
    start = np.searchsorted(flat[order], np.arange(len(vocab.strings) + 1))
    return Corpus(flat.reshape(shape), order, start)


def documents_table(docs: int, doc_len: int, rng: np.random.Generator) -> pa.Table:
    """doc_id, source, topic, language, licence, title, n_tokens: sources in varied shares."""
    share = rng.dirichlet(np.full(len(SOURCES), 2.0))
    src = rng.choice(len(SOURCES), size=docs, p=share)
    topic_pick = rng.random(docs)
    rows = [SOURCES[s] for s in src]
    topics = [r[3][int(u * len(r[3]))] for r, u in zip(rows, topic_pick, strict=True)]
    return pa.table(
        {
            "doc_id": pa.array(np.arange(docs, dtype=np.int32)),
            "source": [r[0] for r in rows],
            "topic": topics,
            "language": [r[1] for r in rows],
            "licence": [r[2] for r in rows],
            "title": [f"{t} — synthetic document {i}" for i, t in enumerate(topics)],
            "n_tokens": pa.array(np.full(docs, doc_len, np.int32)),
        }
    )


def tokens_table(corpus: Corpus, vocab: Vocab) -> pa.Table:
    """doc_id, pos, token_id, token_str: every corpus token, in (doc_id, pos) order."""
    docs, doc_len = corpus.shape
    flat = corpus.ids.ravel()
    return pa.table(
        {
            "doc_id": pa.array(np.repeat(np.arange(docs, dtype=np.int32), doc_len)),
            "pos": pa.array(np.tile(np.arange(doc_len, dtype=np.int32), docs)),
            "token_id": pa.array(flat),
            "token_str": vocab.strings.take(pa.array(flat)),
        }
    )
