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

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from core.model.capture import capture
from core.model.sites import Site
from core.pipeline.tokenize import Context
from core.sae.model import SAE
from core.store.atlas import sae_dir_name

CHUNK_CONTEXTS = 64


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
                pq.write_table(pa.concat_tables(tables), folder / f"part-{chunk:05d}.parquet")
            tables.clear()


class ChunkLog:
    """Which chunks are complete (a small JSON file next to the parts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[int] = set(json.loads(path.read_text())) if path.exists() else set()

    def mark(self, chunk: int) -> None:
        self.done.add(chunk)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self.done)))
        tmp.replace(self.path)


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
) -> int:
    """The one forward pass. Returns the number of tokens processed in this call."""
    acts_dir.mkdir(parents=True, exist_ok=True)
    log = ChunkLog(acts_dir / "capture_chunks.json")
    sink = SparseSink(acts_dir, [s.id for s in saes])
    offsets = token_offsets(ctxs)
    n_done = 0
    order = longest_first(ctxs)  # chunks of similar lengths pad little (see `batches`)
    chunks = range(0, len(ctxs), CHUNK_CONTEXTS)
    for chunk, lo in enumerate(tqdm(chunks, desc="capture", unit="chunk", mininterval=2)):
        if chunk in log.done:
            continue
        sel = order[lo : lo + CHUNK_CONTEXTS]
        part = [ctxs[i] for i in sel]
        for idx, ids, mask in batches(part, batch_size, pad_id):
            got = capture(model, ids.to(device), mask.to(device), sites)
            valid, doc, pos, keep = _valid(part, idx, mask)
            flat = {s: got[s].reshape(-1, got[s].shape[-1])[valid.to(device)] for s in sites}
            for s, x in flat.items():
                if not torch.isfinite(x).all():
                    raise NonFiniteActivations(
                        f"non-finite model activations at {s} (doc {doc[0]})"
                    )
            encode_into(sink, saes, flat, doc, pos, keep)
            for s, mm in dense.items():
                write_rows(mm, flat[s], [(offsets[sel[i]], len(part[i].ids)) for i in idx])
            n_done += len(doc)
        for mm in dense.values():
            mm.flush()
        sink.flush(chunk)
        log.mark(chunk)
    return n_done


def encode_dense(
    saes: dict[Site, SAE],
    dense: dict[Site, np.memmap],
    doc: np.ndarray,
    pos: np.ndarray,
    keep: np.ndarray,
    acts_dir: Path,
    device: torch.device,
    rows_per_chunk: int = 16384,
) -> None:
    """Encode stored dense activations (after training) into the same Parquet layout."""
    sink = SparseSink(acts_dir, [s.id for s in saes])
    n = len(doc)
    for chunk, lo in enumerate(tqdm(range(0, n, rows_per_chunk), desc="encode", mininterval=2)):
        hi = min(lo + rows_per_chunk, n)
        with torch.inference_mode():
            acts = {
                s: torch.from_numpy(np.asarray(dense[s][lo:hi], np.float32)).to(device)
                for s in saes
            }
            encode_into(sink, saes, acts, doc[lo:hi], pos[lo:hi], keep[lo:hi])
        sink.flush(10_000 + chunk)
