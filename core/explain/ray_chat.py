"""Explanation and scoring calls fanned out over Ray actors, with bounded concurrency.

`RayChat` is a ChatBackend like the others: `complete(conversations)` returns one Completion per
conversation, in order. It cuts the conversations into batches and keeps at most one batch in
flight per actor; each actor holds its own back-end (a local transformers model, on its own GPU
when there are GPUs, or an OpenAI-compatible client with its own bounded thread pool), so the
calls in flight are at most actors × the inner back-end's concurrency. A failed call is a
Completion with an error, as everywhere (stored as a NULL explanation and its error). A batch
whose actor dies runs once more on a new actor; if that dies too, its calls become errors.

Cost: the calls themselves; the driver holds only the prompts and the answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.explain.clients import ChatBackend, Completion, Messages, Usage

BackendFactory = Callable[[], ChatBackend]
"""Builds the back-end inside an actor (a picklable callable, e.g. a functools.partial)."""


class _ChatActor:
    def __init__(self, factory: BackendFactory) -> None:
        self.backend = factory()

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        return self.backend.complete(conversations, max_tokens)


class RayChat:
    """A ChatBackend whose calls run on `actors` Ray actors, `batch` conversations at a time."""

    def __init__(
        self,
        factory: BackendFactory,
        model: str,
        actors: int,
        batch: int = 16,
        num_gpus: float = 0,
        owns_ray: bool = False,
    ) -> None:
        """`owns_ray`: the caller started the cluster for this back-end; close() stops it."""
        import ray

        self.ray, self.model, self.batch = ray, model, batch
        self.usage = Usage()
        self._owns_ray = owns_ray
        opts: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {"num_cpus": 1}
        self._remote: Any = ray.remote(**opts)(_ChatActor)
        self._factory = factory
        self.actors: list[Any] = [self._remote.remote(factory) for _ in range(max(1, actors))]

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        from ray.exceptions import RayActorError

        batches = [
            (lo, conversations[lo : lo + self.batch])
            for lo in range(0, len(conversations), self.batch)
        ]
        out: list[Completion | None] = [None] * len(conversations)
        pending = [(lo, convs, 0) for lo, convs in batches]  # (offset, batch, tries so far)
        running: dict[Any, tuple[int, list[Messages], int, int]] = {}
        free = list(range(len(self.actors)))
        while pending or running:
            while pending and free:
                lo, convs, tries = pending.pop(0)
                slot = free.pop(0)
                ref = self.actors[slot].complete.remote(convs, max_tokens)
                running[ref] = (lo, convs, tries, slot)
            done, _ = self.ray.wait(list(running), num_returns=1)
            lo, convs, tries, slot = running.pop(done[0])
            try:
                answers = self.ray.get(done[0])
            except RayActorError as err:
                self.actors[slot] = self._remote.remote(self._factory)
                if tries == 0:
                    pending.append((lo, convs, 1))
                    free.append(slot)
                    continue
                answers = [Completion(None, f"explainer actor died: {err}"[:300]) for _ in convs]
            out[lo : lo + len(convs)] = answers
            free.append(slot)
        for c in out:
            assert c is not None
            self.usage.add(c, 0.0)
        return [c for c in out if c is not None]

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self._owns_ray:
            self.ray.shutdown()
