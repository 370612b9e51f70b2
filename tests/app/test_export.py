"""CSV export: one row per feature, optional columns when later stages wrote them, formulas neutralised."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from core import export
from core.store import queries, schema


def _atlas(path: Path, with_extras: bool) -> duckdb.DuckDBPyConnection:
    """Just the tables the export reads: saes, features (+ explanations / feature_geometry)."""
    con = duckdb.connect(str(path))
    tables = schema.all_tables()
    for name in ["saes", "features"] + (
        ["explanations", "feature_geometry"] if with_extras else []
    ):
        con.execute(f"CREATE TABLE {name} ({tables[name]})")
    con.execute(
        "INSERT INTO saes (sae_id, layer, site, d_sae) VALUES ('L3/resid_post', 3, 'resid_post', 4)"
    )
    feats = pd.DataFrame(
        {
            "sae_id": "L3/resid_post",
            "feature": [0, 1, 2, 3],
            "n_fire": [5, 0, 2, 9],
            "density": [0.5, 0.0, 0.2, 0.9],
            "max_act": [1.5, 0.0, 2.5, 3.0],
            "mean_act": [1.0, 0.0, 2.0, 2.0],
            "top_tokens": [["=SUM(A1)", " the"], [], ["-1", "@x"], [" a, b", '"q"']],
        }
    )
    con.register("feats", feats)
    con.execute("INSERT INTO features BY NAME SELECT * FROM feats")
    if with_extras:  # feature 0: an old and a newer explanation, and a newer failed attempt
        con.execute(
            "INSERT INTO explanations (sae_id, feature, explainer, model, prompt_version, created, "
            "explanation, error, detection, embedding) VALUES "
            "('L3/resid_post', 0, 'a', 'm', 'v1', '2024-01-01', 'old words', NULL, 0.1, NULL), "
            "('L3/resid_post', 0, 'a', 'm', 'v2', '2024-02-01', '=HYPERLINK(\"x\")', NULL, 0.8, NULL), "
            "('L3/resid_post', 0, 'a', 'm', 'v3', '2024-03-01', NULL, 'timeout', NULL, NULL), "
            "('L3/resid_post', 2, 'a', 'm', 'v1', '2024-01-01', '+ plus sign words', NULL, 0.5, NULL)"
        )
        con.execute(
            "INSERT INTO feature_geometry (sae_id, feature, lobe, umap_x, umap_y) "
            "VALUES ('L3/resid_post', 2, 4, 0.5, -1.5)"
        )
    return con


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        (" =spaced", " =spaced"),
        (-2.5, -2.5),
    ],
)
def test_neutralise(value: object, expected: object) -> None:
    assert export.neutralise(value) == expected


def test_set_csv_with_optional_columns(tmp_path: Path) -> None:
    con = _atlas(tmp_path / "a.duckdb", with_extras=True)
    keys = [("L3/resid_post", 2), ("L3/resid_post", 0), ("L9/none", 1)]
    rows = _rows(export.features_csv(con, keys))
    assert [(r["sae_id"], r["feature"]) for r in rows] == [
        ("L3/resid_post", "2"),
        ("L3/resid_post", "0"),
    ]
    header = list(rows[0])
    assert header[:9] == [
        "sae_id",
        "feature",
        "layer",
        "site",
        "explanation",
        "density",
        "n_fire",
        "max_act",
        "mean_act",
    ]
    assert {"top_tokens", "detection", "lobe", "umap_x", "umap_y"} <= set(header)
    assert "embedding" not in header  # array columns (embeddings) stay out
    two, zero = rows
    assert (
        two["explanation"] == "'+ plus sign words"
        and two["lobe"] == "4"
        and two["umap_y"] == "-1.5"
    )
    assert zero["explanation"] == '\'=HYPERLINK("x")' and zero["lobe"] == ""  # newest, not failed
    assert float(zero["detection"]) == pytest.approx(0.8)
    assert json.loads(two["top_tokens"]) == ["-1", "@x"]  # a JSON list: starts with '[', safe
    assert json.loads(zero["top_tokens"]) == ["=SUM(A1)", " the"]
    assert float(zero["density"]) == pytest.approx(0.5) and float(two["max_act"]) == pytest.approx(
        2.5
    )


def test_filtered_csv_without_optional_tables(tmp_path: Path) -> None:
    con = _atlas(tmp_path / "a.duckdb", with_extras=False)
    flt = queries.FeatureFilter(density_range=(0.1, 1.0))
    rows = _rows(export.filtered_csv(con, flt, sort="max_act", desc=True))
    assert [r["feature"] for r in rows] == ["3", "2", "0"]
    assert "explanation" not in rows[0] and "lobe" not in rows[0]
    assert json.loads(rows[0]["top_tokens"]) == [" a, b", '"q"']  # commas and quotes survive


def test_empty_set_has_a_header(tmp_path: Path) -> None:
    con = _atlas(tmp_path / "a.duckdb", with_extras=False)
    text = export.features_csv(con, []).decode()
    assert text.splitlines()[0].startswith("sae_id,feature,layer,site")


def test_search_reads_explanations_and_whitelists_sort(tmp_path: Path) -> None:
    con = _atlas(tmp_path / "a.duckdb", with_extras=True)
    rows = queries.search_features(con, queries.FeatureFilter(text="PLUS sign"), sort="feature")
    assert rows["feature"].tolist() == [2] and rows["explanation"].tolist() == ["+ plus sign words"]
    by_token = queries.FeatureFilter(text="sum(")  # top tokens, case-insensitive
    assert queries.search_features(con, by_token)["feature"].tolist() == [0]
    assert queries.count_features(con, queries.FeatureFilter(text="%")) == 0  # % is literal
    assert queries.search_features(con, sort="lobe")["feature"].tolist()[0] == 2  # a joined column
    with pytest.raises(ValueError, match="cannot sort"):
        queries.search_features(con, sort="density; DROP TABLE features")
