"""Lobes: spectral clustering as sklearn does it, planted groups recovered, lobe function."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_mutual_info_score

from core.geometry import cooccurrence as cooc
from core.geometry import lobes, spectral
from core.store import geometry_sql


def _planted(make_atlas: Any) -> tuple[Any, Any, cooc.Cooccurrence, np.ndarray]:
    syn = make_atlas()
    wins = geometry_sql.windows(syn.con, 16, 8)
    fire = geometry_sql.window_firing(syn.con, wins, "L1/resid_post", 16, 0.0, False)
    co = cooc.count(
        cooc.binary_matrix(
            fire["win"].to_numpy(), fire["feature"].to_numpy(), len(wins), len(syn.truth)
        )
    )
    return syn, wins, co, cooc.phi_coefficient(co)


def test_spectral_labels_equal_sklearn_spectral_clustering() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 6)) + np.repeat(rng.standard_normal((3, 6)) * 2, 30, axis=0)
    A = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 10)  # (90, 90) affinity
    got = lobes.spectral_labels(A, [2, 3, 5], seed=7)
    for k in (2, 3, 5):
        want = SpectralClustering(
            k, affinity="precomputed", assign_labels="kmeans", random_state=7
        ).fit_predict(A)
        assert (got[k] == want).all()


def test_planted_lobes_are_recovered(make_atlas: Any) -> None:
    syn, _, co, phi = _planted(make_atlas)
    labels = lobes.cooccurrence_lobes(phi, co.alive, [2, 4, 8], seed=0)
    assert adjusted_mutual_info_score(syn.truth, labels[4]) > 0.95
    assert set(labels) == {2, 4, 8} and all(len(v) == len(syn.truth) for v in labels.values())


def test_dead_features_get_lobe_minus_one() -> None:
    phi = np.eye(5)
    alive = np.array([True, True, False, True, True])
    labels = lobes.cooccurrence_lobes(phi, alive, [2], seed=0)[2]
    assert labels[2] == -1 and (labels[alive] >= 0).all()


def test_lobe_function_follows_document_groups(make_atlas: Any) -> None:
    syn, wins, co, phi = _planted(make_atlas)
    lab = lobes.cooccurrence_lobes(phi, co.alive, [4], seed=0)[4]
    winner = lobes.winning_lobe(lobes.lobe_fractions(co.B, lab, 4))
    table = lobes.lobe_function(winner, wins)
    src = table[table["facet"] == "source"]
    # every source (= planted group) is won by one lobe, and each lobe by one source
    best = src.loc[src.groupby("value")["n_windows"].idxmax()]
    assert best["lobe"].nunique() == 4
    assert (
        best["n_windows"].to_numpy() / src.groupby("value")["n_windows"].sum().to_numpy() > 0.9
    ).all()
    assert set(table["facet"]) == {"source", "topic", "language"}


def test_lobe_table_sizes_tokens_and_hubs(make_atlas: Any) -> None:
    syn, _, co, phi = _planted(make_atlas)
    lab = lobes.cooccurrence_lobes(phi, co.alive, [4], seed=0)[4]
    tokens = [[f"t{g}", f"u{f}"] for f, g in enumerate(syn.truth)]
    winner = lobes.winning_lobe(lobes.lobe_fractions(co.B, lab, 4))
    hubs_by = lobes.hub_scores(spectral.PhiAffinity(co.B), lab, 4)
    for f in range(len(lab)):  # the operator's mean phi within the lobe equals the dense one
        members = np.flatnonzero(lab == lab[f])
        assert abs(hubs_by[f] - phi[f, members].mean()) < 1e-9
    table = lobes.lobe_table(lab, 4, hubs_by, tokens, winner)
    assert (
        table["size"].sum() == len(syn.truth)
        and table["n_windows_won"].sum() == (winner >= 0).sum()
    )
    for row in table.itertuples():
        group = syn.truth[row.top_features[0]]
        assert row.top_tokens[0] == f"t{group}"  # the group token, shared by every member
        assert all(lab[f] == row.lobe for f in row.top_features)
