"""The user's own corpus: .txt / .jsonl / .parquet files, folders of them, or a HF hub dataset.

Record fields besides "text" (all optional): "source" (default: the file stem, or for .txt the
name of the file or folder given), "topic", "language" (default "unknown"), "title", "licence".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from core.corpus.documents import CorpusError, Document, with_ids

Errors = Literal["strict", "replace"]
SUFFIXES = (".txt", ".jsonl", ".parquet")
OPTIONAL_FIELDS = ("source", "topic", "language", "title", "licence")
DEFAULT_LANGUAGE = "unknown"
DEFAULT_LICENCE = "unspecified (user corpus)"


def load_corpus(spec: str | Path, errors: Errors = "strict") -> list[Document]:
    """Documents of a user corpus, numbered doc_id 0..n-1; blank documents are dropped.

    `spec` is a path (.txt = one document per file, .jsonl, .parquet, or a folder of these,
    searched recursively in sorted order) or "hf:<dataset>[:split]" for a Hugging Face hub
    dataset with a "text" column. `errors="replace"` accepts non-UTF-8 bytes as U+FFFD instead
    of failing.
    """
    if errors not in ("strict", "replace"):
        raise CorpusError(f"errors must be 'strict' or 'replace', got {errors!r}")
    if isinstance(spec, str) and spec.startswith("hf:"):
        docs = load_hf_dataset(spec.removeprefix("hf:"))
    else:
        docs = _load_path(Path(spec), errors)
    docs = [doc for doc in docs if doc.text.strip()]
    if not docs:
        raise CorpusError(f"{spec}: empty corpus (no non-blank documents)")
    return with_ids(docs)


def _load_path(path: Path, errors: Errors) -> list[Document]:
    if not path.exists():
        raise CorpusError(f"{path}: corpus file or folder not found")
    if path.is_file():
        return _load_file(path, path.stem, errors)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise CorpusError(f"{path}: empty corpus (no {', '.join(SUFFIXES)} files in the folder)")
    return [doc for file in files for doc in _load_file(file, path.name, errors)]


def _load_file(path: Path, txt_source: str, errors: Errors) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        text = _decode(path.read_bytes(), path, errors)
        return [_document({"text": text}, txt_source, path.name)]
    if suffix == ".jsonl":
        return _load_jsonl(path, errors)
    if suffix == ".parquet":
        return _load_parquet(path, errors)
    raise CorpusError(f"{path}: unsupported corpus file type (use {', '.join(SUFFIXES)})")


def _decode(data: bytes, path: Path, errors: Errors, where: str = "") -> str:
    try:
        return data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}{where}: not valid UTF-8 at byte offset {exc.start} "
            f"(byte 0x{data[exc.start]:02x}); re-encode the file as UTF-8 or load it with "
            f"errors='replace' to accept replacement characters"
        ) from exc


def _load_jsonl(path: Path, errors: Errors) -> list[Document]:
    docs = []
    for number, line in enumerate(_decode(path.read_bytes(), path, errors).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
        docs.append(_checked_document(record, where, path.stem, f"{path.name}:{number}"))
    return docs


def _load_parquet(path: Path, errors: Errors) -> list[Document]:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise CorpusError(f"{path}: cannot read parquet file ({exc})") from exc
    if "text" not in table.column_names:
        raise CorpusError(f"{path}: no 'text' column (columns: {table.column_names})")
    columns = [c for c in ("text", *OPTIONAL_FIELDS) if c in table.column_names]
    docs = []
    for row, record in enumerate(table.select(columns).to_pylist()):
        where = f"{path}, row {row}"
        if isinstance(record.get("text"), bytes):  # binary column: decode it ourselves
            record["text"] = _decode(record["text"], path, errors, where=f", row {row}")
        docs.append(_checked_document(record, where, path.stem, f"{path.name}[{row}]"))
    return docs


def _checked_document(record: dict[str, Any], where: str, source: str, title: str) -> Document:
    if "text" not in record:
        raise CorpusError(f"{where}: missing 'text' field (fields: {sorted(record)})")
    for field in ("text", *OPTIONAL_FIELDS):
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            raise CorpusError(f"{where}: field '{field}' must be a string, got {value!r:.60}")
    if record["text"] is None:
        raise CorpusError(f"{where}: 'text' is null")
    return _document(record, source, title)


def _document(record: dict[str, Any], source: str, title: str) -> Document:
    return Document(
        text=record["text"],
        source=record.get("source") or source,
        language=record.get("language") or DEFAULT_LANGUAGE,
        licence=record.get("licence") or DEFAULT_LICENCE,
        title=record.get("title") or title,
        topic=record.get("topic") or None,
    )


def load_hf_dataset(spec: str) -> list[Document]:
    """Documents of a Hugging Face hub dataset "<name>[:split]" (default split "train")."""
    name, _, split = spec.partition(":")
    if not name:
        raise CorpusError("hf: corpus spec needs a dataset name, e.g. hf:stas/openwebtext-10k")
    try:
        import datasets  # lazy: optional dependency, needs network or a warm HF cache
    except ImportError as exc:
        raise CorpusError("hf: corpora need the `datasets` package: pip install datasets") from exc
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # offline, unknown dataset, bad split: all surface the same way
        raise CorpusError(f"hf:{spec}: could not load dataset ({exc})") from exc
    if "text" not in dataset.column_names:
        raise CorpusError(f"hf:{spec}: no 'text' column (columns: {dataset.column_names})")
    columns = [c for c in ("text", *OPTIONAL_FIELDS) if c in dataset.column_names]
    source = name.rsplit("/", 1)[-1]
    return [
        _checked_document(record, f"hf:{spec}, row {row}", source, f"{name}[{row}]")
        for row, record in enumerate(dataset.select_columns(columns))
    ]
