"""User text (set names, search queries, URL parameter values) inside markdown, as plain text.

Streamlit renders markdown in st.markdown / st.caption / st.error / st.success and in widget
labels. A set name like `![i](http://host/x.png)` would become an image that every visitor's
browser fetches (the workspace is shared), so every page passes user text through `plain`
(or `code` inside backticks) before it meets markdown.
"""

from __future__ import annotations

import re

LIMIT = 200
"""Longest user text shown; longer text is cut with an ellipsis."""

_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")  # newlines and other control characters


def _one_line(text: object, limit: int) -> str:
    s = _BREAKS.sub(" ", str(text))
    return s if len(s) <= limit else s[:limit] + "…"


def plain(text: object, limit: int = LIMIT) -> str:
    """`text` for a markdown context, shown literally: one line, every ASCII punctuation
    backslash-escaped (CommonMark), so no link, image, emphasis, HTML tag, entity, `:color[…]`
    directive or `$math$` can form."""
    return _PUNCT.sub(r"\\\1", _one_line(text, limit))


def code(text: object, limit: int = 60) -> str:
    """`text` as an inline code span (backslashes are literal there, so no escaping: the span
    cannot be closed early because backticks become quotes)."""
    return "`" + _one_line(text, limit).replace("`", "'") + "`"
