"""Characters that the default model's byte-level tokenizer splits across tokens show whole in
example windows; the stored token strings and each token's activation are left as they are."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from core import render

SPAN = re.compile(r'<span class="tok" style="([^"]*)" title="([^"]*)">(.*?)</span>')
SPLIT = ["Œuvre", "dʒʊəˈlɪəs", "/ˈdʒæŋɡoʊ/", "naïve café 😀", "日本語"]


@pytest.fixture(scope="module")
def tok() -> Any:
    from transformers import AutoTokenizer

    from core.model.loading import _dequantised_default

    return AutoTokenizer.from_pretrained(_dequantised_default())  # the cached default, offline


def _window(tok: Any, text: str) -> tuple[list[int], list[str]]:
    """Token ids and their stored strings (each id decoded alone, as the corpus stage does)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids, [str(tok.decode([i])) for i in ids]


def _spans(markup: str) -> list[tuple[str, str, str]]:
    return [(s, html.unescape(t), html.unescape(x)) for s, t, x in SPAN.findall(markup)]


@pytest.mark.parametrize("text", SPLIT)
def test_split_characters_show_whole(tok: Any, text: str) -> None:
    ids, stored = _window(tok, text)
    assert any("\ufffd" in s for s in stored)  # what the page showed before: "��uvre"
    acts = [0.5 + i for i in range(len(ids))]
    markup = render.token_window(stored, acts, None, 10.0, render.token_bytes(tok, ids))
    shown = "".join(x for _, _, x in _spans(markup))
    assert shown == text
    assert "\ufffd" not in shown


def test_oeuvre_merges_two_tokens_keeping_each_activation(tok: Any) -> None:
    ids, stored = _window(tok, "Œuvre")
    assert stored == ["\ufffd", "\ufffd", "uvre"]
    acts = [0.25, 2.0, 1.0]
    markup = render.token_window(stored, acts, 1, 4.0, render.token_bytes(tok, ids))
    spans = _spans(markup)
    assert [x for _, _, x in spans] == ["Œ", "uvre"]
    style, title, _ = spans[0]
    assert title == "act 2.000 (2 tokens: 0.250, 2.000)"  # max of the parts, each on hover
    assert "rgba(234,88,12,0.50)" in style and "outline" in style  # 2.0 / 4.0; holds the center
    assert spans[1][1] == "act 1.000" and "outline" not in spans[1][0]
    assert stored == ["\ufffd", "\ufffd", "uvre"] and acts == [0.25, 2.0, 1.0]  # inputs untouched


def test_ipa_merges_each_character(tok: Any) -> None:
    ids, stored = _window(tok, "dʒʊəˈlɪəs")
    spans = render.merge_split_chars(stored, render.token_bytes(tok, ids))
    assert [s.text for s in spans] == ["d", "ʒ", "ʊ", "ə", "ˈ", "l", "ɪ", "ə", "s"]
    assert [(s.start, s.stop) for s in spans][:3] == [(0, 1), (1, 3), (3, 5)]


def test_a_character_cut_by_the_window_edge_stays_a_replacement(tok: Any) -> None:
    ids, stored = _window(tok, "Œuvre")
    spans = render.merge_split_chars(stored[:1], render.token_bytes(tok, ids[:1]))
    assert [s.text for s in spans] == ["\ufffd"]


def test_without_bytes_each_token_stands_alone() -> None:
    markup = render.token_window(["\ufffd", "\ufffd", "uvre"], [0.1, 0.2, 0.3], 2, 1.0)
    assert [x for _, _, x in _spans(markup)] == ["\ufffd", "\ufffd", "uvre"]
    windows = [(["a", "<b>"], [0.0, 1.0], 1, 1.0)]
    assert [x for _, _, x in _spans(render.example_list(windows, 1.0))] == ["a", "<b>"]


def test_piece_bytes_reads_both_byte_conventions() -> None:
    assert render.piece_bytes("ĠÅ") == b" \xc5"
    assert render.piece_bytes("<0xC5>", byte_level=False) == b"\xc5"
    assert render.piece_bytes("\u2581caf\u00e9", byte_level=False) == " café".encode()
    assert render.piece_bytes(None) is None


def test_stored_windows_of_the_tiny_atlas_show_whole_characters(tok: Any, tiny_atlas: Any) -> None:
    """Every stored example window holding U+FFFD, with its token ids read from the tokens
    table: once merged, a replacement character is left only where the window's edge cuts one."""
    import duckdb

    with duckdb.connect(str(tiny_atlas), read_only=True) as con:
        rows = con.execute(
            "SELECT e.tokens, (SELECT list(t.token_id ORDER BY t.pos) FROM tokens t "
            "WHERE t.doc_id = e.doc_id AND t.pos BETWEEN e.pos - e.center "
            "AND e.pos - e.center + len(e.tokens) - 1) FROM examples e "
            "WHERE list_contains(e.tokens, chr(65533))"
        ).fetchall()
    assert rows  # the default corpus mixes French, Spanish and IPA: split characters occur
    changed = 0
    for tokens, ids in rows:
        spans = render.merge_split_chars(tokens, render.token_bytes(tok, ids))
        changed += "".join(s.text for s in spans) != "".join(tokens)
        inner = spans[1:-1]
        assert not any("\ufffd" in s.text for s in inner), [s.text for s in spans]
        assert [(s.start, s.stop) for s in spans] == sorted((s.start, s.stop) for s in spans)
        assert spans[-1].stop == len(tokens)
    assert changed > len(rows) / 2  # most split characters lie inside their window
