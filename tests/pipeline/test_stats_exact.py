"""Per-feature statistics equal a brute-force recomputation from the model and the SAE."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from core.model.capture import capture
from core.model.loading import load_model
from core.model.sites import Site
from core.pipeline.config import tiny_profile
from core.pipeline.tokenize import contexts
from core.sae.formats import load_sae


@pytest.fixture(scope="module")
def brute(tiny_atlas: Path) -> dict:
    """Dense activations of every SAE of the tiny atlas, recomputed from scratch."""
    con = duckdb.connect(str(tiny_atlas), read_only=True)
    tokens = con.execute("SELECT doc_id, pos, token_id FROM tokens ORDER BY doc_id, pos").df()
    saes = con.execute("SELECT sae_id, weights_path FROM saes").fetchall()
    con.close()
    lm = load_model("default", device="cpu")
    ctxs = contexts(tokens, tiny_profile("x").corpus.ctx_len)
    saes_by_site = {Site.parse(i): load_sae(tiny_atlas.parent / w, "saelens") for i, w in saes}
    rows: dict[Site, list[np.ndarray]] = {s: [] for s in saes_by_site}
    for c in ctxs:  # one context at a time: no padding anywhere
        ids = torch.from_numpy(c.ids.astype(np.int64))[None]
        got = capture(lm.model, ids, None, list(saes_by_site))
        for site, sae in saes_by_site.items():
            a = sae.encode(got[site][0]).detach().numpy()
            a[0] = 0  # the context's first token (attention sink) is never encoded
            rows[site].append(a)
    # (n_tokens, d_sae) per SAE, in (doc, pos) order
    out = {site.id: np.concatenate(r) for site, r in rows.items()}
    return {"acts": out, "tokens": tokens}


def _atlas(tiny_atlas: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tiny_atlas), read_only=True)


def test_density_and_max_match(tiny_atlas: Path, brute: dict) -> None:
    con = _atlas(tiny_atlas)
    for sae_id, acts in brute["acts"].items():
        f = con.execute(
            "SELECT feature, n_fire, density, max_act, mean_act FROM features "
            "WHERE sae_id = ? ORDER BY feature",
            [sae_id],
        ).df()
        n_fire = (acts > 0).sum(0)
        assert len(f) == acts.shape[1]
        # Batched vs single-context forwards differ in float rounding; allow a feature or two
        # to flip at the firing threshold, but no more.
        assert np.abs(f["n_fire"].to_numpy() - n_fire).sum() <= max(2, 0.001 * n_fire.sum())
        np.testing.assert_allclose(f["density"], f["n_fire"] / acts.shape[0], rtol=1e-12)
        np.testing.assert_allclose(f["max_act"], acts.max(0), rtol=1e-3, atol=1e-3)


def test_top_examples_match(tiny_atlas: Path, brute: dict) -> None:
    con = _atlas(tiny_atlas)
    tok = brute["tokens"]
    n_top = tiny_profile("x").stats.n_top
    for sae_id, acts in brute["acts"].items():
        ex = con.execute(
            "SELECT feature, rank, doc_id, pos, act FROM examples "
            "WHERE sae_id = ? AND kind = 'top' ORDER BY feature, rank",
            [sae_id],
        ).df()
        alive = np.flatnonzero((acts > 0).sum(0) >= n_top + 2)[:40]
        for f in alive:
            col = acts[:, f]
            order = np.lexsort((tok["pos"], tok["doc_id"], -col))[:n_top]
            got = ex[ex.feature == f]
            # the same positions, compared as sets where activations nearly tie
            np.testing.assert_allclose(got["act"].to_numpy(), col[order], rtol=1e-3, atol=1e-3)
            want = set(
                zip(tok["doc_id"].to_numpy()[order], tok["pos"].to_numpy()[order], strict=True)
            )
            have = set(zip(got["doc_id"], got["pos"], strict=True))
            assert len(want & have) >= n_top - 1


def test_histograms_match(tiny_atlas: Path, brute: dict) -> None:
    con = _atlas(tiny_atlas)
    for sae_id, acts in brute["acts"].items():
        h = con.execute(
            "SELECT feature, edges, counts FROM histograms WHERE sae_id = ?", [sae_id]
        ).df()
        for _, row in h.head(50).iterrows():
            col = acts[:, row.feature]
            nz = col[col > 0]
            counts = np.asarray(row.counts)
            assert counts.sum() == pytest.approx(len(nz), abs=2)
            edges = np.asarray(row.edges, dtype=np.float64)
            expect, _ = np.histogram(nz, bins=50, range=(0.0, edges[-1]))
            # float rounding (batched vs single forward) may move a value across a bin edge, or
            # in / out of the top-k (the difference in totals)
            moved = 2 + abs(int(counts.sum()) - len(nz))
            assert np.abs(np.cumsum(expect) - np.cumsum(counts)).max() <= moved


def _stored(tiny_atlas: Path) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
    from core.store.atlas import Atlas

    cur = Atlas(tiny_atlas).cursor()
    return cur, cur.execute("SELECT * FROM activations").df()


def test_statistics_exactly_equal_numpy_over_stored_activations(tiny_atlas: Path) -> None:
    """The SQL statistics are exact: a numpy recomputation over the same sparse rows agrees."""
    cur, acts = _stored(tiny_atlas)
    cfg = tiny_profile("x").stats
    n_tok = cur.execute("SELECT count(*) FROM tokens").fetchone()[0]
    for sae_id, grp in acts.groupby("sae_id"):
        feats = (
            cur.execute("SELECT * FROM features WHERE sae_id = ?", [sae_id])
            .df()
            .set_index("feature")
        )
        hist = (
            cur.execute("SELECT * FROM histograms WHERE sae_id = ?", [sae_id])
            .df()
            .set_index("feature")
        )
        top = cur.execute(
            "SELECT feature, rank, doc_id, pos, act FROM examples "
            "WHERE sae_id = ? AND kind = 'top' ORDER BY feature, rank",
            [sae_id],
        ).df()
        for f, rows in list(grp.groupby("feature"))[:200]:
            a = rows["act"].to_numpy(np.float64)
            assert feats.loc[f, "n_fire"] == len(a)
            assert feats.loc[f, "density"] == len(a) / n_tok
            assert feats.loc[f, "max_act"] == np.float32(a.max())
            bins = np.minimum(np.floor(a / a.max() * cfg.n_bins).astype(int), cfg.n_bins - 1)
            assert list(hist.loc[f, "counts"]) == np.bincount(bins, minlength=cfg.n_bins).tolist()
            order = rows.sort_values(["act", "doc_id", "pos"], ascending=[False, True, True]).head(
                cfg.n_top
            )
            got = top[top.feature == f]
            assert (
                got[["doc_id", "pos"]].to_numpy().tolist()
                == order[["doc_id", "pos"]].to_numpy().tolist()
            )
        assert (feats["n_fire"] == 0).sum() == len(feats) - grp["feature"].nunique()


def test_example_windows_hold_the_feature_activation(tiny_atlas: Path) -> None:
    cur, acts = _stored(tiny_atlas)
    ex = cur.execute("SELECT * FROM examples WHERE kind = 'top' AND rank = 1 LIMIT 50").df()
    key = acts.set_index(["sae_id", "feature", "doc_id", "pos"])["act"]
    for _, e in ex.iterrows():
        assert e.acts[e.center] == pytest.approx(e.act)
        assert e.acts[e.center] == pytest.approx(key[(e.sae_id, e.feature, e.doc_id, e.pos)])
        tok = cur.execute(
            "SELECT token_str FROM tokens WHERE doc_id = ? AND pos = ?", [e.doc_id, e.pos]
        ).fetchone()
        assert e.tokens[e.center] == tok[0]
