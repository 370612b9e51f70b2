"""Fixed windows and delphi-style sampling equal a brute-force computation on planted data."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from explain_planted import D_SAE, F_DEAD, F_FRENCH, F_PARIS, SAE

from core.explain import windows
from core.explain.config import ExplainConfig
from core.store import explain_sql as sql
from core.store.runs import define_activations_view

CFG = ExplainConfig(
    n_quantiles=3, n_train=6, n_test=3, n_random=4, n_hard=4, hard_neighbours=4, random_pool=20
)


@pytest.fixture()
def con(planted_atlas: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(str(planted_atlas))
    define_activations_view(c, planted_atlas.parent / "acts-test")
    windows.define(c, CFG)
    return c


def brute_maxes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """(feature, win, act) from plain pandas: windows numbered document by document."""
    tok = con.execute("SELECT doc_id, max(pos) + 1 AS n FROM tokens GROUP BY 1 ORDER BY 1").df()
    n_win = -(-tok["n"] // CFG.window)
    w0 = dict(zip(tok["doc_id"], np.cumsum(n_win) - n_win, strict=True))
    acts = con.execute("SELECT * FROM activations").df()
    acts["win"] = acts["doc_id"].map(w0) + acts["pos"] // CFG.window
    return acts.groupby(["feature", "win"], as_index=False)["act"].max()


def test_windows_are_fixed_and_non_overlapping(con: duckdb.DuckDBPyConnection) -> None:
    wins = con.execute("SELECT win, doc_id, start FROM xwin ORDER BY win").df()
    assert wins["win"].tolist() == list(range(len(wins)))
    assert (wins["start"] % CFG.window == 0).all()
    per_doc = con.execute("SELECT doc_id, max(pos) + 1 AS n FROM tokens GROUP BY 1").df()
    expected = int((-(-per_doc["n"] // CFG.window)).sum())
    assert len(wins) == expected
    assert not wins.duplicated(["doc_id", "start"]).any()


def brute_activating(con: duckdb.DuckDBPyConnection, f: int, cfg: ExplainConfig) -> pd.DataFrame:
    """(win, quantile, role) of feature f, recomputed step by step in pandas."""
    m = brute_maxes(con).query("feature == @f").sort_values(["act", "win"], ascending=[False, True])
    m["quantile"] = np.arange(len(m)) * cfg.n_quantiles // len(m)
    prio = con.execute(f"SELECT win, hash(win, {cfg.seed}) AS h FROM xwin").df()
    m = m.merge(prio, on="win").sort_values(["quantile", "h", "win"])
    m["i"] = m.groupby("quantile").cumcount()
    a, b = cfg.n_train, cfg.n_train + cfg.n_test
    m = m.sort_values(["i", "quantile"]).head(b)  # round-robin over the quantiles
    m["p"] = m["quantile"] + m.sort_values("i").groupby("quantile").cumcount()
    train = np.ceil((m["p"] + 1) * a / b) > np.ceil(m["p"] * a / b)
    m["role"] = np.where(train, "train", "test")
    return m[["win", "quantile", "role"]].sort_values("win").reset_index(drop=True)


@pytest.mark.parametrize("cfg", [CFG, ExplainConfig()])
def test_quantile_sampling_matches_brute_force(
    con: duckdb.DuckDBPyConnection, cfg: ExplainConfig
) -> None:
    s = windows.sample(con, SAE, list(range(D_SAE)), cfg)
    for f in (F_PARIS, F_FRENCH):
        got = s.frame[(s.frame["feature"] == f) & s.frame["role"].isin(["train", "test"])]
        got = got[["win", "quantile", "role"]].sort_values("win").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, brute_activating(con, f, cfg), check_dtype=False)


def test_quantile_split_is_even(con: duckdb.DuckDBPyConnection) -> None:
    """27 windows over 3 quantiles, 6 train + 3 test: 2 train and 1 test from each quantile;
    with delphi's 40 + 50 over 10 quantiles and enough windows: 4 and 5 from each."""
    s = windows.sample(con, SAE, [F_FRENCH], CFG)
    counts = s.frame.groupby(["quantile", "role"]).size().unstack()
    assert (counts["train"] == 2).all() and (counts["test"] == 1).all()
    frame = pd.DataFrame(
        {
            "feature": 0,
            "win": np.arange(500, dtype=np.int32),
            "act": np.linspace(1, 2, 500, dtype=np.float32),
        }
    )
    con.register("frame", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE xact AS SELECT * FROM frame")
    sql.sample_activating(con, 10, 40, 50, 0)
    counts = con.execute("SELECT quantile, role, count(*) AS n FROM xsamp GROUP BY ALL").df()
    table = counts.pivot(index="quantile", columns="role", values="n")
    assert (table["train"] == 4).all() and (table["test"] == 5).all()


def test_non_activating_windows_never_fire(con: duckdb.DuckDBPyConnection) -> None:
    s = windows.sample(con, SAE, list(range(D_SAE)), CFG)
    maxes = brute_maxes(con)
    for f in range(D_SAE):
        fired = set(maxes.loc[maxes["feature"] == f, "win"])
        rnd, hard = set(s.windows(f, "random")), set(s.windows(f, "hard"))
        assert not (rnd | hard) & fired
        pool = set(
            con.execute("SELECT win FROM xwin ORDER BY hash(win, 0), win LIMIT 20").df()["win"]
        )
        if fired:
            assert len(rnd) == min(CFG.n_random, len(pool - fired))
        nbs = con.execute(
            "SELECT neighbour FROM neighbours WHERE feature = ? AND rank <= ?",
            [f, CFG.hard_neighbours],
        ).fetchall()
        from_nbs: set[int] = set()
        for (nb,) in nbs:
            from_nbs |= set(s.windows(nb, "train")) | set(s.windows(nb, "test"))
        assert hard <= from_nbs


def test_pool_random_windows_and_determinism(con: duckdb.DuckDBPyConnection) -> None:
    a = windows.sample(con, SAE, list(range(D_SAE)), CFG)
    b = windows.sample(con, SAE, list(range(D_SAE)), CFG)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pool = set(con.execute("SELECT win FROM xwin ORDER BY hash(win, 0), win LIMIT 20").df()["win"])
    assert set(a.role("random")["win"]) <= pool
    assert F_DEAD not in set(a.frame["feature"])
    assert set(a.scoring_windows()) == set(a.frame.loc[a.frame["role"] != "train", "win"])


def test_subset_and_default_sizes(con: duckdb.DuckDBPyConnection) -> None:
    cfg = ExplainConfig()
    s = windows.sample(con, SAE, [F_FRENCH], cfg)
    assert set(s.frame["feature"]) == {F_FRENCH}
    n_act = len(brute_maxes(con).query("feature == @F_FRENCH"))
    counts = s.frame["role"].value_counts()
    assert counts["train"] + counts["test"] == min(n_act, cfg.n_train + cfg.n_test)
    ex = windows.examples(con, s, cfg, ("train",))[(F_FRENCH, "train")]
    assert all(len(e.tokens) == len(e.acts) <= cfg.window for e in ex)
    assert all(e.acts.max() > 0 for e in ex)
