"""The Document record, corpus errors, and deterministic balanced sampling of a mix."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_DOC_CHARS = 4000
MIN_TAIL_CHARS = 200
"""A group's last document is cut to fit its budget only if at least this much is left."""


class CorpusError(ValueError):
    """Bad corpus input: missing file, empty corpus, undecodable bytes, malformed records."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One text of the corpus with its provenance."""

    text: str
    source: str
    """Where it comes from: "wiki_en", "gensim_enwiki", "python_stdlib", a user file stem..."""
    language: str
    """ISO 639-1 code ("en", "fr", "es"), "code" for source code, "unknown" if not given."""
    licence: str
    title: str = ""
    topic: str | None = None
    """Topic label when the source has one (Wikipedia topic, stdlib top module)."""
    doc_id: int = -1
    """Position in the final corpus; assigned by `sample_mix` / `load_corpus`."""


def with_ids(docs: Iterable[Document]) -> list[Document]:
    """Return copies of `docs` with doc_id = 0..n-1 in iteration order."""
    return [dataclasses.replace(doc, doc_id=i) for i, doc in enumerate(docs)]


def group_by_source(docs: Iterable[Document]) -> dict[str, list[Document]]:
    """Group documents by their `source`, keeping the input order inside each group."""
    groups: dict[str, list[Document]] = {}
    for doc in docs:
        groups.setdefault(doc.source, []).append(doc)
    return groups


def truncate_text(text: str, max_chars: int) -> str:
    """Cut `text` to at most `max_chars`, at the last whitespace if one is in the back half."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if cut < max_chars // 2:
        cut = max_chars  # one long token (e.g. a URL or a data blob): hard cut
    return text[:cut].rstrip()


def sample_mix(
    groups: dict[str, list[Document]],
    weights: dict[str, float],
    max_chars_total: int,
    seed: int,
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
) -> list[Document]:
    """Draw a deterministic mix where group g gets about weights[g]/sum(weights) of the characters.

    Each group is shuffled with a seed derived from (`seed`, group name), so adding a group does
    not change what the others draw. Documents are cut to `max_doc_chars`; a group that runs out
    of documents leaves its share unused. The result is shuffled (any prefix is still a mix) and
    numbered doc_id 0..n-1.
    """
    shares = _normalised_weights(groups, weights)
    if max_chars_total <= 0 or max_doc_chars <= 0:
        raise CorpusError("max_chars_total and max_doc_chars must be positive")
    picked: list[Document] = []
    for name, share in shares.items():
        budget = int(round(share * max_chars_total))
        picked.extend(_draw_group(groups[name], budget, max_doc_chars, f"{seed}:{name}"))
    random.Random(f"{seed}:mix").shuffle(picked)
    return with_ids(picked)


def _normalised_weights(
    groups: dict[str, list[Document]], weights: dict[str, float]
) -> dict[str, float]:
    unknown = sorted(set(weights) - set(groups))
    if unknown:
        raise CorpusError(f"weights name unknown groups {unknown}; groups are {sorted(groups)}")
    if any(w < 0 for w in weights.values()):
        raise CorpusError(f"weights must be non-negative, got {weights}")
    total = sum(weights.values())
    if total <= 0:
        raise CorpusError(f"weights must have a positive sum, got {weights}")
    return {name: w / total for name, w in sorted(weights.items()) if w > 0}


def _draw_group(docs: list[Document], budget: int, max_doc_chars: int, seed: str) -> list[Document]:
    """Shuffled documents of one group until `budget` characters are used."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    out: list[Document] = []
    for i in order:
        if budget < MIN_TAIL_CHARS:
            break
        text = truncate_text(docs[i].text.strip(), min(max_doc_chars, budget))
        if not text:
            continue
        out.append(dataclasses.replace(docs[i], text=text))
        budget -= len(text)
    return out
