"""Example sampling as in delphi: fixed 32-token windows, quantile-spread explainer examples,
held-out activating windows and non-activating (random and neighbour) windows for scoring."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from core.explain.config import ExplainConfig
from core.store import explain_sql as sql

ROLES = ("train", "test", "random", "hard")
"""train: explainer examples; test: held-out activating; random / hard: non-activating."""


@dataclass
class Example:
    """One window as shown to an explainer or scorer."""

    tokens: list[str]
    acts: np.ndarray  # (T,) the feature's activation on each token, 0 where it does not fire

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass
class Samples:
    """Sampled windows of one SAE's features: rows (feature, window, role, quantile, act)."""

    sae_id: str
    frame: pd.DataFrame
    _by_role: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def role(self, role: str) -> pd.DataFrame:
        if role not in self._by_role:
            self._by_role[role] = self.frame[self.frame["role"] == role]
        return self._by_role[role]

    def windows(self, feature: int, role: str) -> np.ndarray:
        df = self.role(role)
        return df.loc[df["feature"] == feature, "win"].to_numpy()

    def scoring_windows(self) -> np.ndarray:
        """Distinct windows needed by the embedding score (held-out and non-activating)."""
        mask = self.frame["role"].isin(["test", "random", "hard"])
        return np.unique(self.frame.loc[mask, "win"].to_numpy())


def define(con: duckdb.DuckDBPyConnection, cfg: ExplainConfig) -> int:
    """Create the corpus windows (temp tables); return how many there are."""
    return sql.define_windows(con, cfg.window)


def sample(
    con: duckdb.DuckDBPyConnection, sae_id: str, features: list[int], cfg: ExplainConfig
) -> Samples:
    """Sample every role for `features` of `sae_id` (needs `define` first and the
    `activations` view). Sampling is deterministic given cfg.seed."""
    sql.set_features(con, features)
    sql.window_maxes(con, sae_id, cfg.window)
    sql.sample_activating(con, cfg.n_quantiles, cfg.n_train, cfg.n_test, cfg.seed)
    frames = [
        sql.activating_samples(con),
        sql.sample_random(con, cfg.random_pool, cfg.n_random, cfg.seed),
        sql.sample_hard(con, sae_id, cfg.hard_neighbours, cfg.n_hard, cfg.seed),
    ]
    frame = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else frames[0]
    )
    order = frame["role"].map({r: i for i, r in enumerate(ROLES)})
    frame = frame.assign(_o=order).sort_values(["feature", "_o", "quantile", "win"])
    return Samples(sae_id, frame.drop(columns="_o").reset_index(drop=True))


def window_texts(
    con: duckdb.DuckDBPyConnection, cfg: ExplainConfig, windows: np.ndarray
) -> dict[int, str]:
    df = sql.window_texts(con, cfg.window, windows)
    return dict(zip(df["win"].astype(int), df["text"], strict=True))


def examples(
    con: duckdb.DuckDBPyConnection, samples: Samples, cfg: ExplainConfig, roles: tuple[str, ...]
) -> dict[tuple[int, str], list[Example]]:
    """Token windows with the feature's per-token activations, keyed by (feature, role),
    in sample order (train examples from the strongest quantile down)."""
    pairs = samples.frame[samples.frame["role"].isin(roles)]
    if pairs.empty:
        return {}
    toks = sql.window_tokens(con, samples.sae_id, cfg.window, pairs)
    merged = pairs.merge(toks, on=["feature", "win"], how="left")
    out: dict[tuple[int, str], list[Example]] = {}
    for row in merged.itertuples(index=False):
        ex = Example(list(row.tokens), np.asarray(row.acts, dtype=np.float32))
        out.setdefault((int(row.feature), str(row.role)), []).append(ex)
    return out
