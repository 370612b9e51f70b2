"""Capture and encode on Ray: the corpus cut into shards of whole chunks, one actor per device.

A shard is a list of the single-process build's chunks (chunk_contexts contexts each, in the
same longest-first order, batched the same way), so every Parquet part and every memmap row an
actor writes is the one the single-process build writes: the statistics that DuckDB computes
from them are the same, bit for bit. Each chunk's files are renamed into place and then marked
done (capture.ChunkLog), so a shard whose actor dies is re-run on a fresh actor and skips the
chunks already done, and a build killed at the driver resumes with only the unfinished chunks.

What travels: the contexts go once into Ray's object store (O(N) token ids); each actor loads
the model and the SAEs itself (from the model spec and the SAE folders), and writes its files
straight into the run's folders. Nothing else passes through the driver but token counts.
A multi-node cluster needs the atlas folder on a path every node sees (NFS or the like).

Cost: the capture's O(N·forward + N·Σ d_in·d_sae) split over A actors, plus one model load per
actor; driver memory O(N) for the contexts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.pipeline import capture as cap
from core.pipeline.config import ModelConfig, RayConfig
from core.pipeline.tokenize import Context
from core.ray_cluster import start_ray

if TYPE_CHECKING:
    from core.pipeline.context import BuildContext

_KILL_ENV = "SAE_ATLAS_TEST_KILL_SHARD"
"""Fault injection for the tests: 'SHARD:MARKER' makes the actor running SHARD SIGKILL itself
after its first chunk, once (MARKER, a file path, records that it happened)."""


@dataclass(frozen=True)
class SaeSource:
    """Where an actor loads one SAE from: a user's folder (any format) or a trained SAELens one."""

    site: str
    path: str
    format: str | None


@dataclass(frozen=True)
class DenseTarget:
    """A memmap of captured activations (n_tokens, d_model) float16 that actors write into."""

    site: str
    path: str
    n_tokens: int
    d_model: int

    def open(self) -> np.memmap:
        shape = (self.n_tokens, self.d_model)
        return np.memmap(self.path, dtype=np.float16, mode="r+", shape=shape)


class ShardWorker:
    """A Ray actor: the model and SAEs on its device, running capture or encode on shards."""

    def __init__(self, model: ModelConfig, threads: int) -> None:
        import torch

        from core.model.loading import load_model

        if threads > 0:
            torch.set_num_threads(threads)
        self.lm = load_model(model.spec, model.device, model.dtype)
        self.model_cfg = model
        self._saes: dict[SaeSource, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def _sae(self, src: SaeSource) -> Any:
        from core.model.sites import Site
        from core.sae.formats import load_sae

        if src not in self._saes:
            d = int(self.lm.model.config.hidden_size)
            sae = load_sae(src.path, src.format, expected_d_in=d, site=src.site)
            self._saes[src] = (Site.parse(src.site), sae.to(self.lm.device))
        return self._saes[src]

    def capture(
        self,
        shard: int,
        chunks: list[int],
        ctxs: list[Context],
        sites: list[str],
        given: list[SaeSource],
        dense: list[DenseTarget],
        acts_dir: str,
    ) -> int:
        from core.model.sites import Site

        saes = dict(self._sae(s) for s in given)
        mms = {Site.parse(t.site): t.open() for t in dense}
        pad = int(self.lm.tokenizer.pad_token_id or 0)
        return cap.run_capture(
            self.lm.model,
            ctxs,
            [Site.parse(s) for s in sites],
            saes,
            mms,
            Path(acts_dir),
            self.model_cfg.batch_size,
            pad,
            self.lm.device,
            chunks=chunks,
            after_chunk=_fault_hook(shard),
            chunk_contexts=self.model_cfg.chunk_contexts,
        )

    def encode(
        self,
        shard: int,
        chunks: list[int],
        trained: list[SaeSource],
        dense: list[DenseTarget],
        doc: np.ndarray,
        pos: np.ndarray,
        keep: np.ndarray,
        chunk_rows: int,
        acts_dir: str,
    ) -> int:
        saes = dict(self._sae(s) for s in trained)
        by_site = {t.site: t for t in dense}
        mms = {site: by_site[site.id].open() for site in saes}
        return cap.encode_dense(
            saes,
            mms,
            doc,
            pos,
            keep,
            Path(acts_dir),
            self.lm.device,
            chunk_rows,
            chunks=chunks,
            after_chunk=_fault_hook(shard),
        )


def _fault_hook(shard: int) -> Callable[[int], None] | None:
    spec = os.environ.get(_KILL_ENV)
    if not spec:
        return None
    target, marker = spec.split(":", 1)
    if int(target) != shard or Path(marker).exists():
        return None

    def kill(_chunk: int) -> None:
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    return kill


# ---- the driver side -------------------------------------------------------------------------
def split(chunks: list[int], n_shards: int) -> list[list[int]]:
    """Contiguous runs of chunks, as even as possible (shard order never changes the output)."""
    n_shards = max(1, min(n_shards, len(chunks)))
    return [list(part) for part in np.array_split(np.asarray(chunks, dtype=int), n_shards)]


class ActorPool:
    """A fixed number of ShardWorker actors; a shard whose actor dies runs again on a new one."""

    def __init__(self, cfg: RayConfig, model: ModelConfig) -> None:
        import ray

        self.ray = ray
        self._owns_ray = start_ray(cfg.address, cfg.num_cpus)  # a cluster it started, it stops
        res = ray.cluster_resources()
        gpus, cores = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        threads = cfg.threads or max(1, cores // 8)
        self.n_actors = cfg.actors or gpus or max(1, cores // threads)
        # one GPU per actor; on CPU, actors × threads never exceeds the cores
        opts: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": threads}
        self._factory = ray.remote(**opts)(ShardWorker)
        self._model = model if gpus else _on_cpu(model)
        self._threads = 0 if gpus else threads
        self.actors = [self._new() for _ in range(self.n_actors)]

    def _new(self) -> Any:
        return self._factory.remote(self._model, self._threads)

    def run(self, method: str, shards: list[list[int]], *args: Any) -> int:
        """Run `method(shard_id, chunks, *args)` for every shard; returns the summed results."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        pending = list(enumerate(shards))
        running: dict[Any, tuple[int, int]] = {}  # ref -> (shard id, actor slot)
        free = list(range(len(self.actors)))
        total = 0
        while pending or running:
            while pending and free:
                shard, slot = pending.pop(0), free.pop(0)
                ref = getattr(self.actors[slot], method).remote(shard[0], shard[1], *args)
                running[ref] = (shard[0], slot)
            done, _ = self.ray.wait(list(running), num_returns=1)
            shard_id, slot = running.pop(done[0])
            try:
                total += int(self.ray.get(done[0]))
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                self.actors[slot] = self._new()  # a fresh process; done chunks are skipped
                pending.append((shard_id, shards[shard_id]))
            free.append(slot)
        return total

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self._owns_ray:
            self.ray.shutdown()


def _on_cpu(model: ModelConfig) -> ModelConfig:
    from dataclasses import replace

    return replace(model, device="cpu")


def _dense_targets(ctx: BuildContext) -> list[DenseTarget]:
    return [
        DenseTarget(s.id, str(ctx.dense_file(s)), ctx.n_tokens(), ctx.d_model)
        for s in ctx.to_train()
    ]


def _given(ctx: BuildContext) -> list[SaeSource]:
    out = []
    for s in ctx.sites:
        spec = ctx.spec(s)
        if spec.path is not None:
            out.append(SaeSource(s.id, str(spec.path), spec.format))
    return out


def capture_on_ray(ctx: BuildContext, pool: ActorPool) -> int:
    """The capture stage over shards: given SAEs encoded live, the rest stored dense."""
    n_chunks = cap.n_chunks(len(ctx.ctxs), ctx.cfg.model.chunk_contexts)
    shards = split(list(range(n_chunks)), ctx.cfg.ray.shards or 2 * pool.n_actors)
    ctxs = pool.ray.put(ctx.ctxs)
    sites = [s.id for s in ctx.sites]
    return pool.run(
        "capture", shards, ctxs, sites, _given(ctx), _dense_targets(ctx), str(ctx.acts_dir)
    )


def encode_on_ray(
    ctx: BuildContext, pool: ActorPool, doc: np.ndarray, pos: np.ndarray, keep: np.ndarray
) -> int:
    """The encode stage over shards of the dense memmaps' row chunks."""
    trained = [SaeSource(s.id, str(ctx.weights_dir(s)), "saelens") for s in ctx.to_train()]
    rows = ctx.cfg.model.chunk_contexts * ctx.cfg.corpus.ctx_len
    chunks = list(range(cap.n_chunks(len(doc), rows)))
    shards = split(chunks, ctx.cfg.ray.shards or 2 * pool.n_actors)
    put = pool.ray.put
    return pool.run(
        "encode",
        shards,
        trained,
        _dense_targets(ctx),
        put(doc),
        put(pos),
        put(keep),
        rows,
        str(ctx.acts_dir),
    )
