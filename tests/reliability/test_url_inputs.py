"""Bad numbers in URLs and widgets: a clear error naming the parameter and its range, never a
traceback, never a silently clamped value, and the link left as the user gave it."""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import parse_qs

import duckdb
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.params import ParamError, parse_int, parse_number
from core.steering.chain import ALPHA_RANGE, chain_spec
from core.steering.generate import SamplingConfig
from core.steering.interventions import SteeringError
from tests.flow.test_flow_page import _atlas

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def unescaped(text: str) -> str:
    """A markdown body as the user reads it (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


# ---- the one number parser -----------------------------------------------------------------
@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e999", "abc", "", "0x10", "5"])
def test_parser_refuses_non_finite_overflow_and_out_of_range(raw: str) -> None:
    with pytest.raises(ParamError, match=r"^seed must be a whole number from 0 to 4; got "):
        parse_int("seed", raw, 0, 4)


def test_parser_accepts_and_checks_whole_numbers() -> None:
    assert parse_number("t", " 0.5 ", 0, 2) == 0.5
    assert parse_int("n", "8", 1, 256) == 8
    with pytest.raises(ParamError, match="n must be a whole number from 1 to 256; got '2.5'"):
        parse_int("n", "2.5", 1, 256)
    with pytest.raises(ParamError, match=r"strength must be a number \(finite\)"):
        parse_number("strength", math.inf, -math.inf, math.inf)


# ---- the chain schedule itself cannot overflow ------------------------------------------------
CHAIN = [("L0/resid_post", 1), ("L5/resid_post", 2), ("L29/resid_post", 3)]


def test_chain_alpha_out_of_range_is_a_clear_error_not_overflow() -> None:
    with pytest.raises(ValueError, match=r"alpha must be a number from -3 to 3; got 1000"):
        chain_spec(CHAIN, 1.0, "decay", 1000.0)
    with pytest.raises(ValueError, match=r"alpha must be a number from -3 to 3; got inf"):
        chain_spec(CHAIN, 1.0, "decay", math.inf)


def test_chain_growth_along_many_layers_is_bounded() -> None:
    """α = 2 is in range, but e^(2·29) along a 30-layer chain is refused with the chain's bound."""
    with pytest.raises(ValueError, match=r"alpha must be a number from -3 to 1\.03448 for this"):
        chain_spec(CHAIN, 1.0, "decay", 2.0)
    spec = chain_spec(CHAIN, 1.0, "decay", -3.0)  # a steep decay underflows harmlessly
    assert [s["strength"] for s in spec][0] == 1.0 and all(
        math.isfinite(s["strength"]) for s in spec
    )
    assert ALPHA_RANGE == (-3.0, 3.0)


# ---- the Steering page ------------------------------------------------------------------------
@pytest.fixture
def env(tiny_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(tiny_atlas))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "workspace.duckdb"))
    return tiny_atlas


def steering(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("app_pages/steering.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [unescaped(e.value) for e in at.error]


def sae_ids(atlas: Path) -> list[str]:
    with duckdb.connect(str(atlas), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT sae_id FROM saes ORDER BY layer").fetchall()]


def first_sae(atlas: Path) -> str:
    return sae_ids(atlas)[0]


def chain_of(atlas: Path) -> str:
    """Two SAEs of the atlas, one feature each, in the `chain` URL form."""
    ids = sae_ids(atlas)
    return f"{ids[0]}:1,{ids[-1]}:2"


@pytest.mark.slow
def test_steering_alpha_1000_names_alpha_and_its_range(env: Path) -> None:
    params = {"chain": chain_of(env), "schedule": "decay", "alpha": "1000"}
    at = steering(**params)
    assert any("alpha must be a number from -3 to 3; got '1000'" in m for m in errors(at))
    assert "steer-items" not in at.session_state or at.session_state["steer-items"] == []
    assert dict(at.query_params) == params


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "raw", "allowed", "key", "default"),
    [
        ("seed", "inf", "a whole number from 0 to 2147483647", "steer-seed", 16),
        ("seed", "1e999", "a whole number from 0 to 2147483647", "steer-seed", 16),
        ("t", "5", "a number from 0 to 2", "steer-t", 0.5),
        ("t", "nan", "a number from 0 to 2", "steer-t", 0.5),
        ("n", "100000", "a whole number from 1 to ", "steer-n", 48),
        ("fp", "1e9", "a number from -2 to 2", "steer-fp", 1.0),
        ("top_p", "0", "a number from 0.05 to 1", "steer-top-p", 1.0),
    ],
)
def test_steering_setting_out_of_range_is_an_error_and_the_link_stays(
    env: Path, name: str, raw: str, allowed: str, key: str, default: float
) -> None:
    params = {"sae": first_sae(env), "feature": "1", name: raw, "prompt": "Hi"}
    at = steering(**params)
    assert [i["feature"] for i in at.session_state["steer-items"]] == [1]  # the rest applies
    assert any(f"{name} must be {allowed}" in m and repr(raw) in m for m in errors(at)), errors(at)
    assert at.session_state[key] == default  # not clamped, not applied
    assert at.session_state["steer-prompt"] == "Hi"  # the valid settings still apply
    assert dict(at.query_params) == params
    at.run()  # the error stays while the link is unchanged; the link is not rewritten
    assert not at.exception and any(f"{name} must be" in m for m in errors(at))
    assert dict(at.query_params) == params


@pytest.mark.slow
def test_steering_strength_out_of_range_is_refused_not_clamped(env: Path) -> None:
    params = {"steer": f"{first_sae(env)}:1:additive:50"}
    at = steering(**params)
    assert any("additive) must be a number from -10 to 10; got 50.0" in m for m in errors(at))
    assert "steer-items" not in at.session_state or at.session_state["steer-items"] == []
    assert dict(at.query_params) == params


# ---- the Flow page's α box --------------------------------------------------------------------
def _flow_atlas(path: Path) -> Path:
    """The Flow page's planted chain atlas (tests/flow/test_flow_page.py builds it)."""
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    _atlas(path, q.T.contiguous())
    return path


def test_flow_alpha_box_at_1000_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAE_ATLAS_PATH", str(_flow_atlas(tmp_path / "atlas.duckdb")))
    monkeypatch.setenv("SAE_ATLAS_WORKSPACE", str(tmp_path / "ws.duckdb"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/flow.py")
    at.query_params.update({"sae": "L1/resid_post", "feature": "3"})
    at.run()
    at.radio(key="flow-sched").set_value("decay")
    at.run()
    at.number_input(key="flow-alpha").set_value(1000.0)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    box = at.number_input(key="flow-alpha")
    assert (box.min, box.max) == ALPHA_RANGE  # the box itself stops at the range
    assert at.number_input(key="flow-alpha").value == -0.3  # refused by the box: never used
    spec = at.dataframe[1].value  # the relative strength per layer, still finite
    assert spec["strength"].tolist() == pytest.approx([1.0, math.exp(-0.3), math.exp(-0.6)])
    links = [parse_qs(p.proto.query_string) for p in at.get("page_link")]
    assert [q["alpha"] for q in links if "chain" in q] == [["-0.3"]]


@pytest.mark.parametrize("seed", [math.inf, math.nan, -1, 2**31, 1.5])
def test_sampling_config_refuses_a_seed_torch_would_choke_on(seed: float) -> None:
    with pytest.raises(SteeringError, match=r"seed must be a whole number from 0 to 2147483647"):
        SamplingConfig(seed=seed)  # type: ignore[arg-type]
