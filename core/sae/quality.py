"""How good an SAE is (METHODS §2): reconstruction (FVU, L0, dead fraction) on cached
activations, and the next-token cross-entropy when its reconstruction replaces the activation
at its site, against the clean model and against zero-ablating the site.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.model.hooks import TensorHook, hooked
from core.model.sites import Site, site_module
from core.sae.model import SAE, Array, as_rows


def _device(sae: SAE) -> torch.device:
    return sae.W_enc.device


@torch.no_grad()
def _mean(acts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, d) -> (d,) in float64, batch by batch (acts may be float16 and large)."""
    total = torch.zeros(acts.shape[1], dtype=torch.float64)
    for i in range(0, acts.shape[0], batch_size):
        total += acts[i : i + batch_size].double().sum(0)
    return total / max(acts.shape[0], 1)


@torch.no_grad()
def reconstruction_metrics(sae: SAE, acts: Array, batch_size: int = 2048) -> dict[str, float]:
    """acts (N, d_in) raw activations -> fvu, l0, dead_frac, n_tokens.

    FVU = Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (one mean over all N tokens); L0 = mean number of
    active latents per token; dead_frac = fraction of latents never active on these tokens.
    """
    x_all = as_rows(acts)
    dev = _device(sae)
    mean = _mean(x_all, batch_size).to(dev, torch.float32)  # no float64 on MPS
    sq_err = sq_tot = n_active = 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=dev)
    for i in range(0, x_all.shape[0], batch_size):
        x = x_all[i : i + batch_size].to(dev, torch.float32)  # (B, d_in)
        a = sae.encode(x)  # (B, d_sae)
        _, scale = sae._norm_in(x)  # undoes constant_norm_rescale, as in SAE.forward
        x_hat = sae.decode(a, scale).float()
        sq_err += float((x - x_hat).pow(2).sum())  # per-batch float32, summed in float64
        sq_tot += float((x - mean).pow(2).sum())
        active = a > 0
        n_active += float(active.sum())
        fired |= active.any(0)
    n = x_all.shape[0]
    return {
        "fvu": sq_err / sq_tot if sq_tot > 0 else float("nan"),
        "l0": n_active / max(n, 1),
        "dead_frac": 1.0 - float(fired.float().mean()),
        "n_tokens": float(n),
    }


# ---- next-token cross-entropy ---------------------------------------------------------------
def _ce_sum(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token CE over predicted positions where both tokens are real, and their count."""
    pred = logits[:, :-1].float()  # (B, T-1, V)
    target = input_ids[:, 1:]  # (B, T-1)
    valid = (mask[:, 1:] * mask[:, :-1]).bool()
    ce = F.cross_entropy(pred.transpose(1, 2), target, reduction="none")  # (B, T-1)
    return float(ce[valid].sum()), int(valid.sum())


def _splice(sae: SAE, start: int) -> TensorHook:
    """Replace positions >= start of the site's activation (B, T, d) by the SAE's reconstruction."""

    def fn(out: torch.Tensor) -> torch.Tensor:
        x_hat = sae(out[:, start:].to(_device(sae))).to(out.device, out.dtype)
        return torch.cat([out[:, :start], x_hat], dim=1)

    return fn


def _zero(start: int) -> TensorHook:
    def fn(out: torch.Tensor) -> torch.Tensor:
        return torch.cat([out[:, :start], torch.zeros_like(out[:, start:])], dim=1)

    return fn


@torch.no_grad()
def ce_metrics(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    saes: dict[Site, SAE],
    batch_size: int = 8,
    start: int = 0,
) -> dict[Site, dict[str, float]]:
    """input_ids (B, T) -> per site: ce_base, ce_spliced, ce_zero_ablation, ce_increase,
    frac_loss_recovered = (ce_zero − ce_spliced) / (ce_zero − ce_base).

    One SAE at a time replaces its site's activation at positions >= `start` (the same positions
    are zeroed for the ablation). Use start=1 when the SAEs were trained without the first
    position: in SmolLM2 its residual stream is an attention sink ~150× the usual norm.
    CE is the mean over all predicted positions (token-weighted across batches).
    """
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    runs: dict[str, list[tuple[torch.nn.Module, TensorHook]]] = {"base": []}
    for site, sae in saes.items():
        module = site_module(model, site)
        runs[f"spliced:{site}"] = [(module, _splice(sae, start))]
        runs[f"zero:{site}"] = [(module, _zero(start))]
    ce = {name: _mean_ce(model, input_ids, mask, hooks, batch_size) for name, hooks in runs.items()}
    return {
        site: _site_summary(ce["base"], ce[f"spliced:{site}"], ce[f"zero:{site}"]) for site in saes
    }


def _mean_ce(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    hooks: list[tuple[torch.nn.Module, TensorHook]],
    batch_size: int,
) -> float:
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    with hooked(hooks):
        for i in range(0, input_ids.shape[0], batch_size):
            ids, m = input_ids[i : i + batch_size].to(dev), mask[i : i + batch_size].to(dev)
            logits = model(input_ids=ids, attention_mask=m, use_cache=False).logits  # (b, T, V)
            s, n = _ce_sum(logits, ids, m)
            total, count = total + s, count + n
    return total / max(count, 1)


def _site_summary(base: float, spliced: float, zero: float) -> dict[str, float]:
    denom = zero - base
    return {
        "ce_base": base,
        "ce_spliced": spliced,
        "ce_zero_ablation": zero,
        "ce_increase": spliced - base,
        "frac_loss_recovered": (zero - spliced) / denom if abs(denom) > 1e-12 else float("nan"),
    }
