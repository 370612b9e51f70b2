"""One model and its SAEs shared by every app session (thread-safe).

Forward hooks are global to a module, so every forward pass through the shared model —
steered generation, measuring, prompt search — takes a turn at a FIFO turnstile; a session
that waits sees its place in the queue (PairStep.waiting).

The passes themselves run on one long-lived `ModelThread`, not in the sessions' threads: the
pages that never touch the model share the process with generation, and on a CPU torch's
OpenMP threads (one per core by default) spin at barriers and compete with the pages for every
core. The model thread runs torch with a thread budget (half the cores, at least one) and at a
lower scheduling priority, so page threads are served first.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch

from core.model.loading import LoadedModel, load_model
from core.model.sites import Site
from core.sae.formats import load_sae
from core.sae.formats.hub import is_hub_spec
from core.steering.engine import SaeBank, SaeEntry, prepare
from core.steering.generate import PairResult, PairStep, SamplingConfig, stream_pair
from core.steering.interventions import Intervention
from core.steering.measure import SteerMeasures, measure_pair
from core.steering.prompt_search import PromptSearch, search_text
from core.store import steering_sql
from core.store.atlas import Atlas
from core.store.runs import latest_run

T = TypeVar("T")
GENERATION_NICE = 10
"""How much lower the model thread's priority is than the pages' (Linux nice steps)."""


def default_threads() -> int:
    """Half the cores this process may use, at least one: the rest stay free for pages."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 2) // 2)


class ModelThread:
    """One thread that runs every forward pass, with `threads` torch threads and nice `nice`.

    `call(fn, *args)` runs fn there and returns (or raises) its result in the caller."""

    def __init__(self, threads: int | None = None, nice: int = GENERATION_NICE) -> None:
        self.threads = threads or default_threads()
        self.nice = nice
        self.native_id: int | None = None
        self._pool = ThreadPoolExecutor(1, "live-model", initializer=self._setup)

    def _setup(self) -> None:
        self.native_id = threading.get_native_id()
        torch.get_num_threads()  # initialise this thread's OpenMP state now, not later from globals
        torch.set_num_threads(self.threads)
        if self.nice > 0 and sys.platform == "linux":  # per thread on Linux (a TID is a task)
            now = os.getpriority(os.PRIO_PROCESS, self.native_id)
            try:
                os.setpriority(os.PRIO_PROCESS, self.native_id, min(19, now + self.nice))
            except OSError:
                pass

    def _run(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        if torch.get_num_threads() != self.threads:  # another thread reset the process default
            torch.set_num_threads(self.threads)
        return fn(*args)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        return self._pool.submit(self._run, fn, args).result()


class Turnstile:
    """A FIFO lock: tickets are served in order; a waiter can ask how many are ahead."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0
        self._gone: set[int] = set()

    def take(self) -> int:
        with self._cond:
            self._next += 1
            return self._next - 1

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """True once it is `ticket`'s turn (False after `timeout` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._serving == ticket, timeout)

    def ahead(self, ticket: int) -> int:
        with self._cond:
            return max(0, ticket - self._serving - len([t for t in self._gone if t < ticket]))

    def leave(self, ticket: int) -> None:
        """End a turn, or give up a ticket still waiting; never blocks the queue."""
        with self._cond:
            self._gone.add(ticket)
            while self._serving in self._gone:
                self._gone.discard(self._serving)
                self._serving += 1
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._serving < self._next

    @property
    def queued(self) -> int:
        """Sessions holding or waiting for a turn."""
        with self._cond:
            return self._next - self._serving - len(self._gone)


class LiveModel:
    """The model + SAEs loaded once; generation, measuring and search, one session at a time."""

    def __init__(
        self,
        lm: LoadedModel,
        bank: SaeBank,
        threads: int | None = None,
        nice: int = GENERATION_NICE,
    ) -> None:
        self.lm = lm
        self.bank = bank
        self.turns = Turnstile()
        self.worker = ModelThread(threads, nice)

    @classmethod
    def from_atlas(
        cls, atlas: Path | Atlas, device: str = "auto", threads: int | None = None
    ) -> LiveModel:
        """The atlas's model (runs.config) and lazy loaders for its SAEs (saes.weights_path)."""
        own = not isinstance(atlas, Atlas)
        db = atlas if isinstance(atlas, Atlas) else Atlas(Path(atlas))
        cur = db.cursor()
        try:
            run = latest_run(cur)
            spec = run.config.get("model", {}).get("spec", "default") if run else "default"
            saes = steering_sql.sae_weights(cur)
            maxes = steering_sql.max_acts(cur)
        finally:
            cur.close()
            if own:
                db.close()
        lm = load_model(spec, device=device)
        loaders = {sid: _loader(lm, sid, _weights(db.path.parent, wp), maxes) for sid, wp in saes}
        return cls(lm, SaeBank(loaders=loaders), threads=threads)

    # ---- turns -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.turns.busy

    @contextmanager
    def turn(self) -> Iterator[None]:
        ticket = self.turns.take()
        try:
            self.turns.wait(ticket)
            yield
        finally:
            self.turns.leave(ticket)

    # ---- work ------------------------------------------------------------------------------
    def stream(
        self,
        prompt: str,
        interventions: list[Intervention],
        cfg: SamplingConfig,
        poll: float = 0.25,
    ) -> Generator[PairStep, None, None]:
        """Waiting steps (waiting > 0) while queued, then the generation's steps; the turn and
        the hooks end when the generator ends, fails or is closed. Each step runs on the model
        thread; this generator only hands the steps over."""
        lm = self.lm
        prepared = self.worker.call(prepare, interventions, self.bank, lm.device, lm.model.dtype)
        ticket = self.turns.take()
        steps: Generator[PairStep, None, None] | None = None
        try:
            while not self.turns.wait(ticket, poll):
                yield PairStep(-1, (None, None), ("", ""), waiting=max(1, self.turns.ahead(ticket)))
            steps = stream_pair(lm.model, lm.tokenizer, prompt, prepared, cfg)
            while (step := self.worker.call(next, steps, None)) is not None:
                yield step
        finally:
            if steps is not None:
                self.worker.call(steps.close)  # removes the hooks before the next turn
            self.turns.leave(ticket)

    def generate(
        self, prompt: str, interventions: list[Intervention], cfg: SamplingConfig
    ) -> PairResult:
        for step in self.stream(prompt, interventions, cfg):
            if step.result is not None:
                return step.result
        raise RuntimeError("generation ended without a result")  # unreachable

    def measure(self, result: PairResult, targets: list[tuple[str, int]]) -> SteerMeasures:
        with self.turn():
            return self.worker.call(measure_pair, self.lm.model, self.bank, result, targets)

    def search(self, text: str, sae_ids: list[str], k: int = 5) -> PromptSearch:
        with self.turn():
            lm = self.lm
            return self.worker.call(
                search_text, lm.model, lm.tokenizer, self.bank, sae_ids, text, k
            )


def _weights(folder: Path, weights_path: str) -> str | Path:
    """Trained SAEs are stored relative to the atlas folder; given ones as the build saw them."""
    if is_hub_spec(weights_path) or Path(weights_path).is_absolute():
        return weights_path
    inside = folder / weights_path
    return inside if inside.exists() else Path(weights_path)


def _loader(
    lm: LoadedModel, sae_id: str, path: str | Path, maxes: pd.DataFrame
) -> Callable[[], SaeEntry]:
    def load() -> SaeEntry:
        t0 = time.time()
        site = Site.parse(sae_id)
        d_model = int(lm.model.config.hidden_size)
        sae = load_sae(path, expected_d_in=d_model, site=sae_id).to(lm.device).eval()
        sae.requires_grad_(False)
        rows = maxes[maxes["sae_id"] == sae_id]
        max_act = torch.full((sae.d_sae,), float("nan"))
        max_act[torch.tensor(rows["feature"].to_numpy(), dtype=torch.long)] = torch.tensor(
            rows["max_act"].to_numpy(dtype="float32")
        )
        print(f"[live] SAE {sae_id} loaded in {time.time() - t0:.1f}s")
        return SaeEntry(sae_id, site, sae, max_act)

    return load
