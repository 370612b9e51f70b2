"""The local transformers back-end end to end with the real SmolLM2: the quality of its
answers is irrelevant here, parsing and storage are what is tested."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from explain_planted import F_PARIS, SAE

from core.explain import scorers
from core.explain.clients import LocalChat
from core.explain.config import ExplainConfig
from core.explain.stage import explain_atlas
from core.explain.windows import Example
from core.store.atlas import AtlasWriter
from core.store.runs import define_activations_view

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol() -> LocalChat:
    return LocalChat("default", device="cpu", batch_size=4)


def test_local_explainer_stores_an_explanation_or_null_with_error(
    planted_atlas: Path, smol: LocalChat
) -> None:
    cfg = ExplainConfig(
        explainer="local",
        device="cpu",
        n_train=6,
        n_test=6,
        n_random=6,
        n_hard=6,
        score_windows=4,
        per_prompt=4,
        max_new_tokens=40,
    )
    w = AtlasWriter(planted_atlas)
    define_activations_view(w.con, planted_atlas.parent / "acts-test")
    out = explain_atlas(w, cfg, features={SAE: [F_PARIS]}, backend=smol)
    row = w.con.execute("SELECT * FROM explanations").df().iloc[0]
    w.close()
    assert out["usage"]["calls"] >= 1 and out["model"] == smol.model
    assert row["explainer"] == "local" and row["model"] == smol.model
    if isinstance(row["explanation"], str):  # parsed: scored by the same model
        assert row["explanation"].strip() and pd.isna(row["error"])
        for col in ("detection", "fuzzing"):
            assert math.isnan(row[col]) or 0.0 <= row[col] <= 1.0
    else:  # unparsable: NULL, the reason, and the raw answer kept for debugging
        assert "[EXPLANATION]" in row["error"] and "answer" in json.loads(row["detail"])


def test_local_detection_and_fuzzing_parse_or_count_failures(smol: LocalChat) -> None:
    import numpy as np

    pos = [Example([" la", " ville", " de", " Paris"], np.array([0, 0, 0, 3.0]))] * 2
    neg = [Example([" the", " lion", " hunts", " zebras"], np.zeros(4))] * 2
    prompts = scorers.build_prompts(0, "the word Paris", pos, neg, per_prompt=4, seed=0)
    got = scorers.llm_scores(smol, prompts, max_tokens=16).iloc[0]
    n_prompts = len(prompts)
    assert 0 <= got["n_failed"] <= n_prompts
    for col in ("detection", "fuzzing"):
        assert math.isnan(got[col]) or 0.0 <= got[col] <= 1.0
