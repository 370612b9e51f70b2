"""A planted atlas: a small word-level corpus of three kinds of text, one SAE whose features
fire where we put them, written as a real atlas (DuckDB + Parquet side files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.store.atlas import AtlasWriter

SAE = "L0/resid_post"
D_SAE = 8
CITIES = [
    "Paris est la capitale de la France et sa plus grande ville .",
    "Lyon est une grande ville française sur le Rhône .",
    "Marseille est un port ancien sur la mer Méditerranée .",
    "Toulouse et Bordeaux sont des villes du sud-ouest de la France .",
    "Lille est une ville du nord , près de la Belgique .",
    "Nice se trouve sur la Côte d'Azur , près de Monaco .",
]
ANIMALS = [
    "The lion hunts zebras and antelopes on the savanna .",
    "Dolphins are intelligent marine mammals that live in pods .",
    "The eagle builds its nest on high mountain cliffs .",
    "Elephants live in family herds led by the oldest female .",
    "A red fox ran across the snowy field at dawn .",
    "Penguins cannot fly but they swim very fast .",
]
CODE = [
    "def main ( args ) : return sorted ( items , key = len )",
    "import os , sys , json",
    "for i in range ( 10 ) : print ( i )",
    "class Parser ( object ) : def __init__ ( self ) : self . value = None",
    "with open ( path ) as f : data = json . load ( f )",
    "if x is None : raise ValueError ( ' missing ' )",
]
KINDS = [
    ("wiki_fr", "fr", "cities", CITIES),
    ("wiki_en", "en", "animals", ANIMALS),
    ("python_stdlib", "code", "json", CODE),
]
F_PARIS, F_FRENCH, F_DEF, F_DEAD, F_RANDOM = 0, 1, 2, 3, 4
"""Planted features: the word 'Paris'; every 3rd token of French text; 'def'; never; random."""


def corpus(n_docs_per_kind: int = 8, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(documents, tokens): word-level tokens ' word', 80-110 tokens per document."""
    rng = np.random.default_rng(seed)
    docs, toks, vocab = [], [], {}
    for kind_i, (source, lang, topic, sentences) in enumerate(KINDS):
        for j in range(n_docs_per_kind):
            doc_id = kind_i * n_docs_per_kind + j
            words: list[str] = []
            while len(words) < 80 + (j * 7) % 30:
                words += sentences[rng.integers(len(sentences))].split()
            docs.append(
                {
                    "doc_id": doc_id,
                    "source": source,
                    "topic": topic,
                    "language": lang,
                    "licence": "test",
                    "title": f"{topic} {j}",
                    "n_tokens": len(words),
                }
            )
            for pos, w in enumerate(words):
                toks.append(
                    {
                        "doc_id": doc_id,
                        "pos": pos,
                        "token_id": vocab.setdefault(w, len(vocab)),
                        "token_str": " " + w,
                    }
                )
    return pd.DataFrame(docs), pd.DataFrame(toks)


def activations(docs: pd.DataFrame, tokens: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lang = tokens["doc_id"].map(docs.set_index("doc_id")["language"])
    word = tokens["token_str"].str.strip()
    planted = {
        F_PARIS: (word == "Paris").to_numpy(),
        F_FRENCH: ((lang == "fr") & (tokens["pos"] % 3 == 0)).to_numpy(),
        F_DEF: (word == "def").to_numpy(),
        F_RANDOM: rng.random(len(tokens)) < 0.05,
    }
    for f in range(F_RANDOM + 1, D_SAE):
        planted[f] = rng.random(len(tokens)) < 0.03
    frames = []
    for f, mask in planted.items():
        idx = np.flatnonzero(mask)
        frames.append(
            pd.DataFrame(
                {
                    "sae_id": SAE,
                    "doc_id": tokens["doc_id"].to_numpy()[idx].astype(np.int32),
                    "pos": tokens["pos"].to_numpy()[idx].astype(np.int32),
                    "feature": np.int32(f),
                    "act": (1.0 + 4.0 * rng.random(len(idx))).astype(np.float32),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_atlas(path: Path) -> Path:
    """A committed atlas at `path` with side files in path.parent / 'acts-test'."""
    docs, tokens = corpus()
    acts = activations(docs, tokens)
    side = path.parent / "acts-test" / "L0_resid_post"
    side.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(acts, preserve_index=False), side / "part-0.parquet")
    w = AtlasWriter(path)
    w.replace_rows("documents", docs)
    w.replace_rows("tokens", tokens)
    w.con.execute("INSERT INTO runs VALUES ('run-test', now(), '{}', '{}', '{}', 'acts-test', 1)")
    n_fire = acts.groupby("feature").size().reindex(range(D_SAE), fill_value=0)
    w.replace_rows(
        "features",
        pd.DataFrame(
            {
                "sae_id": SAE,
                "feature": np.arange(D_SAE, dtype=np.int32),
                "n_fire": n_fire.to_numpy(),
                "density": n_fire.to_numpy() / len(tokens),
                "max_act": 5.0,
                "mean_act": 3.0,
                "top_tokens": [[" planted"]] * D_SAE,
            }
        ),
    )
    w.con.execute(
        "INSERT INTO saes (sae_id, layer, site, architecture, d_in, d_sae, k, source) "
        "VALUES (?, 0, 'resid_post', 'topk', 16, ?, 2, 'planted')",
        [SAE, D_SAE],
    )
    nb = [(f, r + 1, (f + r + 1) % D_SAE) for f in range(D_SAE) for r in range(3)]
    nb += [(F_PARIS, 4, F_FRENCH)]
    w.replace_rows(
        "neighbours",
        pd.DataFrame(
            [
                {"sae_id": SAE, "feature": f, "rank": r, "neighbour": n, "cosine": 0.5}
                for f, r, n in nb
            ]
        ),
    )
    return w.commit()
