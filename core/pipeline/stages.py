"""The build's stages, in the order they run: name -> function(ctx) -> detail.

This registry is the one list of stages: the dispatcher (run.py) runs it in order, the names
`--overwrite` accepts come from it, and each stage's `detail` (a small JSON-able summary) is
kept in the atlas's `stages` table. A stage depends only on the stages before it.

Each function is named by module and attribute and imported on first call: the stage modules
import torch, transformers and the embedding model (seconds), and the command line needs only
the names. tests/pipeline/test_stages.py checks that every entry resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.pipeline.context import BuildContext

Stage = Callable[["BuildContext"], dict[str, Any]]


@dataclass(frozen=True)
class LazyStage:
    """`module.function`, imported when the stage first runs."""

    module: str
    function: str

    def resolve(self) -> Stage:
        fn: Stage = getattr(importlib.import_module(self.module), self.function)
        return fn

    def __call__(self, ctx: BuildContext) -> dict[str, Any]:
        return self.resolve()(ctx)


_STEPS = "core.pipeline.steps"

STAGES: dict[str, Stage] = {
    "corpus": LazyStage(_STEPS, "stage_corpus"),
    "capture": LazyStage(_STEPS, "stage_capture"),
    "train": LazyStage(_STEPS, "stage_train"),
    "encode": LazyStage(_STEPS, "stage_encode"),
    "quality": LazyStage(_STEPS, "stage_quality"),
    "stats": LazyStage(_STEPS, "stage_stats"),
    "logits": LazyStage(_STEPS, "stage_logits"),
    "neighbours": LazyStage(_STEPS, "stage_neighbours"),
    "explain": LazyStage("core.explain.stage", "stage_explain"),
    "geometry": LazyStage("core.geometry.stage", "stage_geometry"),
    "flow": LazyStage("core.flow.stage", "stage_flow"),
}

STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
