"""Capture and encode: one forward pass over the corpus serves every SAE site.

Per batch of contexts, the activations at every site are either encoded straight into sparse
rows (SAE given) or stored dense in a memmap (SAE still to be trained; encoded after training
from the memmap, so the model still runs once). Work is cut into chunks of contexts; each
chunk's Parquet parts and memmap rows are written before the chunk is marked done, so a killed
build resumes at the first unfinished chunk.

Cost: O(N·forward(L)) for N tokens through the deepest SAE layer L, plus O(N·d_in·d_sae) per
SAE encoded (live here, or later from the memmap); memory O(batch·T·d_model) for activations,
and O(N·d_model) float16 on disk per SAE still to be trained.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from core.model.capture import capture
from core.model.sites import Site
from core.pipeline.faults import kill_point
from core.pipeline.tokenize import Context
from core.sae.model import SAE
from core.store.atlas import sae_dir_name

CHUNK_CONTEXTS = 64
"""Contexts per capture chunk by default (ModelConfig.chunk_contexts)."""


class NonFiniteActivations(RuntimeError):
    """NaN/inf in the model's activations: the build stops instead of writing garbage."""


def token_offsets(ctxs: list[Context]) -> np.ndarray:
    """Row of each context's first token in the dense memmap (tokens in doc, pos order)."""
    lens = np.array([len(c.ids) for c in ctxs], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lens)[:-1]])


def longest_first(ctxs: list[Context]) -> list[int]:
    """Context indices by decreasing length (stable, so deterministic)."""
    return sorted(range(len(ctxs)), key=lambda i: -len(ctxs[i].ids))


def batches(
    ctxs: list[Context], size: int, pad_id: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """-> (context indices, input_ids (B, T), attention_mask (B, T)) right-padded.

    Contexts are batched longest first, so each batch holds similar lengths: in the default
    corpus (many documents shorter than a context) batches in corpus order were ~60 % real
    tokens and ~40 % padding, and the forward pass ran ~1.4x slower.
    """
    order = longest_first(ctxs)
    for lo in range(0, len(ctxs), size):
        idx = order[lo : lo + size]
        T = len(ctxs[idx[0]].ids)
        ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(ctxs[i].ids)
            ids[row, :n] = torch.from_numpy(ctxs[i].ids.astype(np.int64))
            mask[row, :n] = 1
        yield idx, ids, mask


def sparse_rows(sae: SAE, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, d_in) -> (row index, feature, act) of every nonzero activation."""
    if sae.cfg.architecture == "topk":
        vals, feats = sae.encode_topk(x)  # (N, k) each
        rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(feats)
        keep = vals > 0
        return rows[keep].cpu().numpy(), feats[keep].cpu().numpy(), vals[keep].float().cpu().numpy()
    acts = sae.encode(x)  # (N, d_sae)
    r, f = torch.nonzero(acts, as_tuple=True)
    return r.cpu().numpy(), f.cpu().numpy(), acts[r, f].float().cpu().numpy()


class SparseSink:
    """Collects sparse rows per SAE and writes one Parquet part per SAE per chunk."""

    def __init__(self, acts_dir: Path, sae_ids: list[str]) -> None:
        self.acts_dir = acts_dir
        self.parts: dict[str, list[pa.Table]] = {s: [] for s in sae_ids}

    def add(
        self, sae_id: str, doc: np.ndarray, pos: np.ndarray, feat: np.ndarray, act: np.ndarray
    ) -> None:
        if not len(act):
            return
        if not np.isfinite(act).all():
            raise NonFiniteActivations(
                f"{sae_id}: non-finite SAE activations (NaN/inf in the input?)"
            )
        self.parts[sae_id].append(
            pa.table(
                {
                    # one dictionary entry, indices all 0 (a list of n strings cost ~0.2 us/row)
                    "sae_id": pa.DictionaryArray.from_arrays(
                        np.zeros(len(act), np.int32), pa.array([sae_id])
                    ),
                    "doc_id": pa.array(doc, pa.int32()),
                    "pos": pa.array(pos, pa.int32()),
                    "feature": pa.array(feat, pa.int32()),
                    "act": pa.array(act, pa.float32()),
                }
            )
        )

    def flush(self, chunk: int) -> None:
        for sae_id, tables in self.parts.items():
            folder = self.acts_dir / sae_dir_name(sae_id)
            folder.mkdir(parents=True, exist_ok=True)
            if tables:
                # written aside, then renamed: a killed writer never leaves a half part behind
                final = folder / f"part-{chunk:05d}.parquet"
                tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
                pq.write_table(pa.concat_tables(tables), tmp)
                tmp.replace(final)
            tables.clear()


class ChunkLog:
    """Which chunks of one kind (capture, encode) are complete: one empty marker file per chunk,
    created after the chunk's files are in place, so several processes can mark chunks at once."""

    def __init__(self, acts_dir: Path, kind: str) -> None:
        self.folder = acts_dir / "_done"
        self.kind = kind
        self.folder.mkdir(parents=True, exist_ok=True)

    def done(self) -> set[int]:
        prefix = f"{self.kind}-"
        return {int(p.name[len(prefix) :]) for p in self.folder.glob(f"{prefix}*")}

    def mark(self, chunk: int) -> None:
        (self.folder / f"{self.kind}-{chunk:05d}").touch()


def n_chunks(n_items: int, size: int) -> int:
    """Chunks of `size` items: capture chunks of contexts (in longest-first order), or encode
    chunks of token rows."""
    return -(-n_items // size)


def encode_into(
    sink: SparseSink,
    saes: dict[Site, SAE],
    acts: dict[Site, torch.Tensor],
    doc: np.ndarray,
    pos: np.ndarray,
    keep: np.ndarray,
) -> None:
    """acts[site] (N, d) for N tokens with (doc, pos) -> sparse rows per SAE, rows `keep` only."""
    keep_t = torch.from_numpy(keep)
    doc, pos = doc[keep], pos[keep]
    for site, sae in saes.items():
        x = acts[site][keep_t.to(acts[site].device)]
        r, f, a = sparse_rows(sae, x)
        sink.add(site.id, doc[r], pos[r], f, a)


def _valid(
    ctxs: list[Context], idx: list[int], mask: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened valid-token mask (B*T,), each valid token's (doc_id, pos), and which tokens
    are not the first of their context (encoded; see `context_firsts`)."""
    doc = np.concatenate([np.full(len(ctxs[i].ids), ctxs[i].doc_id, np.int32) for i in idx])
    pos = np.concatenate([ctxs[i].start + np.arange(len(ctxs[i].ids), dtype=np.int32) for i in idx])
    starts = np.concatenate([np.full(len(ctxs[i].ids), ctxs[i].start, np.int32) for i in idx])
    return mask.reshape(-1).bool(), doc, pos, pos != starts


def context_firsts(ctxs: list[Context]) -> np.ndarray:
    """(n_tokens,) True for the first token of each context, in memmap row order.

    In SmolLM2 (as in most LMs) the first position is an attention sink whose residual norm
    is ~150x the others; like BOS in SAELens/SAEDashboard it is never encoded (it fires no
    feature) but it still counts in the density denominator.
    """
    n = int(sum(len(c.ids) for c in ctxs))
    first = np.zeros(n, dtype=bool)
    first[token_offsets(ctxs)] = True
    return first


def write_rows(mm: np.memmap, x: torch.Tensor, spans: list[tuple[int, int]]) -> None:
    """x (sum of lengths, d): consecutive contexts' rows -> their (start, length) memmap spans."""
    rows = x.float().cpu().numpy().astype(mm.dtype)
    at = 0
    for start, n in spans:
        mm[start : start + n] = rows[at : at + n]
        at += n


@torch.inference_mode()
def run_capture(
    model: torch.nn.Module,
    ctxs: list[Context],
    sites: list[Site],
    saes: dict[Site, SAE],
    dense: dict[Site, np.memmap],
    acts_dir: Path,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    chunks: list[int] | None = None,
    after_chunk: Callable[[int], None] | None = None,
    chunk_contexts: int = CHUNK_CONTEXTS,
) -> int:
    """The one forward pass over `chunks` (default all) not yet done. Returns the number of
    tokens processed in this call. A chunk's contexts and batches do not depend on which
    process runs it, so its files are the same wherever it runs (core.pipeline.shards)."""
    acts_dir.mkdir(parents=True, exist_ok=True)
    log = ChunkLog(acts_dir, "capture")
    done = log.done()
    sink = SparseSink(acts_dir, [s.id for s in saes])
    offsets = token_offsets(ctxs)
    order = longest_first(ctxs)  # chunks of similar lengths pad little (see `batches`)
    every = range(n_chunks(len(ctxs), chunk_contexts))
    todo = [c for c in (every if chunks is None else chunks) if c not in done]
    n_done = 0
    for chunk in tqdm(todo, desc="capture", unit="chunk", mininterval=2):
        sel = order[chunk * chunk_contexts : (chunk + 1) * chunk_contexts]
        n_done += _capture_chunk(
            model, ctxs, sel, sites, saes, dense, offsets, sink, batch_size, pad_id, device
        )
        for mm in dense.values():
            mm.flush()
        sink.flush(chunk)
        log.mark(chunk)
        kill_point("mid:capture")
        if after_chunk is not None:
            after_chunk(chunk)
    return n_done


def _capture_chunk(
    model: torch.nn.Module,
    ctxs: list[Context],
    sel: list[int],
    sites: list[Site],
    saes: dict[Site, SAE],
    dense: dict[Site, np.memmap],
    offsets: np.ndarray,
    sink: SparseSink,
    batch_size: int,
    pad_id: int,
    device: torch.device,
) -> int:
    """Contexts `sel` through the model: sparse rows into `sink`, dense rows into the memmaps."""
    part = [ctxs[i] for i in sel]
    n = 0
    for idx, ids, mask in batches(part, batch_size, pad_id):
        got = capture(model, ids.to(device), mask.to(device), sites)
        valid, doc, pos, keep = _valid(part, idx, mask)
        flat = {s: got[s].reshape(-1, got[s].shape[-1])[valid.to(device)] for s in sites}
        for s, x in flat.items():
            if not torch.isfinite(x).all():
                raise NonFiniteActivations(f"non-finite model activations at {s} (doc {doc[0]})")
        encode_into(sink, saes, flat, doc, pos, keep)
        for s, mm in dense.items():
            write_rows(mm, flat[s], [(offsets[sel[i]], len(part[i].ids)) for i in idx])
        n += len(doc)
    return n


def encode_dense(
    saes: dict[Site, SAE],
    dense: dict[Site, np.memmap],
    doc: np.ndarray,
    pos: np.ndarray,
    keep: np.ndarray,
    acts_dir: Path,
    device: torch.device,
    chunk_rows: int,
    chunks: list[int] | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> int:
    """Encode stored dense activations (after training) into the same Parquet layout, in
    chunks of `chunk_rows` token rows (default all not yet done). Returns the rows encoded."""
    log = ChunkLog(acts_dir, "encode")
    done = log.done()
    sink = SparseSink(acts_dir, [s.id for s in saes])
    n = len(doc)
    todo = [
        c for c in (range(n_chunks(n, chunk_rows)) if chunks is None else chunks) if c not in done
    ]
    n_rows = 0
    for chunk in tqdm(todo, desc="encode", unit="chunk", mininterval=2):
        lo, hi = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n)
        with torch.inference_mode():
            acts = {
                s: torch.from_numpy(np.asarray(dense[s][lo:hi], np.float32)).to(device)
                for s in saes
            }
            encode_into(sink, saes, acts, doc[lo:hi], pos[lo:hi], keep[lo:hi])
        sink.flush(10_000 + chunk)
        log.mark(chunk)
        n_rows += hi - lo
        if after_chunk is not None:
            after_chunk(chunk)
    return n_rows
