"""The shared LiveModel: concurrent sessions, the waiting state, measuring and prompt search."""

from __future__ import annotations

import threading

import pytest

from core.model.loading import LoadedModel
from core.steering.engine import SaeBank
from core.steering.generate import PairResult, SamplingConfig
from core.steering.interventions import Intervention, SteeringError
from core.steering.live import LiveModel, Turnstile

PROMPT = "Name a colour."
CFG = SamplingConfig(max_new_tokens=6, temperature=0.7, seed=5)


@pytest.fixture
def live(lm: LoadedModel, bank: SaeBank) -> LiveModel:
    return LiveModel(lm, bank)


def test_concurrent_sessions_get_their_own_results(live: LiveModel) -> None:
    jobs = {
        "a": [Intervention("L2/resid_post", 3, strength=12.0)],
        "b": [Intervention("L5/resid_post", 9, strength=-12.0)],
    }
    alone = {k: live.generate(PROMPT, v, CFG) for k, v in jobs.items()}
    together: dict[str, PairResult] = {}

    def work(key: str) -> None:
        together[key] = live.generate(PROMPT, jobs[key], CFG)

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert {k: r.ids for k, r in together.items()} == {k: r.ids for k, r in alone.items()}
    assert alone["a"].ids[1] != alone["b"].ids[1]
    assert not live.busy


def test_waiting_state_while_another_session_generates(live: LiveModel) -> None:
    with live.turn():
        assert live.busy
        stream = live.stream(PROMPT, [], SamplingConfig(max_new_tokens=2), poll=0.01)
        first = next(stream)
        assert first.waiting >= 1 and first.result is None
    steps = list(stream)
    assert steps[-1].result is not None and steps[-1].waiting == 0
    assert not live.busy


def test_turnstile_is_fifo_and_survives_abandoned_tickets() -> None:
    ts = Turnstile()
    a, b, c = ts.take(), ts.take(), ts.take()
    assert ts.ahead(c) == 2
    ts.leave(b)  # b gives up while waiting
    assert ts.ahead(c) == 1 and not ts.wait(c, 0.01)
    ts.leave(a)
    assert ts.wait(c, 0.01)
    ts.leave(c)
    assert not ts.busy and ts.queued == 0


def test_closing_a_stream_releases_the_turn(live: LiveModel) -> None:
    stream = live.stream(PROMPT, [Intervention("L2/resid_post", 1)], CFG)
    next(stream)
    assert live.busy
    stream.close()
    assert not live.busy
    assert not any(m._forward_hooks for m in live.lm.model.modules())


def test_measure_reports_concept_fluency_and_kl(live: LiveModel) -> None:
    zero = live.generate(PROMPT, [Intervention("L3/resid_post", 2, strength=0.0)], CFG)
    m0 = live.measure(zero, [("L3/resid_post", 2)])
    assert m0.kl_prompt_end == pytest.approx(0.0, abs=1e-9)
    assert m0.perplexity[0] == pytest.approx(m0.perplexity[1])
    assert m0.features[0].mean[0] == pytest.approx(m0.features[0].mean[1])
    strong = live.generate(PROMPT, [Intervention("L3/resid_post", 2, strength=30.0)], CFG)
    m1 = live.measure(strong, [("L3/resid_post", 2)])
    assert m1.kl_prompt_end > 0.01
    assert list(m1.frame().columns[:3]) == ["sae_id", "feature", "mean_default"]


def test_prompt_search(live: LiveModel) -> None:
    res = live.search("Le chat est sur la table.", ["L2/resid_post", "L5/resid_post"], k=3)
    assert set(res.per_token["sae_id"]) == {"L2/resid_post", "L5/resid_post"}
    assert res.per_token.groupby(["sae_id", "pos"]).size().max() <= 3
    assert (res.per_token["act"] > 0).all()
    top = res.summary[res.summary.sae_id == "L2/resid_post"]
    assert top["score"].is_monotonic_decreasing and len(top) > 0
    assert res.tokens[0] == "Le"
    with pytest.raises(SteeringError, match="empty"):
        live.search(" ", ["L2/resid_post"])
    with pytest.raises(SteeringError, match="unknown SAE"):
        live.search("hello", ["L9/resid_post"])
