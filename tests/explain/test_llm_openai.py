"""The OpenAI-compatible client and the LLM explainer/scorers against a real local endpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from explain_fake_openai import FakeOpenAI
from explain_planted import F_DEAD, F_DEF, F_PARIS, SAE

from core.explain import llm
from core.explain.cli import add_explain_parser, cmd_explain
from core.explain.clients import NO_API_KEY, OpenAIChat, openai_from_env
from core.explain.llm import parse_explanation
from core.explain.windows import Example


def _client(url: str, **kw: Any) -> OpenAIChat:
    args: dict[str, Any] = {"concurrency": 4, "timeout_s": 0.5, "max_retries": 2, **kw}
    return OpenAIChat(url, "fake-model", "sk-test", **args)


def _ask(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": llm.SYSTEM}, {"role": "user", "content": user}]


def test_client_retries_rate_limits_server_errors_and_timeouts() -> None:
    with FakeOpenAI(delay=1.0) as fake:
        fake.faults = {"c429": ["429"], "c500": ["500", "500"], "cslow": ["timeout"]}
        client = _client(fake.base_url)
        keys = ["cok << Paris>>", "c429 << Paris>>", "c500", "cslow"]
        got = dict(zip(keys, client.complete([_ask(k) for k in keys], 50), strict=True))
        seen = {k: fake.requests_with(k) for k in keys}
    assert seen == {"cok << Paris>>": 1, "c429 << Paris>>": 2, "c500": 3, "cslow": 2}
    assert {k: c.attempts for k, c in got.items()} == seen
    # each answer belongs to its own prompt, retried or not
    assert [parse_explanation(str(got[k].text)) for k in keys] == [
        "the word Paris",
        "the word Paris",
        "miscellaneous tokens",
        "miscellaneous tokens",
    ]
    assert all(c.error is None for c in got.values())
    assert all(r["temperature"] == 0 and r["model"] == "fake-model" for r in fake.requests)
    assert all(h["authorization"] == "Bearer sk-test" for h in fake.headers)
    usage = client.usage.summary()
    assert usage["calls"] == 4 and usage["failed"] == 0 and usage["retries"] == 1 + 2 + 1
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_failed_calls_are_errors_and_none_is_lost() -> None:
    with FakeOpenAI() as fake:
        fake.faults = {
            "c401": ["401"],
            "cdead": ["500"] * 5,
            "cbad": ["malformed"],
            "cnull": ["nocontent"],
        }
        keys = ["c401", "cok", "cdead", "cbad", "cnull"]
        got = dict(
            zip(keys, _client(fake.base_url).complete([_ask(k) for k in keys], 50), strict=True)
        )
        seen = {k: fake.requests_with(k) for k in keys}
    assert seen["c401"] == 1 and got["c401"].attempts == 1  # a bad key is not retried
    assert seen["cdead"] == 3 and got["cdead"].attempts == 3  # 1 + max_retries, then given up
    for k in ("c401", "cdead", "cbad", "cnull"):
        assert got[k].text is None and got[k].error, k
    assert "401" in str(got["c401"].error) and "500" in str(got["cdead"].error)
    assert got["cok"].text is not None and got["cok"].error is None


def test_concurrency_is_bounded() -> None:
    with FakeOpenAI(latency=0.2) as fake:
        keys = [f"q{i}" for i in range(12)]
        got = _client(fake.base_url, concurrency=3).complete([_ask(k) for k in keys], 20)
        assert 1 < fake.max_in_flight <= 3
        assert sorted(r["messages"][-1]["content"] for r in fake.requests) == sorted(keys)
    assert all(c.text is not None for c in got)


def test_local_server_needs_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAE_ATLAS_TEST_KEY", raising=False)
    with FakeOpenAI() as fake:
        client = openai_from_env(fake.base_url, "fake-model", "SAE_ATLAS_TEST_KEY")
        out = client.complete([_ask("hello")], 20)[0]
    assert out.text is not None and fake.headers[0]["authorization"] == f"Bearer {NO_API_KEY}"
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="no model"):
        openai_from_env(fake.base_url, None, "SAE_ATLAS_TEST_KEY")


def test_unreachable_endpoint_is_an_error_not_a_crash() -> None:
    with FakeOpenAI() as fake:
        url = fake.base_url
    out = _client(url, max_retries=1).complete([_ask("hello")], 20)[0]
    assert out.text is None and "APIConnectionError" in str(out.error) and out.attempts == 2


def test_explain_gives_every_feature_a_row_or_an_error() -> None:
    paris = Example([" in", " Paris"], np.array([0.0, 3.0]))
    code = Example([" def", " f"], np.array([2.0, 0.0]))
    other = Example([" the", " cat"], np.array([1.0, 0.0]))
    examples = {0: [paris], 1: [code], 2: [other], 3: []}
    with FakeOpenAI() as fake:
        fake.faults = {"<< the>>": ["401"]}
        fake.unparsable = {"<< def>>"}
        rows = llm.explain(_client(fake.base_url), examples, [0, 1, 2, 3], 50)
    rows = rows.set_index("feature")
    assert list(rows.index) == [0, 1, 2, 3]
    assert rows.at[0, "explanation"] == "the word Paris" and pd.isna(rows.at[0, "error"])
    assert json.loads(rows.at[0, "detail"]) == {"attempts": 1}
    for f in (1, 2, 3):  # unparsable, refused, never fires: NULL and the reason, no placeholder
        assert pd.isna(rows.at[f, "explanation"]) and rows.at[f, "error"], f
    assert "[EXPLANATION]" in rows.at[1, "error"] and "answer" in json.loads(rows.at[1, "detail"])
    assert "401" in rows.at[2, "error"]
    assert rows.at[3, "error"] == "never fires in the corpus"


def test_prompt_highlights_and_parsing() -> None:
    ex = Example([" la", " ville", " de", " Paris", " est"], np.array([0, 0.2, 0, 4.0, 1.5]))
    assert llm.highlight(ex) == " la ville de<< Paris est>>"
    prompt = llm.explainer_prompt([ex])[1]["content"]
    assert 'Activations: (" Paris", 10), (" est", 4), (" ville", 0)' in prompt
    assert llm.parse_explanation("thinking...\n[EXPLANATION]: French cities") == "French cities"
    with pytest.raises(llm.ParseError):
        llm.parse_explanation("no marker here")
    with pytest.raises(llm.ParseError):
        llm.parse_explanation("[EXPLANATION]:   ")


def _run_cli(atlas: Path, url: str, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_explain_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        [
            "explain",
            "--atlas",
            str(atlas),
            "--explainer",
            "openai",
            "--base-url",
            url,
            "--model",
            "fake-model",
            "--device",
            "cpu",
            "--features",
            f"{SAE}:{F_PARIS},{F_DEF},{F_DEAD}",
            *extra,
        ]
    )
    return cmd_explain(args)


def _rows(atlas: Path) -> pd.DataFrame:
    con = duckdb.connect(str(atlas), read_only=True)
    try:
        return con.execute("SELECT * FROM explanations ORDER BY feature").df().set_index("feature")
    finally:
        con.close()


def test_cli_explains_scores_stores_errors_and_retries(
    planted_atlas: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI() as fake:
        fake.faults = {"<< Paris>>": ["429"]}  # rate-limited once: retried, nothing lost
        fake.unparsable = {"<< def>>"}
        assert _run_cli(planted_atlas, fake.base_url) == 0
        first = _rows(planted_atlas)
        assert first.at[F_PARIS, "explanation"] == "the word Paris"
        assert first.at[F_PARIS, "detection"] == 1.0 and first.at[F_PARIS, "fuzzing"] == 1.0
        assert first.at[F_PARIS, "embedding_auroc"] > 0.5
        assert first.at[F_PARIS, "scorer_model"] == "fake-model"
        assert json.loads(first.at[F_PARIS, "detail"])["attempts"] == 2
        assert (
            pd.isna(first.at[F_DEF, "explanation"]) and "[EXPLANATION]" in first.at[F_DEF, "error"]
        )
        assert pd.isna(first.at[F_DEAD, "explanation"])
        assert set(first["explainer"]) == {"openai"} and set(first["prompt_version"]) == {
            llm.PROMPT_VERSION
        }
        assert not planted_atlas.with_name("atlas.duckdb.tmp").exists()

        fake.unparsable.clear()
        n_before = len(fake.requests)
        assert _run_cli(planted_atlas, fake.base_url) == 0  # no --overwrite: retries the NULL one
        asked = [
            r["messages"][-1]["content"]
            for r in fake.requests[n_before:]
            if "[EXPLANATION]" in r["messages"][0]["content"]
        ]
        assert len(asked) == 1 and "<< def>>" in asked[0]
    second = _rows(planted_atlas)
    assert second.at[F_DEF, "explanation"] == "miscellaneous tokens" and pd.isna(
        second.at[F_DEF, "error"]
    )
    assert second.at[F_PARIS, "created"] == first.at[F_PARIS, "created"]  # kept, not redone


def test_cli_refuses_a_build_in_progress(planted_atlas: Path) -> None:
    planted_atlas.with_name("atlas.duckdb.tmp").write_bytes(b"")
    assert _run_cli(planted_atlas, "http://127.0.0.1:9/v1") == 2
