"""Paired default / steered generation on the real model (few tokens, short prompts)."""

from __future__ import annotations

import pytest
import torch

from core.model.loading import LoadedModel
from core.steering import engine
from core.steering.engine import SaeBank, prepare
from core.steering.generate import (
    PairResult,
    SamplingConfig,
    generate_pair,
    next_tokens,
    stream_pair,
)
from core.steering.interventions import Intervention, SteeringError

PROMPT = "Write one sentence about the sea."
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=0.8, top_p=0.9, freq_penalty=1.0, seed=3)


def pair(lm: LoadedModel, bank: SaeBank, items: list[Intervention], **kw: object) -> PairResult:
    cfg = SamplingConfig(**{**SAMPLING.__dict__, **kw})
    prep = prepare(items, bank, lm.device, torch.float32)
    return generate_pair(lm.model, lm.tokenizer, PROMPT, prep, cfg)


def test_strength_zero_reproduces_default(lm: LoadedModel, bank: SaeBank) -> None:
    plain = pair(lm, bank, [])
    zero = pair(lm, bank, [Intervention("L2/resid_post", 3, strength=0.0)])
    assert plain.ids[0] == plain.ids[1] == zero.ids[0] == zero.ids[1]
    assert len(zero.ids[0]) > 0
    assert torch.equal(zero.first_logits[0], zero.first_logits[1])


def test_steering_changes_only_the_steered_row(lm: LoadedModel, bank: SaeBank) -> None:
    plain = pair(lm, bank, [])
    strong = pair(lm, bank, [Intervention("L2/resid_post", 3, strength=20.0)])
    assert strong.ids[0] == plain.ids[0]
    assert strong.ids[1] != strong.ids[0]


def test_stream_texts_match_result(lm: LoadedModel, bank: SaeBank) -> None:
    prep = prepare([Intervention("L5/resid_post", 1, strength=3.0)], bank, lm.device, torch.float32)
    steps = list(stream_pair(lm.model, lm.tokenizer, PROMPT, prep, SAMPLING))
    res = steps[-1].result
    assert res is not None and all(s.result is None for s in steps[:-1])
    assert steps[-1].texts == res.texts
    got = [t for s in steps if (t := s.tokens[1]) is not None]
    assert got == res.ids[1]


def test_error_mid_generation_leaves_no_hook(
    lm: LoadedModel, bank: SaeBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = pair(lm, bank, [])
    calls = {"n": 0}
    real = engine.site_delta

    def flaky(h: torch.Tensor, items: list[engine.Prepared]) -> list[torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == 3:  # fail in the middle of decoding
            raise RuntimeError("hook failed")
        return real(h, items)

    monkeypatch.setattr(engine, "site_delta", flaky)
    with pytest.raises(RuntimeError, match="hook failed"):
        pair(lm, bank, [Intervention("L2/resid_post", 3, "clamp", strength=5.0)])
    monkeypatch.undo()
    assert not any(m._forward_hooks for m in lm.model.modules())
    assert pair(lm, bank, []).ids == baseline.ids


def test_abandoned_stream_removes_hooks(lm: LoadedModel, bank: SaeBank) -> None:
    prep = prepare([Intervention("L2/resid_post", 3)], bank, lm.device, torch.float32)
    gen = stream_pair(lm.model, lm.tokenizer, PROMPT, prep, SAMPLING)
    next(gen)
    assert any(m._forward_hooks for m in lm.model.modules())
    gen.close()
    assert not any(m._forward_hooks for m in lm.model.modules())


def test_greedy_and_no_chat(lm: LoadedModel, bank: SaeBank) -> None:
    res = pair(lm, bank, [], temperature=0.0, chat=False, max_new_tokens=4)
    assert res.ids[0] == res.ids[1] and len(res.prompt_ids) < 12


@pytest.mark.parametrize(
    ("prompt", "kw", "message"),
    [
        ("   ", {}, "empty"),
        ("x " * 30_000, {}, "characters"),
        ("hi " * 1100, {}, "tokens"),
        (PROMPT, {"max_new_tokens": 5000}, "max_new_tokens"),
        (PROMPT, {"temperature": float("inf")}, "finite"),
        (PROMPT, {"top_p": 0.0}, "top_p"),
    ],
)
def test_bad_generation_input(
    lm: LoadedModel, bank: SaeBank, prompt: str, kw: dict, message: str
) -> None:
    with pytest.raises(SteeringError, match=message):
        cfg = SamplingConfig(**{**SAMPLING.__dict__, **kw})
        generate_pair(lm.model, lm.tokenizer, prompt, [], cfg)


def test_context_overflow(lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lm.model.config, "max_position_embeddings", 40)
    with pytest.raises(SteeringError, match="exceed the model context"):
        generate_pair(lm.model, lm.tokenizer, PROMPT, [], SamplingConfig(max_new_tokens=30))


def test_sampling_rules() -> None:
    """Greedy = argmax; frequency penalty lowers repeated tokens; top-p cuts the tail; one u."""
    logits = torch.tensor([[2.0, 1.9, -5.0], [2.0, 1.9, -5.0]])
    counts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    greedy = SamplingConfig(temperature=0.0, freq_penalty=0.5)
    assert next_tokens(logits, counts, greedy, 0.3).tolist() == [0, 1]
    nucleus = SamplingConfig(temperature=1.0, top_p=0.5, freq_penalty=0.0)
    assert next_tokens(logits, counts, nucleus, 0.999).tolist() == [0, 0]
    full = SamplingConfig(temperature=1.0, top_p=1.0, freq_penalty=0.0)
    assert next_tokens(logits, counts, full, 0.0).tolist() == [0, 0]
    assert next_tokens(logits, counts, full, 0.9999).tolist() == [2, 2]
