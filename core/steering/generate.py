"""Default and steered continuations computed together (METHODS §7).

One batch of two identical rows: row 0 is the default, row 1 is steered. Both rows draw the
same uniform number at each step (inverse-CDF sampling from one seeded generator), so with
strength 0 the steered row reproduces the default token for token, and the default row is the
same whether or not anything is steered.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from core.params import ParamError, parse_int
from core.steering.engine import Prepared, Steerer, StepMask, steering
from core.steering.interventions import SteeringError

MAX_NEW_TOKENS = 1024
MAX_PROMPT_TOKENS = 1024
MAX_PROMPT_CHARS = 40_000
MAX_SEED = 2**31 - 1
"""Largest seed (the Steering page's box; exact as a float, so parsing cannot round it)."""


@dataclass
class SamplingConfig:
    max_new_tokens: int = 64
    """Tokens to generate per row (at most MAX_NEW_TOKENS)."""
    temperature: float = 0.5
    """0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    freq_penalty: float = 1.0
    """Subtracted from a token's logit once per time it was already generated (OpenAI style)."""
    seed: int = 16
    chat: bool = True
    """Wrap the prompt in the tokenizer's chat template (instruct models)."""
    stop_at_eos: bool = True
    """End a row at the end-of-text token (False: always max_new_tokens, for benchmarks)."""

    def __post_init__(self) -> None:
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS:
            raise SteeringError(
                f"max_new_tokens must be 1…{MAX_NEW_TOKENS}, got {self.max_new_tokens}"
            )
        for name in ("temperature", "top_p", "freq_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise SteeringError(f"{name} must be finite")
        if not 0 <= self.temperature <= 10:
            raise SteeringError(f"temperature must be 0…10, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SteeringError(f"top_p must be in (0, 1], got {self.top_p}")
        if not -10 <= self.freq_penalty <= 10:
            raise SteeringError(f"freq_penalty must be -10…10, got {self.freq_penalty}")
        try:  # inf, nan, fractions and huge seeds are refused here, not by torch
            parse_int("seed", self.seed, 0, MAX_SEED)
        except ParamError as err:
            raise SteeringError(str(err)) from None


@dataclass
class PairResult:
    prompt_ids: list[int]
    ids: tuple[list[int], list[int]]
    """Generated token ids (default, steered), without the stop token."""
    texts: tuple[str, str]
    first_logits: torch.Tensor
    """(2, V) next-token logits at the prompt end (default, steered), on the CPU."""
    steps: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class PairStep:
    """One streamed step: the new token of each row (None once a row has stopped)."""

    index: int
    tokens: tuple[int | None, int | None]
    texts: tuple[str, str]
    """Each row's full text so far."""
    waiting: int = 0
    """> 0: still queued behind this many sessions (LiveModel); nothing generated yet."""
    result: PairResult | None = None
    """Set on the last step."""


def prompt_ids(tok: PreTrainedTokenizerBase, prompt: str, chat: bool, limit: int) -> list[int]:
    """The prompt as token ids, through the chat template when asked; checks length."""
    if not prompt or not prompt.strip():
        raise SteeringError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise SteeringError(
            f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
        )
    if chat and getattr(tok, "chat_template", None):
        msgs = [{"role": "user", "content": prompt}]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok(str(text), add_special_tokens=False)["input_ids"]
    else:
        ids = tok(prompt)["input_ids"]
    if len(ids) > limit:
        raise SteeringError(f"the prompt has {len(ids)} tokens; the limit here is {limit}")
    return list(ids)


def stop_ids(tok: PreTrainedTokenizerBase) -> set[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(eot, int) and eot != tok.unk_token_id:
        ids.add(eot)
    return ids


def next_tokens(
    logits: torch.Tensor, counts: torch.Tensor, cfg: SamplingConfig, u: float
) -> torch.Tensor:
    """(B, V) logits, (B, V) counts of generated tokens → (B,) next ids; one uniform u for all rows."""
    logits = logits.float()
    if cfg.freq_penalty:
        logits = logits - cfg.freq_penalty * counts
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    p_sorted, order = probs.sort(dim=-1, descending=True, stable=True)  # (B, V)
    if cfg.top_p < 1:
        keep = (p_sorted.cumsum(-1) - p_sorted) < cfg.top_p  # always keeps the first
        p_sorted = p_sorted * keep
    cdf = p_sorted.cumsum(-1)  # (B, V)
    target = (u * cdf[:, -1:]).contiguous()  # (B, 1)
    pick = torch.searchsorted(cdf, target, right=True).clamp_max(cdf.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)


@dataclass
class _Run:
    """Mutable state of one paired generation."""

    model: torch.nn.Module
    tok: PreTrainedTokenizerBase
    cfg: SamplingConfig
    steerer: Steerer
    special: torch.Tensor  # (S,) special token ids on the device
    stops: set[int]
    ids: tuple[list[int], list[int]]
    rows: torch.Tensor  # (2,) bool: only row 1 is steered
    dtype: torch.dtype
    done: list[bool] = field(default_factory=lambda: [False, False])
    cache: object = None

    def forward(self, x: torch.Tensor, generated: bool) -> torch.Tensor:
        """(2, T) ids → (2, V) last-position logits, steering row 1 only."""
        if self.steerer.sites:
            gen = torch.full_like(x, generated, dtype=torch.bool)
            mask = StepMask(self.rows, gen, torch.isin(x, self.special))
            self.steerer.set_step(mask, self.dtype)
        kv = {_cache_arg(self.model): self.cache}
        out = self.model(input_ids=x, use_cache=True, logits_to_keep=1, **kv)
        self.cache = out.get("cache", out.get("past_key_values"))
        return out.logits[:, -1]

    def texts(self) -> tuple[str, str]:
        a, b = (str(self.tok.decode(i, skip_special_tokens=True)) for i in self.ids)
        return a, b


def _cache_arg(model: torch.nn.Module) -> str:
    """The forward's KV-cache argument: `cache` from transformers 5.2x on, `past_key_values`
    (deprecated there, removed in 5.40) before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def check_budget(model: torch.nn.Module, n_prompt: int, n_new: int) -> None:
    ctx = int(getattr(model.config, "max_position_embeddings", 2048))
    if n_prompt + n_new > ctx:
        raise SteeringError(
            f"prompt ({n_prompt} tokens) + {n_new} new tokens exceed the model context of {ctx}"
        )


@torch.no_grad()
def stream_pair(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompt: str,
    prepared: list[Prepared],
    cfg: SamplingConfig,
) -> Generator[PairStep, None, None]:
    """Yield one PairStep per generated position; the last carries the PairResult.

    The steering hooks live only while the generator runs (closed or failed → removed)."""
    device = next(model.parameters()).device
    pids = prompt_ids(tok, prompt, cfg.chat, MAX_PROMPT_TOKENS)
    check_budget(model, len(pids), cfg.max_new_tokens)
    special = torch.tensor(sorted(tok.all_special_ids), device=device)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    t0 = time.perf_counter()
    with steering(model, prepared) as steerer:
        rows = torch.tensor([False, True], device=device)
        dtype = next(model.parameters()).dtype
        stops = stop_ids(tok) if cfg.stop_at_eos else set()
        run = _Run(model, tok, cfg, steerer, special, stops, ([], []), rows, dtype)
        x = torch.tensor([pids, pids], device=device)  # (2, P)
        logits = run.forward(x, generated=False)  # (2, V)
        first = logits.detach().float().cpu()
        counts = torch.zeros_like(logits, dtype=torch.float32)  # (2, V)
        for step in range(cfg.max_new_tokens):
            u = float(torch.rand((), generator=gen))
            nxt = next_tokens(logits, counts, cfg, u)  # (2,)
            toks = _record(run, nxt.tolist(), counts)
            if all(run.done) or step == cfg.max_new_tokens - 1:
                res = PairResult(
                    pids, run.ids, run.texts(), first, step + 1, time.perf_counter() - t0
                )
                yield PairStep(step, toks, res.texts, result=res)
                return
            yield PairStep(step, toks, run.texts())
            logits = run.forward(nxt.unsqueeze(-1), generated=True)


def _record(run: _Run, new: list[int], counts: torch.Tensor) -> tuple[int | None, int | None]:
    """Append each live row's token (stop tokens end the row); returns what each row got."""
    got: list[int | None] = [None, None]
    for r, t in enumerate(new):
        if run.done[r]:
            continue
        if t in run.stops:
            run.done[r] = True
            continue
        run.ids[r].append(t)
        counts[r, t] += 1
        got[r] = t
    return got[0], got[1]


def generate_pair(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompt: str,
    prepared: list[Prepared],
    cfg: SamplingConfig,
) -> PairResult:
    """Run stream_pair to the end."""
    for step in stream_pair(model, tok, prompt, prepared, cfg):
        if step.result is not None:
            return step.result
    raise RuntimeError("generation ended without a result")  # unreachable
