"""Generation speed with and without steering hooks, interleaved in one run (target ≤ 5 %).

    python -m core.steering.benchmark [--atlas data/atlases/default/atlas.duckdb] [--device auto]

Without an atlas, random TopK SAEs stand in at two sites (only the hooks' cost is measured).
Greedy, stop-at-EOS off: every run generates exactly --tokens positions for both rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.model.loading import LoadedModel, load_model
from core.model.sites import Site
from core.sae.model import SAE, SAEConfig
from core.steering.engine import Prepared, SaeBank, SaeEntry, prepare
from core.steering.generate import SamplingConfig, generate_pair
from core.steering.interventions import Intervention
from core.steering.live import LiveModel

PROMPTS = (
    "Tell me about the history of Rome.",
    "Write a short poem about autumn leaves.",
    "How do I sort a list in Python?",
)


def random_bank(lm: LoadedModel, sites: list[str], d_sae: int) -> SaeBank:
    d = int(lm.model.config.hidden_size)
    entries = {}
    for i, sid in enumerate(sites):
        g = torch.Generator().manual_seed(i)
        sae = SAE(SAEConfig(d_in=d, d_sae=d_sae, architecture="topk", k=32, hook_name=sid))
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(d, d_sae, generator=g) / d**0.5)
            sae.W_dec.copy_(torch.randn(d_sae, d, generator=g) / d**0.5)
        sae = sae.to(lm.device).requires_grad_(False)
        entries[sid] = SaeEntry(sid, Site.parse(sid), sae, torch.full((d_sae,), 5.0))
    return SaeBank(entries)


@dataclass
class Timing:
    steps: int
    wall: float
    cpu: float
    """Process CPU seconds: robust to other jobs on a shared CPU (meaningless on a GPU)."""


def timed(lm: LoadedModel, prompt: str, prep: list[Prepared], cfg: SamplingConfig) -> Timing:
    """One paired generation, timed by the wall clock and by CPU time."""
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    res = generate_pair(lm.model, lm.tokenizer, prompt, prep, cfg)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return Timing(res.steps, time.perf_counter() - w0, time.process_time() - c0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", type=Path, default=None, help="use this atlas's SAEs (first two)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="additive", choices=["additive", "clamp", "rescale"])
    ap.add_argument("--d-sae", type=int, default=4096, help="random SAEs' width (no atlas)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.atlas:
        live = LiveModel.from_atlas(args.atlas, device=args.device)
        lm, bank = live.lm, live.bank
    else:
        lm = load_model("default", device=args.device)
        n = int(lm.model.config.num_hidden_layers)
        bank = random_bank(lm, [f"L{n // 3}/resid_post", f"L{2 * n // 3}/resid_post"], args.d_sae)
    sids = bank.ids()[:2]
    items = [Intervention(s, 1, method=args.method, strength=2.0) for s in sids]
    steer = prepare(items, bank, lm.device, lm.model.dtype)
    cfg = SamplingConfig(max_new_tokens=args.tokens, temperature=0.0, stop_at_eos=False)
    timed(lm, PROMPTS[0], steer, SamplingConfig(max_new_tokens=4, temperature=0.0))  # warm-up
    rates: dict[str, list[Timing]] = {"default": [], "steered": []}
    for r in range(args.repeats):
        for i, prompt in enumerate(PROMPTS):
            order = ["default", "steered"] if (r + i) % 2 == 0 else ["steered", "default"]
            for name in order:
                rates[name].append(timed(lm, prompt, steer if name == "steered" else [], cfg))
    report(lm, args, sids, rates)


def report(
    lm: LoadedModel, args: argparse.Namespace, sids: list[str], runs: dict[str, list[Timing]]
) -> None:
    print(f"device: {lm.device}  threads: {torch.get_num_threads()}  model: {lm.name}")
    print(f"steering: {args.method} at {', '.join(sids)}; {args.tokens} tokens × "
          f"{len(PROMPTS)} prompts × {args.repeats} repeats, greedy, batch of 2 rows")  # fmt: skip
    clocks = ["wall"] if lm.device.type != "cpu" else ["wall", "cpu"]
    over = {}
    for clock in clocks:
        for name, ts in runs.items():
            rates = [t.steps / getattr(t, clock) for t in ts]
            print(f"  {clock:4s} {name:8s} tokens/s per row: median {statistics.median(rates):7.1f}"
                  f"  best {max(rates):7.1f}  (worst {min(rates):.1f})")  # fmt: skip
        base, steer = (sum(getattr(t, clock) for t in runs[k]) for k in ("default", "steered"))
        over[clock] = 100 * (steer / base - 1)  # same steps in both: total time ratio
    for clock, pct in over.items():
        print(f"overhead of steering hooks ({clock} time): {pct:+.1f} % (target ≤ 5 %)")
    if lm.device.type == "cpu":
        print("on a shared CPU the CPU-time figure is the reliable one (wall time includes waits)")


if __name__ == "__main__":
    main()
