"""LLM calls fanned out over Ray actors (a local 2-CPU cluster) against the real local endpoint:
every call answered in order, failures stored as errors, concurrency bounded."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pandas as pd
import pytest
import ray
from explain_fake_openai import FakeOpenAI

from core.explain import llm
from core.explain.clients import OpenAIChat
from core.explain.llm import parse_explanation
from core.explain.ray_chat import RayChat
from core.explain.windows import Example


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _ray_chat(url: str, per_actor: int = 2) -> RayChat:
    factory = partial(OpenAIChat, url, "fake-model", None, per_actor, 5.0, 2)
    return RayChat(factory, "fake-model", actors=2, batch=3)


def _ask(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": llm.SYSTEM}, {"role": "user", "content": user}]


def test_answers_in_order_errors_stored_concurrency_bounded(cluster: None) -> None:
    with FakeOpenAI(latency=0.2) as fake:
        fake.faults = {"c401": ["401"], "c500": ["500"]}
        keys = [f"k{i} << Paris>>" if i % 2 else f"k{i}" for i in range(14)] + ["c401", "c500"]
        chat = _ray_chat(fake.base_url)
        try:
            got = chat.complete([_ask(k) for k in keys], 50)
        finally:
            chat.close()
        in_flight = fake.max_in_flight
    assert len(got) == len(keys)
    for key, c in zip(keys[:14], got[:14], strict=True):  # each answer is its own prompt's
        want = "the word Paris" if "Paris" in key else "miscellaneous tokens"
        assert parse_explanation(str(c.text)) == want, key
    assert got[14].text is None and "401" in str(got[14].error)  # refused: an error, no text
    assert got[15].text is not None and got[15].attempts == 2  # a 500 is retried in the actor
    assert 1 < in_flight <= 2 * 2  # both actors at work, never over actors × per-actor limit
    assert chat.usage.calls == len(keys) and chat.usage.failed == 1


def test_explain_over_ray_gives_every_feature_a_row_or_an_error(cluster: None) -> None:
    paris = Example([" in", " Paris"], np.array([0.0, 3.0]))
    other = Example([" the", " cat"], np.array([1.0, 0.0]))
    examples = {f: [paris if f % 2 else other] for f in range(8)} | {8: []}
    with FakeOpenAI() as fake:
        fake.unparsable = {"<< the>>"}
        chat = _ray_chat(fake.base_url)
        try:
            rows = llm.explain(chat, examples, list(range(9)), 50).set_index("feature")
        finally:
            chat.close()
    assert list(rows.index) == list(range(9))
    for f in range(1, 8, 2):
        assert rows.at[f, "explanation"] == "the word Paris"
    for f in (*range(0, 8, 2), 8):  # unparsable or never fires: NULL and the reason
        assert pd.isna(rows.at[f, "explanation"]) and rows.at[f, "error"], f
