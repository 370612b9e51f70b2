"""Every page under Streamlit's AppTest against a small real atlas: no exception, and the content
users rely on (values, the right examples, links) matches the atlas. Plus the XSS and bad-URL cases."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.render import visible_token
from core.store import schema
from core.workspace import Workspace

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


@pytest.fixture(scope="module")
def atlas(tiny_atlas: Path) -> Path:
    """The session's small real atlas (tests/conftest.py builds it once)."""
    return tiny_atlas


@pytest.fixture
def env(atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app reads this atlas and a fresh workspace; returns the workspace path."""
    monkeypatch.setenv("SAE_ATLAS_PATH", str(atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "workspace.duckdb"))
    return tmp_path / "workspace.duckdb"


@pytest.fixture(scope="module")
def db(atlas: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Ground truth, read with plain SQL beside the app."""
    con = duckdb.connect(str(atlas), read_only=True)
    yield con
    con.close()


def run_page(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def windows(body: str) -> list[list[tuple[str, float]]]:
    """Token windows in rendered HTML: [(token text, activation from the hover title), ...]."""
    out = []
    for win in re.findall(r'<div class="window"[^>]*>(.*?)</div>', body):
        spans = re.findall(r'<span class="tok"[^>]*title="act ([-\d.]+)">(.*?)</span>', win)
        out.append([(html.unescape(text), float(act)) for act, text in spans])
    return out


def links(at: AppTest) -> list[tuple[str, dict[str, str]]]:
    """(label, query params) of every page link on the page."""
    return [
        (p.proto.label, {k: v[0] for k, v in parse_qs(p.proto.query_string).items()})
        for p in at.get("page_link")
    ]


# ---- overview --------------------------------------------------------------------------------
def test_overview(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    at = run_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    n_tokens = db.execute("SELECT sum(n_tokens) FROM documents").fetchall()[0][0]
    assert metrics["Corpus tokens"] == f"{n_tokens:,}"
    model = db.execute("SELECT name FROM model_info").fetchall()[0][0]
    assert any(model in m.value for m in at.markdown)
    saes = at.dataframe[0].value
    truth = frame(db, "SELECT sae_id, fvu, l0 FROM saes ORDER BY layer, site")
    assert saes["sae_id"].tolist() == truth["sae_id"].tolist()
    assert saes["fvu"].tolist() == pytest.approx(truth["fvu"].tolist())
    assert saes["l0"].tolist() == pytest.approx(truth["l0"].tolist())
    sources = at.dataframe[1].value
    assert sources["tokens"].sum() == n_tokens
    assert len(at.get("plotly_chart")) >= 2  # tokens per topic, seconds per stage


# ---- features table --------------------------------------------------------------------------
def test_features_table_default_sort_and_links(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    at = run_page("features")
    rows = at.dataframe[0].value
    total = db.execute("SELECT count(*) FROM features").fetchall()[0][0]
    assert f"{total:,} features match" in at.caption[0].value
    assert len(rows) == 50
    assert rows["density"].is_monotonic_decreasing
    assert rows["density"].iloc[0] == pytest.approx(
        db.execute("SELECT max(density) FROM features").fetchall()[0][0]
    )
    first = rows.iloc[0]
    assert parse_qs(first["open"].split("?", 1)[1]) == {
        "sae": [first["sae_id"]],
        "feature": [str(first["feature"])],
    }

    at.pagination[0].set_value(2).run()  # the second page continues the same order
    page2 = at.dataframe[0].value
    assert page2["density"].iloc[0] <= rows["density"].iloc[-1]
    assert not set(zip(page2["sae_id"], page2["feature"], strict=True)) & set(
        zip(rows["sae_id"], rows["feature"], strict=True)
    )


def test_features_search_filter_sort(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    sae, tops = db.execute(
        "SELECT sae_id, top_tokens FROM features WHERE len(top_tokens) > 0 ORDER BY n_fire DESC LIMIT 1"
    ).fetchall()[0]
    needle = max((t.strip() for t in tops), key=len)
    at = run_page("features")
    typed = needle.upper() if needle.isascii() else needle  # case-insensitive substring
    at.text_input(key="f-text").input(typed).run()
    at.multiselect(key="f-saes").select(sae).run()
    at.selectbox(key="f-sort").select("max_act").run()
    at.toggle(key="f-desc").set_value(False).run()
    rows = at.dataframe[0].value
    # the app matches the top tokens or the explanation (the tiny atlas has statistical ones)
    truth = frame(
        db,
        "SELECT feature, max_act FROM features f WHERE sae_id = $1 AND "
        "(contains(lower(array_to_string(top_tokens, ' ')), lower($2)) OR EXISTS (SELECT 1 FROM "
        "explanations x WHERE x.sae_id = f.sae_id AND x.feature = f.feature AND "
        "contains(lower(x.explanation), lower($2)))) ORDER BY max_act, feature",
        sae,
        needle,
    )
    assert len(truth) > 0
    assert rows["feature"].tolist() == truth["feature"].tolist()[: len(rows)]
    assert (rows["sae_id"] == sae).all()
    assert rows["max_act"].is_monotonic_increasing
    assert f"{len(truth):,} features match" in at.caption[0].value


def test_add_filtered_table_to_set(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    sae = db.execute("SELECT sae_id FROM saes ORDER BY layer, site LIMIT 1").fetchall()[0][0]
    at = run_page("features")
    at.multiselect(key="f-saes").select(sae).run()
    at.text_input(key="features-new").input("whole sae")
    next(b for b in at.button if b.label == "Add all").click().run()
    assert not at.exception
    ws = Workspace(env)
    found = ws.get_set("whole sae")
    n = db.execute("SELECT count(*) FROM features WHERE sae_id = ?", [sae]).fetchall()[0][0]
    assert found is not None and found.size == n
    assert {s for s, _ in ws.members(found.set_id)} == {sae}
    ws.close()


# ---- one feature -----------------------------------------------------------------------------
def _busiest(db: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    row = db.execute(
        "SELECT sae_id, feature FROM features WHERE feature > 0 ORDER BY n_fire DESC, sae_id LIMIT 1"
    ).fetchall()[0]
    return str(row[0]), int(row[1])


def test_feature_page(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    sae, feat = _busiest(db)
    at = run_page("feature", sae=sae, feature=str(feat))
    assert at.title[0].value == f"{sae} · feature {feat}"
    truth = frame(db, "SELECT * FROM features WHERE sae_id = ? AND feature = ?", sae, feat).iloc[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Max activation"] == f"{truth['max_act']:.3f}"
    assert metrics["Density"] == f"{truth['density']:.3e}"

    shown = [w for h in at.html for w in windows(h.proto.body)]
    ex = frame(
        db,
        "SELECT kind, tokens, acts FROM examples WHERE sae_id = ? AND feature = ? "
        "ORDER BY kind = 'interval', bin DESC NULLS FIRST, rank",
        sae,
        feat,
    )
    assert len(shown) == len(ex)
    for got, (_, want) in zip(shown, ex.iterrows(), strict=True):  # same windows, same order
        if any("\ufffd" in t for t in want["tokens"]):
            # a character split across tokens shows as one span with the max of its parts
            assert len(got) <= len(want["tokens"])
            assert max(a for _, a in got) == pytest.approx(max(want["acts"]), abs=1e-3)
            continue
        assert [t for t, _ in got] == [visible_token(t) for t in want["tokens"]]
        assert [a for _, a in got] == pytest.approx([float(a) for a in want["acts"]], abs=1e-3)
    assert len(at.get("plotly_chart")) == 1  # the histogram

    nb = frame(
        db,
        "SELECT neighbour FROM neighbours WHERE sae_id = ? AND feature = ? ORDER BY rank",
        sae,
        feat,
    )
    targets = links(at)
    assert (f"← {feat - 1}", {"sae": sae, "feature": str(feat - 1)}) in targets  # previous
    assert [q["feature"] for label, q in targets if label.startswith("feature ")] == [
        str(n) for n in nb["neighbour"]
    ]
    logit_tokens = db.execute(
        "SELECT token_str FROM logits WHERE sae_id = ? AND feature = ? AND sign = 1 ORDER BY rank",
        [sae, feat],
    ).fetchall()
    bodies = "".join(h.proto.body for h in at.html)
    assert all(html.escape(visible_token(t)) in bodies for (t,) in logit_tokens)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"sae": "L99/nowhere", "feature": "1"}, "Unknown SAE"),
        ({"sae": "{sae}", "feature": "abc"}, "not a feature number"),
        ({"sae": "{sae}", "feature": "-3"}, "not a feature number"),
        ({"sae": "{sae}", "feature": "1e9"}, "not a feature number"),
        ({"sae": "{sae}", "feature": "99999999"}, "does not exist"),
        ({"feature": "3"}, "names no SAE"),
        ({"sae": "{sae}"}, "not a feature number"),
    ],
)
def test_feature_page_bad_urls(
    env: Path, db: duckdb.DuckDBPyConnection, params: dict[str, str], message: str
) -> None:
    sae = db.execute("SELECT sae_id FROM saes LIMIT 1").fetchall()[0][0]
    at = run_page("feature", **{k: v.format(sae=sae) for k, v in params.items()})
    assert at.error and message in at.error[0].value
    assert at.selectbox  # the picker is offered instead


def test_add_to_set_from_feature_page(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    sae, feat = _busiest(db)
    at = run_page("feature", sae=sae, feature=str(feat))
    at.text_input(key="feature-new").input("my picks")
    next(b for b in at.button if b.label == "Add").click().run()
    assert not at.exception
    assert any("Added 1 feature" in s.value for s in at.success)
    ws = Workspace(env)
    found = ws.get_set("my picks")
    assert found is not None and ws.members(found.set_id) == [(sae, feat)]
    ws.close()


# ---- sets ------------------------------------------------------------------------------------
def test_sets_page(env: Path, db: duckdb.DuckDBPyConnection) -> None:
    at = run_page("sets")
    assert "No feature sets yet" in at.info[0].value
    at.text_input[0].input("Picks")
    next(b for b in at.button if b.label == "Create").click().run()
    keys = [
        (str(s), int(f))
        for s, f in db.execute("SELECT sae_id, feature FROM features LIMIT 3").fetchall()
    ]
    ws = Workspace(env)
    ws.add_features(ws.list_sets()[0].set_id, keys)
    ws.close()
    at.run()
    assert not at.exception
    members = at.dataframe[0].value
    assert list(zip(members["sae_id"], members["feature"], strict=True)) == keys
    assert at.get("download_button")

    next(t for t in at.text_input if t.label == "New name").input("Renamed")
    next(b for b in at.button if b.label == "Rename").click().run()
    assert at.selectbox(key="sets-choice").value == "Renamed"
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Delete set").click().run()
    assert not at.exception and "No feature sets yet" in at.info[0].value


def test_no_atlas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(tmp_path / "missing" / "atlas.duckdb"))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No atlas found" in at.warning[0].value
    assert any("sae-atlas build" in c.value for c in at.code)


# ---- XSS -------------------------------------------------------------------------------------
def write_xss_atlas(path: Path) -> Path:
    """A one-SAE atlas whose corpus, logits, top tokens and explanation carry HTML payloads."""
    toks = ["Hello", " ", XSS[0], " and", " ", XSS[1], " bye"]
    con = duckdb.connect(str(path))
    for stmt in schema.create_statements():
        con.execute(stmt)
    con.execute(
        "INSERT INTO runs (run_id, created, config) VALUES ('x', ?, '{}')", [datetime.now()]
    )
    con.execute("INSERT INTO documents VALUES (0, 'test', 'Tests', 'en', 'CC0', ?, 7)", [XSS[1]])
    for i, t in enumerate(toks):
        con.execute("INSERT INTO tokens VALUES (0, ?, ?, ?)", [i, i, t])
    con.execute(
        "INSERT INTO saes (sae_id, layer, site, architecture, d_sae) VALUES ('L1/resid_post', 1, 'resid_post', 'topk', 2)"
    )
    con.execute(
        "INSERT INTO features VALUES ('L1/resid_post', 0, 2, 0.28, 3.0, 2.0, ?), "
        "('L1/resid_post', 1, 1, 0.14, 1.0, 1.0, ?)",
        [XSS, [XSS[1]]],
    )
    acts = [0, 0, 3.0, 0, 0, 1.0, 0]
    con.execute(
        "INSERT INTO examples VALUES ('L1/resid_post', 0, 'top', 1, NULL, 0, 2, 3.0, 2, ?, ?, NULL), "
        "('L1/resid_post', 0, 'interval', 1, 0, 0, 5, 1.0, 5, ?, ?, NULL)",
        [toks, acts, toks, acts],
    )
    con.execute("INSERT INTO histograms VALUES ('L1/resid_post', 0, [0, 1.5, 3.0], [1, 1])")
    con.execute(
        "INSERT INTO logits VALUES ('L1/resid_post', 0, 1, 1, 5, ?, 0.9), "
        "('L1/resid_post', 0, -1, 1, 6, ?, -0.9)",
        XSS,
    )
    con.execute("INSERT INTO neighbours VALUES ('L1/resid_post', 0, 1, 1, 0.5)")
    con.execute(
        "INSERT INTO explanations (sae_id, feature, explainer, model, prompt_version, explanation) "
        "VALUES ('L1/resid_post', 0, 'e', 'm', 'v', ?)",
        [f"fires on {XSS[0]} tags"],
    )
    con.close()
    return path


def test_xss_renders_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(write_xss_atlas(tmp_path / "atlas.duckdb")))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "ws.duckdb"))
    at = run_page("feature", sae="L1/resid_post", feature="0")
    bodies = [h.proto.body for h in at.html]
    joined = "".join(bodies)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in joined  # tokens, chips, logits, explanation
    assert "&lt;img src=x onerror=alert(1)&gt;" in joined
    assert "fires on &lt;script&gt;" in joined
    for body in bodies:
        assert not re.search(r"<\s*(script|img)", body, re.I), body
    first = [w for b in bodies for w in windows(b)][0]
    assert [t for t, _ in first] == ["Hello", " ", XSS[0], " and", " ", XSS[1], " bye"]
    at_table = run_page("features")
    assert XSS[0] in at_table.dataframe[0].value["top_tokens"].iloc[0]  # plain data, not markup
