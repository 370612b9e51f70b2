"""User text never becomes markup: set names, URL parameters and search queries reach markdown
only escaped (or inside a code span), so no visitor's browser fetches an image a name plants."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from app.text import code, plain
from core.workspace import Workspace

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
EVIL = "![i](http://host/x.png)"
ESCAPED = r"\!\[i\]\(http\:\/\/host\/x\.png\)"


@pytest.fixture
def ws_path(tiny_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(tiny_atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "workspace.duckdb"))
    return tmp_path / "workspace.duckdb"


@pytest.fixture
def first_feature(tiny_atlas: Path) -> tuple[str, int]:
    with duckdb.connect(str(tiny_atlas), read_only=True) as con:
        row = con.execute("SELECT sae_id FROM saes ORDER BY layer, sae_id LIMIT 1").fetchone()
    assert row is not None
    return str(row[0]), 0


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(f"app_pages/{name}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def markdown_bodies(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's markdown renderer (bodies and widget labels)."""
    bodies = [e.value for kind in ("markdown", "caption", "error", "warning", "success", "info")
              for e in at.get(kind)]  # fmt: skip
    for kind in ("checkbox", "button", "text_input", "selectbox", "expander", "radio"):
        bodies += [str(getattr(e, "label", "")) for e in at.get(kind)]
    return bodies


def outside_code(body: str) -> str:
    return re.sub(r"`[^`]*`", "", body)


def assert_no_fetching_markup(at: AppTest, must_show: bool = True) -> None:
    """The hostile text appears only escaped or in a code span, never as image/link syntax."""
    bodies = markdown_bodies(at)
    leaks = [b for b in bodies if "![" in outside_code(b) or "](http" in outside_code(b)]
    assert not leaks, leaks
    if must_show:
        assert any(ESCAPED in b for b in bodies), bodies


# ---- the helper -------------------------------------------------------------------------------
def test_plain_escapes_markdown_html_and_directives() -> None:
    assert plain(EVIL) == ESCAPED
    assert plain("<img src=x onerror=alert(1)>") == r"\<img src\=x onerror\=alert\(1\)\>"
    assert plain(":red[big] $x$ **b** &lt;") == r"\:red\[big\] \$x\$ \*\*b\*\* \&lt\;"
    assert plain("a\n# heading\r\nb") == r"a \# heading b"  # one line: no block syntax
    assert plain("x" * 300).endswith("…") and len(plain("x" * 300)) == 201
    assert code("a`b\nc") == "`a'b c`"


# ---- set names (the workspace is shared by every session) -------------------------------------
def test_sets_page_shows_a_hostile_set_name_as_text(
    ws_path: Path, first_feature: tuple[str, int]
) -> None:
    Workspace(ws_path).create_set(EVIL, [first_feature])
    at = page("sets")
    assert at.selectbox(key="sets-choice").value == EVIL  # the name itself is kept as typed
    assert_no_fetching_markup(at)  # the delete checkbox label names the set


def test_added_to_message_shows_the_set_name_as_text(
    ws_path: Path, first_feature: tuple[str, int]
) -> None:
    at = page("feature", sae=first_feature[0], feature=str(first_feature[1]))
    at.text_input(key="feature-new").input(EVIL)
    next(b for b in at.button if b.label == "Add").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    added = [s.value for s in at.success if s.value.startswith("Added")]
    assert added == [f"Added 1 feature to “{ESCAPED}”."]
    assert_no_fetching_markup(at)


def test_in_caption_of_a_feature_page_shows_set_names_as_text(
    ws_path: Path, first_feature: tuple[str, int]
) -> None:
    Workspace(ws_path).create_set(EVIL, [first_feature])
    at = page("feature", sae=first_feature[0], feature=str(first_feature[1]))
    assert [c.value for c in at.caption if c.value.startswith("In: ")] == [f"In: “{ESCAPED}”"]
    assert_no_fetching_markup(at)


def test_workspace_errors_quoting_a_name_are_text(
    ws_path: Path, first_feature: tuple[str, int]
) -> None:
    Workspace(ws_path).create_set(EVIL, [first_feature])
    at = page("sets")
    at.text_input[0].input(EVIL)  # "New set": the name is taken
    next(b for b in at.button if b.label == "Create").click()
    at.run()
    assert not at.exception and any("already exists" in e.value for e in at.error)
    assert_no_fetching_markup(at)


# ---- URL parameters on the Steering page -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        {"sae": f"a` {EVIL} `b", "feature": "1"},  # backticks try to close the code span
        {"steer": EVIL},
        {"steer": "a` ![i](x.png) `b:1:additive:1"},
    ],
    ids=["sae", "steer-malformed", "steer-unknown-sae"],
)
def test_steering_url_parameters_reach_messages_as_text(
    ws_path: Path, params: dict[str, str]
) -> None:
    at = page("steering", **params)
    assert at.warning, "the bad link is reported"
    assert_no_fetching_markup(at, must_show=False)
    assert dict(at.query_params) == params


def test_unknown_set_in_the_link_is_named_as_text(
    ws_path: Path, first_feature: tuple[str, int]
) -> None:
    Workspace(ws_path).create_set("mine", [first_feature])
    at = page("sets", set=EVIL)
    assert [e.value for e in at.error] == [f"No feature set is named “{ESCAPED}”; showing “mine”."]
    assert_no_fetching_markup(at)


# ---- search queries -----------------------------------------------------------------------------
def test_search_by_meaning_echoes_the_query_as_text(ws_path: Path) -> None:
    at = page("features")
    at.text_input(key="f-meaning").input(EVIL)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("Nearest in meaning") for c in at.caption)
    assert_no_fetching_markup(at)
