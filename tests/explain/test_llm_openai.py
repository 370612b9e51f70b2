"""The OpenAI-compatible client and the LLM explainer/scorers against a real local endpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from explain_fake_openai import FakeOpenAI
from explain_planted import F_DEAD, F_DEF, F_PARIS, SAE

from core.explain import llm
from core.explain.cli import add_explain_parser, cmd_explain
from core.explain.clients import OpenAIChat
from core.explain.windows import Example


def _client(url: str, **kw: object) -> OpenAIChat:
    args = {"concurrency": 4, "timeout_s": 0.5, "max_retries": 2, "sleep": lambda s: None, **kw}
    return OpenAIChat(url, "fake-model", "sk-test", **args)  # type: ignore[arg-type]


def _ask(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": llm.SYSTEM}, {"role": "user", "content": user}]


def test_client_retries_rate_limits_errors_and_timeouts() -> None:
    with FakeOpenAI(delay=1.0) as fake:
        fake.faults = {
            "c429": ["429"],
            "c500": ["500", "500"],
            "cbad": ["malformed"],
            "cslow": ["timeout"],
            "c401": ["401"],
            "cdead": ["500"] * 5,
        }
        client = _client(fake.base_url)
        keys = ["cok <<x>>", "c429", "c500", "cbad", "cslow", "c401", "cdead"]
        got = dict(zip(keys, client.complete([_ask(k) for k in keys], 50), strict=True))
    for k in ("cok <<x>>", "c429", "c500", "cbad", "cslow"):
        assert got[k].text is not None and got[k].error is None, k
    assert [got[k].attempts for k in ("cok <<x>>", "c429", "c500", "cbad", "cslow")] == [
        1,
        2,
        3,
        2,
        2,
    ]
    assert got["c401"].text is None and "HTTP 401" in str(got["c401"].error)
    assert got["c401"].attempts == 1  # a bad key is not retried
    assert got["cdead"].text is None and "gave up after 3 attempts" in str(got["cdead"].error)
    assert all(r["temperature"] == 0 and r["model"] == "fake-model" for r in fake.requests)
    assert all(h["Authorization"] == "Bearer sk-test" for h in fake.headers)
    usage = client.usage.summary()
    assert usage["calls"] == 7 and usage["failed"] == 2 and usage["retries"] == 1 + 2 + 1 + 1 + 2
    assert usage["prompt_tokens"] > 0


def test_unreachable_endpoint_is_an_error_not_a_crash() -> None:
    with FakeOpenAI() as fake:
        url = fake.base_url
    out = _client(url, max_retries=1).complete([_ask("hello")], 20)[0]
    assert out.text is None and "gave up after 2 attempts" in str(out.error)


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
