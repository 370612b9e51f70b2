"""The offline explainer: what a feature fires on, read off corpus statistics, no LLM.

Names the tokens and n-grams (ending at the firing token) with the highest lift among the
feature's firing positions against the whole corpus (ranked by share × ln(lift), so a token
must be both typical and specific), and the source/topic mix of the firing documents. The
label starts with MARKER so that nobody mistakes it for an LLM's explanation; what gets
embedded (for scores and search) is the same content as plain words, without the marker
and without the source unless it holds half of the firing positions (keeps the text short).
"""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd

from core.explain.config import ExplainConfig
from core.store import explain_sql as sql

EXPLAINER = "statistical"
MODEL = "corpus-lift"
PROMPT_VERSION = "stat-v1"
MARKER = "[statistical]"
NGRAM_GAIN = 1.5
"""An n-gram is named only if its lift beats its last token's (when that token is named) by this."""
LANGUAGES = {
    "en": "English text",
    "fr": "French text",
    "es": "Spanish text",
    "de": "German text",
    "code": "source code",
}


def explain(
    con: duckdb.DuckDBPyConnection,
    sae_id: str,
    features: list[int],
    cfg: ExplainConfig,
    corpus: pd.DataFrame,
) -> pd.DataFrame:
    """(feature, explanation, error, detail) for `features` (already in xfeat).

    corpus: `explain_sql.corpus_mix` (computed once per atlas).
    """
    grams = _named_grams(sql.gram_lifts(con, sae_id, top=2 * max(cfg.n_tokens, cfg.n_ngrams)), cfg)
    contexts = _contexts(sql.doc_mix(con, sae_id), corpus)
    rows = []
    for f in features:
        if f not in contexts:
            rows.append(
                {
                    "feature": f,
                    "explanation": None,
                    "error": "never fires in the corpus",
                    "detail": None,
                }
            )
            continue
        tokens, ngrams = grams.get(f, ([], []))
        text, words, detail = contexts[f]
        parts = [", ".join(_quote(g[0]) for g in tokens) or "no distinctive token"]
        if ngrams:
            parts.append(", ".join(_quote(g[0]) for g in ngrams))
        parts.append(text)
        plain = [g[0].strip() for g in tokens + ngrams if g[0].strip()]
        rows.append(
            {
                "feature": f,
                "explanation": f"{MARKER} " + " · ".join(parts),
                "error": None,
                "embed_text": "; ".join(t for t in (", ".join(plain), words) if t),
                "detail": json.dumps({**detail, "tokens": tokens, "ngrams": ngrams}),
            }
        )
    return pd.DataFrame(rows, columns=["feature", "explanation", "error", "embed_text", "detail"])


Gram = tuple[str, int, float]
"""(display string, count among firing positions, lift)."""


def _named_grams(
    lifts: pd.DataFrame, cfg: ExplainConfig
) -> dict[int, tuple[list[Gram], list[Gram]]]:
    """feature -> (tokens, n-grams) to name, best first; an n-gram only when it says more than
    its last token alone (its lift beats that named token's by NGRAM_GAIN)."""
    lifts = lifts.assign(score=lifts["c"] / lifts["n_fire"] * np.log(lifts["lift"]))
    lifts = lifts.sort_values(["feature", "n", "score", "s"], ascending=[True, True, False, True])
    out: dict[int, tuple[list[Gram], list[Gram]]] = {}
    for f, n, s, c, lift in lifts[["feature", "n", "s", "c", "lift"]].itertuples(index=False):
        tokens, ngrams = out.setdefault(int(f), ([], []))
        gram = (str(s), int(c), round(float(lift), 2))
        if n == 1 and len(tokens) < cfg.n_tokens:
            tokens.append(gram)
        elif (
            n > 1
            and len(ngrams) < cfg.n_ngrams
            and not any(gram[0].endswith(t) and lift < NGRAM_GAIN * tl for t, _, tl in tokens)
        ):
            ngrams.append(gram)
    for _, ngrams in out.values():  # 2- and 3-grams were ranked separately
        ngrams.sort(key=lambda g: -g[1] * math.log(max(g[2], 1.0)))
    return out


def _shares(mix: pd.DataFrame, col: str) -> pd.DataFrame:
    """(feature, col, share) sorted by feature and share, largest first."""
    df = mix.groupby(["feature", col], as_index=False)["c"].sum()
    df["share"] = df["c"] / df.groupby("feature")["c"].transform("sum")
    return df.sort_values(["feature", "share", col], ascending=[True, False, True])


def _contexts(
    mix: pd.DataFrame, corpus: pd.DataFrame
) -> dict[int, tuple[str, str, dict[str, object]]]:
    """feature -> ('French text (wiki_fr 92%) · topic geography', its meaningful words for
    the embedding, detail) from the documents of its firing positions: language if one has
    half of them, the top source, and the top topic when it holds a quarter of them and twice
    its corpus share."""
    src, lang = _shares(mix, "source"), _shares(mix, "language")
    topic = _shares(mix[mix["topic"] != ""], "topic")
    ctopic = (corpus.groupby("topic")["c"].sum() / corpus["c"].sum()).to_dict()
    n_fire = mix.groupby("feature")["c"].sum().to_dict()
    top_lang = lang.drop_duplicates("feature").set_index("feature")
    top_topic = topic.drop_duplicates("feature").set_index("feature")
    srcs = _head_dicts(src, "source", 4)
    topics = _head_dicts(topic, "topic", 3)
    out = {}
    for f, (name, share) in (
        src.drop_duplicates("feature").set_index("feature")[["source", "share"]].iterrows()
    ):
        text, words = f"in {name} {100 * share:.0f}%", [str(name)] if share >= 0.5 else []
        if (
            f in top_lang.index
            and top_lang.at[f, "share"] >= 0.5
            and top_lang.at[f, "language"] in LANGUAGES
        ):
            lang_name = LANGUAGES[top_lang.at[f, "language"]]
            text = f"{lang_name} ({name} {100 * share:.0f}%)"
            words.insert(0, lang_name)
        if f in top_topic.index:
            t, ts = top_topic.at[f, "topic"], top_topic.at[f, "share"]
            if ts >= 0.25 and ts >= 2 * ctopic.get(t, 1.0):
                text += f" · topic {t}"
                words.append(str(t))
        out[int(f)] = (
            text,
            ", ".join(words),
            {"n_fire": int(n_fire[f]), "sources": srcs.get(f, {}), "topics": topics.get(f, {})},
        )
    return out


def _head_dicts(df: pd.DataFrame, col: str, n: int) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for f, k, share in (
        df.groupby("feature").head(n)[["feature", col, "share"]].itertuples(index=False)
    ):
        out.setdefault(int(f), {})[str(k)] = round(float(share), 3)
    return out


def _quote(s: str) -> str:
    return '"' + s.replace("\n", "\\n").replace("\t", "\\t").replace('"', "'") + '"'
