"""The feature label that Map, Flow and Prompt search hand to plotly: every piece of text escaped."""

from __future__ import annotations

import numpy as np

from core.render import feature_label, plot_text

XSS = "<script>alert(1)</script>"


def test_feature_label_escapes_every_piece_of_text() -> None:
    label = feature_label(
        "L1/<b>",
        7,
        f"fires on {XSS}",
        np.array(["<b>bold</b>", "&amp"]),
        note=" · <i>lobe</i>",
        details=["class: <u>x</u>"],
    )
    lines = label.split("<br>")
    assert lines[0] == "<b>L1/&lt;b&gt; · 7</b> · &lt;i&gt;lobe&lt;/i&gt;"
    assert lines[1] == "fires on &lt;script&gt;alert(1)&lt;/script&gt;"
    assert lines[2] == "class: &lt;u&gt;x&lt;/u&gt;"
    assert lines[3] == "top: &#x27;&lt;b&gt;bold&lt;/b&gt;&#x27;, &#x27;&amp;amp&#x27;"


def test_feature_label_cuts_and_skips_what_is_missing() -> None:
    assert feature_label(None, 3, None, float("nan"), note="  0.50  (40% of max)") == (
        "#3  0.50  (40% of max)"
    )
    label = feature_label("s", 1, "x" * 200, list("abcdefgh"), max_chars=10, n_tokens=2)
    assert label == "<b>s · 1</b><br>xxxxxxxxxx<br>top: &#x27;a&#x27;, &#x27;b&#x27;"


def test_plot_text_escapes_markup() -> None:
    assert plot_text("<b>&") == "&lt;b&gt;&amp;"
