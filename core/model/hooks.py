"""Forward hooks as context managers that always remove themselves (in `finally`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

# A site hook maps the module's main output tensor (B, T, d) to a replacement, or None to keep it.
TensorHook = Callable[[torch.Tensor], torch.Tensor | None]


class StopForward(Exception):
    """Raised inside a hook to end the forward pass after the deepest needed layer."""


def main_output(output: Any) -> torch.Tensor:
    """Decoder blocks and attention return tuples in some versions; the tensor comes first."""
    return output[0] if isinstance(output, tuple) else output


def _wrap(fn: TensorHook) -> Callable[..., Any]:
    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        new = fn(main_output(output))
        if new is None:
            return None
        if isinstance(output, tuple):
            return (new, *output[1:])
        return new

    return hook


@contextmanager
def hooked(hooks: list[tuple[torch.nn.Module, TensorHook]]) -> Iterator[None]:
    """Attach forward hooks for the duration of the block; removed even on error."""
    handles = []
    try:
        for module, fn in hooks:
            handles.append(module.register_forward_hook(_wrap(fn)))
        yield
    finally:
        for h in handles:
            h.remove()
