"""The stage registry: every entry is a real stage function, and listing the names is cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.pipeline.run import expand_overwrite
from core.pipeline.stages import STAGE_NAMES, STAGES, LazyStage

REPO = Path(__file__).resolve().parents[2]


def test_every_stage_resolves_to_its_function() -> None:
    for name, stage in STAGES.items():
        assert isinstance(stage, LazyStage)
        fn = stage.resolve()
        assert callable(fn) and fn.__name__ == f"stage_{name}"


def test_names_come_without_importing_the_stages() -> None:
    code = (
        "import sys; from core.pipeline.stages import STAGE_NAMES; "
        "print(len(STAGE_NAMES), 'torch' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert res.stdout.split() == [str(len(STAGE_NAMES)), "False"]


def test_overwrite_runs_a_stage_and_all_after_it() -> None:
    assert expand_overwrite({"stats"}) == set(STAGE_NAMES[STAGE_NAMES.index("stats") :])
    # a side-file stage means a fresh forward pass: from capture on
    assert expand_overwrite({"encode"}) == set(STAGE_NAMES[STAGE_NAMES.index("capture") :])
