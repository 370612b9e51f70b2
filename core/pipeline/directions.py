"""Statistics of the decoder directions alone: logit effects and decoder-cosine neighbours.

Cost per SAE: logits O(d_sae·d_model·vocab), neighbours O(d_sae²·d_model); both in row blocks,
so memory is O(chunk·vocab) and O(chunk·d_sae), linear in d_sae.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.sae.model import SAE


@torch.no_grad()
def logit_table(
    sae: SAE, sae_id: str, W_U: torch.Tensor, vocab: list[str], n: int, chunk: int = 512
) -> pd.DataFrame:
    """Top-n positive and negative tokens of W_dec[f] · W_Uᵀ; W_U is (vocab, d_model)."""
    W_U = W_U.float()
    strings = np.asarray(vocab + [""] * max(0, W_U.shape[0] - len(vocab)), dtype=object)
    frames = []
    for lo in range(0, sae.d_sae, chunk):
        eff = sae.W_dec[lo : lo + chunk].float().to(W_U.device) @ W_U.T  # (c, vocab)
        c = eff.shape[0]
        for sign in (1, -1):
            vals, idx = (sign * eff).topk(n, dim=-1)  # (c, n)
            ids = idx.cpu().numpy().reshape(-1)
            frames.append(
                pd.DataFrame(
                    {
                        "sae_id": sae_id,
                        "feature": np.repeat(np.arange(lo, lo + c), n),
                        "sign": sign,
                        "rank": np.tile(np.arange(1, n + 1), c),
                        "token_id": ids,
                        "token_str": strings[ids],
                        "value": (sign * vals).cpu().numpy().reshape(-1),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def neighbour_table(sae: SAE, sae_id: str, n: int, chunk: int = 2048) -> pd.DataFrame:
    """Top-n other features of the same SAE by decoder cosine."""
    unit = sae.unit_decoder()  # (d_sae, d_in)
    chunk = max(1, min(chunk, (1 << 24) // sae.d_sae))  # a block stays <= 64 MiB at any width
    frames = []
    for lo in range(0, sae.d_sae, chunk):
        cos = unit[lo : lo + chunk] @ unit.T  # (chunk, d_sae)
        rows = torch.arange(cos.shape[0])
        cos[rows, lo + rows] = -2.0  # never your own neighbour
        vals, idx = cos.topk(min(n, sae.d_sae - 1), dim=-1)
        k = vals.shape[1]
        frames.append(
            pd.DataFrame(
                {
                    "sae_id": sae_id,
                    "feature": (lo + rows[:, None].expand(-1, k)).reshape(-1).numpy(),
                    "rank": torch.arange(1, k + 1).repeat(cos.shape[0]).numpy(),
                    "neighbour": idx.reshape(-1).numpy(),
                    "cosine": vals.reshape(-1).numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
