"""HTML for feature examples: token windows highlighted by activation, value on hover.

Token strings come from arbitrary corpora and explanations from LLMs, so every piece of text
is `html.escape`d here before it reaches the page; callers never build HTML themselves.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

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


def token_span(text: str, act: float, scale: float, center: bool = False) -> str:
    """One token; background opacity = act / scale; title shows the activation."""
    alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, float(act) / scale))
    r, g, b = HIGHLIGHT_RGB
    style = f"background: rgba({r},{g},{b},{alpha:.2f}); border-radius: 3px;"
    if center:
        style += " outline: 1px solid rgb(154,52,18);"
    title = f"act {float(act):.3f}"
    return (
        f'<span class="tok" style="{style}" title="{html.escape(title)}">'
        f"{html.escape(visible_token(text))}</span>"
    )


def token_window(
    tokens: Sequence[str], acts: Sequence[float], center: int | None, scale: float
) -> str:
    """A <div> of highlighted tokens; `center` (index into tokens) is the example's token."""
    spans = [
        token_span(t, a, scale, i == center)
        for i, (t, a) in enumerate(zip(tokens, acts, strict=False))
    ]
    return f'<div class="window" style="{WINDOW_CSS}">{"".join(spans)}</div>'


def example_list(
    windows: Sequence[tuple[Sequence[str], Sequence[float], int | None, float]],
    scale: float,
    caption: str = "",
) -> str:
    """Several windows under one optional caption; each row is labelled with its activation."""
    rows = []
    for tokens, acts, center, act in windows:
        label = f'<span style="color:#6b7280;font-size:0.75rem;">{act:.3f}</span>'
        rows.append(
            f'<div style="display:flex;gap:8px;align-items:baseline;">{label}'
            f"{token_window(tokens, acts, center, scale)}</div>"
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
