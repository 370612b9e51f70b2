"""Corpora: the embedded offline default mix and the user's own text."""

from core.corpus.documents import (
    DEFAULT_MAX_DOC_CHARS,
    CorpusError,
    Document,
    group_by_source,
    sample_mix,
    truncate_text,
    with_ids,
)
from core.corpus.loading import load_corpus, load_hf_dataset
from core.corpus.sources import (
    DEFAULT_WEIGHTS,
    SourceFetchError,
    default_corpus,
    default_sources,
    strip_wiki_markup,
)

__all__ = [
    "DEFAULT_MAX_DOC_CHARS",
    "DEFAULT_WEIGHTS",
    "CorpusError",
    "Document",
    "SourceFetchError",
    "default_corpus",
    "default_sources",
    "group_by_source",
    "load_corpus",
    "load_hf_dataset",
    "sample_mix",
    "strip_wiki_markup",
    "truncate_text",
    "with_ids",
]
