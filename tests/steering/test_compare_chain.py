"""compare_chain on the tiny atlas: every mode runs, and modes that mean the same steering agree."""

from __future__ import annotations

from pathlib import Path

from core.steering.compare_chain import compare


def test_compare_runs_every_mode_on_the_tiny_atlas(tiny_atlas: Path) -> None:
    df = compare(tiny_atlas, "wiki_fr", [0.0, 2.0], "The weather today is", 6)
    assert len(df) == 8  # 4 modes x 2 strengths
    assert df["mode"].iloc[0] == "single" and df["mode"].str.startswith("chain").sum() == 6
    # strength 0 is the default in every mode: same text measured twice
    zero = df[df["strength"] == 0.0]
    assert (zero["act_steered"] == zero["act_default"]).all()
    assert (zero["ppl_steered"] == zero["ppl_default"]).all()
    # the tiny SAEs' chains stop at the seed (best s(R) 0.32 < the 0.5 cut): all modes coincide
    two = df[df["strength"] == 2.0]
    assert two["mode"].iloc[1] == "chain x1"
    assert two["text"].nunique() == 1 and two["act_steered"].nunique() == 1
