"""The LLM explainer (delphi's recipe): highlighted examples in, one `[EXPLANATION]:` line out.

Tokens at >= 0.3 × the example's max are marked <<like this>> (runs of marked tokens are
marked together); after each example a few (token, activation) pairs follow, activations
scaled 0-10 by the feature's max. Temperature 0. An answer without a parsable
`[EXPLANATION]:` line is stored as NULL with the error, never as placeholder text.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from core.explain.clients import ChatBackend, Messages
from core.explain.windows import Example

PROMPT_VERSION = "delphi-v1"
HIGHLIGHT_FRAC = 0.3
N_PAIRS = 3
"""(token, activation) pairs listed per example."""

SYSTEM = """You are a meticulous interpretability researcher. You study one hidden feature of a \
language model by reading text excerpts where it is active.

In each excerpt the tokens where the feature is active are marked like <<this>>; consecutive \
active tokens are marked together <<like this>>. After each excerpt some marked tokens are listed \
with the feature's activation on them, from 0 to 10 (10 = its strongest activation).

Find what the excerpts have in common that makes the feature fire: the marked tokens, their \
context, or both.
- Give one concise description, a short phrase or a sentence. Do not list alternatives.
- Do not mention the << >> markers.
- You may reason briefly first, but the last line of your answer must be:
[EXPLANATION]: <your description>"""

_EXPLANATION = re.compile(r"\[EXPLANATION\]\s*:\s*(.*)", re.IGNORECASE)


class ParseError(ValueError):
    """An answer without a usable `[EXPLANATION]:` line."""


def highlight(ex: Example, frac: float = HIGHLIGHT_FRAC, marks: np.ndarray | None = None) -> str:
    """The window's text with tokens at >= frac × its max (or the given marks) as <<tokens>>."""
    if marks is None:
        top = float(ex.acts.max()) if len(ex.acts) else 0.0
        marks = (ex.acts >= frac * top) & (ex.acts > 0)
    out, inside = [], False
    for tok, on in zip(ex.tokens, marks, strict=True):
        if on and not inside:
            out.append("<<")
        elif not on and inside:
            out.append(">>")
        out.append(tok)
        inside = bool(on)
    if inside:
        out.append(">>")
    return "".join(out)


def activation_pairs(ex: Example, feature_max: float, n: int = N_PAIRS) -> str:
    """'(" Paris", 10), (" Lyon", 6)': the n strongest tokens, scaled 0-10 by feature_max."""
    order = np.argsort(-ex.acts, kind="stable")[:n]
    pairs = [
        (ex.tokens[i], round(10 * float(ex.acts[i]) / feature_max)) for i in order if ex.acts[i] > 0
    ]
    return ", ".join(f"({json.dumps(t, ensure_ascii=False)}, {v})" for t, v in pairs)


def explainer_prompt(examples: list[Example]) -> Messages:
    fmax = max((float(e.acts.max()) for e in examples if len(e.acts)), default=0.0) or 1.0
    blocks = [
        f"Example {i}: {highlight(ex)}\nActivations: {activation_pairs(ex, fmax)}"
        for i, ex in enumerate(examples, 1)
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(blocks)}]


def parse_explanation(answer: str) -> str:
    """The text of the last `[EXPLANATION]:` line; ParseError when missing or empty."""
    found = _EXPLANATION.findall(answer or "")
    if not found:
        raise ParseError(f"no [EXPLANATION]: line in the answer: {answer[:200]!r}")
    text = found[-1].strip().strip("\"'`*").strip()
    if not text:
        raise ParseError("empty [EXPLANATION]: line")
    return text


def explain(
    backend: ChatBackend, examples: dict[int, list[Example]], features: list[int], max_tokens: int
) -> pd.DataFrame:
    """(feature, explanation, error, detail) for `features`; all prompts go to the back-end
    at once so that it can batch or run them concurrently."""
    asked = [f for f in features if examples.get(f)]
    answers = backend.complete([explainer_prompt(examples[f]) for f in asked], max_tokens)
    rows = {f: _row(f, c.text, c.error, c.attempts) for f, c in zip(asked, answers, strict=True)}
    for f in features:
        rows.setdefault(
            f,
            {
                "feature": f,
                "explanation": None,
                "error": "never fires in the corpus",
                "detail": None,
            },
        )
    return pd.DataFrame(
        [rows[f] for f in features], columns=["feature", "explanation", "error", "detail"]
    )


def _row(feature: int, text: str | None, error: str | None, attempts: int) -> dict[str, object]:
    detail: dict[str, object] = {"attempts": attempts}
    explanation = None
    if text is not None:
        try:
            explanation = parse_explanation(text)
        except ParseError as e:
            error = str(e)
            detail["answer"] = text[-500:]
    return {
        "feature": feature,
        "explanation": explanation,
        "error": error,
        "detail": json.dumps(detail),
    }
