"""HTML for feature examples: token windows highlighted by activation, value on hover.

Token strings come from arbitrary corpora and explanations from LLMs, so every piece of text
is `html.escape`d here before it reaches the page; callers never build HTML themselves.

A character that a byte-level tokenizer split over several tokens ("Œ" = C5 92 → 'Å' + 'Ĵ')
decodes one token at a time to U+FFFD, so the stored token strings show "��". For display,
such runs are merged into one span (as Neuronpedia and SAEDashboard do) from the tokens' bytes:
the span shows the character, the max of its parts' activations, and each part's on hover.
The stored tokens and their activations are never changed.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

HIGHLIGHT_RGB = (234, 88, 12)
"""Orange, the usual colour of feature activations on Neuronpedia / SAEDashboard."""

WINDOW_CSS = (
    "font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.82rem; "
    "line-height: 1.9; white-space: pre-wrap; word-break: break-word; padding: 4px 8px; "
    "border-left: 3px solid #e5e7eb; margin: 2px 0;"
)


def visible_token(text: str) -> str:
    """Make whitespace-only structure visible: newlines as ↵, tabs as →."""
    return text.replace("\r", "").replace("\n", "↵").replace("\t", "→")


@cache
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character standing for each byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = (b for b in range(256) if b not in printable)
    for n, b in enumerate(extra):
        printable.append(b)
        chars.append(256 + n)
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def piece_bytes(piece: str | None, byte_level: bool = True) -> bytes | None:
    """The bytes a raw vocabulary piece (`tokenizer.convert_ids_to_tokens`) stands for: GPT-2
    byte-level pieces ('ĠÅ' → b' \\xc5') or SentencePiece byte fallback ('<0xC5>'); None for a
    piece that is neither (a special token), which then shows its stored string."""
    if piece is None:
        return None
    m = _BYTE_FALLBACK.fullmatch(piece)
    if m:
        return bytes([int(m.group(1), 16)])
    if not byte_level:
        return piece.replace("\u2581", " ").encode("utf-8")
    alphabet = _byte_alphabet()
    if not piece or any(c not in alphabet for c in piece):
        return None
    return bytes(alphabet[c] for c in piece)


def token_bytes(tokenizer: Any, ids: Sequence[int]) -> list[bytes | None]:
    """Each token id's bytes under a Hugging Face tokenizer, for `token_window(raw=...)`."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    byte_level = decoder is None or "ByteLevel" in repr(decoder)
    pieces = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    return [piece_bytes(p, byte_level) for p in pieces]


@dataclass(frozen=True)
class Span:
    """What one displayed span stands for: tokens [start, stop) of the window."""

    text: str
    start: int
    stop: int


def merge_split_chars(tokens: Sequence[str], raw: Sequence[bytes | None] | None) -> list[Span]:
    """Group tokens so that no UTF-8 character is split: a token whose bytes end inside a
    character takes the following tokens until the character completes (Neuronpedia's display
    rule). Without bytes (`raw` None), or for a token without them, each token stands alone."""
    n = len(tokens)
    spans, i = [], 0
    while i < n:
        if raw is None or i >= len(raw) or raw[i] is None:
            spans.append(Span(tokens[i], i, i + 1))
            i += 1
            continue
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, j = dec.decode(raw[i] or b""), i + 1
        while dec.getstate()[0] and j < min(n, len(raw)) and raw[j] is not None:
            text, j = text + dec.decode(raw[j] or b""), j + 1
        if j == i + 1:
            text = tokens[i]  # a whole token: its stored string, as before
        else:
            text += dec.decode(b"", final=True)
        spans.append(Span(text, i, j))
        i = j
    return spans


def token_span(
    text: str, act: float, scale: float, center: bool = False, parts: Sequence[float] = ()
) -> str:
    """One token (or the merged parts of a split character); background opacity = act / scale;
    the title shows the activation, and each part's when there are several."""
    alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, float(act) / scale))
    r, g, b = HIGHLIGHT_RGB
    style = f"background: rgba({r},{g},{b},{alpha:.2f}); border-radius: 3px;"
    if center:
        style += " outline: 1px solid rgb(154,52,18);"
    title = f"act {float(act):.3f}"
    if len(parts) > 1:
        title += f" ({len(parts)} tokens: " + ", ".join(f"{float(p):.3f}" for p in parts) + ")"
    return (
        f'<span class="tok" style="{style}" title="{html.escape(title)}">'
        f"{html.escape(visible_token(text))}</span>"
    )


def token_window(
    tokens: Sequence[str],
    acts: Sequence[float],
    center: int | None,
    scale: float,
    raw: Sequence[bytes | None] | None = None,
) -> str:
    """A <div> of highlighted tokens; `center` (index into tokens) is the example's token.

    raw: each token's bytes (`piece_bytes`), to merge characters split across tokens; a merged
    span shows the max activation of its parts and is the center if any part is.
    """
    n = min(len(tokens), len(acts))
    html_spans = []
    for sp in merge_split_chars(list(tokens[:n]), raw):
        parts = [float(a) for a in acts[sp.start : sp.stop]]
        is_center = center is not None and sp.start <= center < sp.stop
        html_spans.append(token_span(sp.text, max(parts), scale, is_center, parts))
    return f'<div class="window" style="{WINDOW_CSS}">{"".join(html_spans)}</div>'


Window = (
    tuple[Sequence[str], Sequence[float], int | None, float]
    | tuple[Sequence[str], Sequence[float], int | None, float, Sequence[bytes | None] | None]
)
"""(tokens, acts, center, act) or with each token's bytes as a fifth item (see token_window)."""


def example_list(windows: Sequence[Window], scale: float, caption: str = "") -> str:
    """Several windows under one optional caption; each row is labelled with its activation."""
    rows = []
    for tokens, acts, center, act, *raw in windows:
        label = f'<span style="color:#6b7280;font-size:0.75rem;">{act:.3f}</span>'
        window = token_window(tokens, acts, center, scale, raw[0] if raw else None)
        rows.append(
            f'<div style="display:flex;gap:8px;align-items:baseline;">{label}{window}</div>'
        )
    head = (
        f'<div style="color:#6b7280;font-size:0.8rem;">{html.escape(caption)}</div>'
        if caption
        else ""
    )
    return head + "".join(rows)


def token_chips(
    tokens: Sequence[str],
    values: Sequence[float] | None = None,
    rgb: tuple[int, int, int] = (37, 99, 235),
    show_values: bool = False,
) -> str:
    """Inline chips for a list of tokens (top tokens, logit tokens); values on hover or shown."""
    r, g, b = rgb
    chips = []
    for i, tok in enumerate(tokens):
        value = None if values is None else float(values[i])
        title = "" if value is None else f' title="{value:.3f}"'
        shown = (
            f' <span style="color:#6b7280;">{value:+.2f}</span>'
            if show_values and value is not None
            else ""
        )
        chips.append(
            f'<span class="chip" style="background:rgba({r},{g},{b},0.12);'
            f"border-radius:4px;padding:1px 5px;margin:2px;display:inline-block;"
            f'font-family:ui-monospace,monospace;font-size:0.8rem;white-space:pre;"{title}>'
            f"{html.escape(visible_token(tok))}{shown}</span>"
        )
    return f'<div style="line-height:1.9;">{"".join(chips)}</div>'


def text_block(text: str) -> str:
    """Escaped free text (an explanation) as a paragraph."""
    return f'<p style="font-size:1.05rem;margin:0.2rem 0;">{html.escape(text)}</p>'


def plot_text(text: str) -> str:
    """Text for a plotly label or hover (plotly renders a subset of HTML in both), escaped."""
    return html.escape(text)


def feature_label(
    sae_id: str | None,
    feature: int,
    explanation: object = None,
    top_tokens: object = None,
    *,
    note: str = "",
    details: Sequence[str] = (),
    max_chars: int = 90,
    n_tokens: int = 5,
) -> str:
    """Hover label of one feature for a plotly chart, one line each: the key ('<b>sae · n</b>',
    or '#n' without an SAE) and `note`, the explanation, `details`, the top tokens.

    Every piece of text is escaped: explanations come from LLMs and tokens from the corpus.
    """
    head = f"<b>{html.escape(sae_id)} · {int(feature)}</b>" if sae_id else f"#{int(feature)}"
    lines = [head + html.escape(note)]
    if isinstance(explanation, str) and explanation:
        lines.append(html.escape(explanation[:max_chars]))
    lines += [html.escape(d) for d in details]
    # a list cell from DuckDB: a list or numpy array, None / NaN where the row is missing
    tops = list(top_tokens) if isinstance(top_tokens, Sequence | np.ndarray) else []
    if tops:
        lines.append("top: " + html.escape(", ".join(repr(str(t)) for t in tops[:n_tokens])))
    return "<br>".join(lines)
