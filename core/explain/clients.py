"""Chat back-ends for explainers and scorers: any OpenAI-compatible endpoint through the
official `openai` client (bounded concurrency, retries, timeouts) and a local transformers model
(batched, GPU when present). A failed call is a Completion with text None and an error."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import openai
from openai.types.chat import ChatCompletion

Messages = list[dict[str, str]]
DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_API_KEY = "EMPTY"
"""Sent when no key is set: local servers (vLLM, Ollama) ignore it, the client needs one."""


@dataclass
class Completion:
    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1


@dataclass
class Usage:
    """Running totals over all calls of one back-end (thread-safe)."""

    price_in: float = 0.0
    price_out: float = 0.0
    calls: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, c: Completion, seconds: float) -> None:
        with self._lock:
            self.calls += 1
            self.failed += c.text is None
            self.retries += c.attempts - 1
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
            self.seconds += seconds

    @property
    def cost_usd(self) -> float:
        return (self.prompt_tokens * self.price_in + self.completion_tokens * self.price_out) / 1e6

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failed": self.failed,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 4) if self.price_in or self.price_out else None,
        }


class ChatBackend(Protocol):
    model: str
    usage: Usage

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        """One completion per conversation, in order; temperature 0."""
        ...


class OpenAIChat:
    """An OpenAI-compatible chat endpoint through the official `openai` client, which retries
    timeouts, connection errors, 429 and 5xx with exponential backoff (a Retry-After header
    wins). `concurrency` requests at a time, one worker thread each."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        usage: Usage | None = None,
    ) -> None:
        self.model, self.concurrency = model, concurrency
        self.usage = usage or Usage()
        # Requests sent by the calling thread: the sync client retries inside that thread,
        # so the count over one call is its number of attempts, failed calls included.
        self._sent = threading.local()
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._count_request]})
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or NO_API_KEY,
            max_retries=max_retries,
            timeout=timeout_s,
            http_client=http,
        )

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, max_tokens), conversations))

    def _count_request(self, request: object) -> None:
        self._sent.n = getattr(self._sent, "n", 0) + 1

    def _one(self, messages: Messages, max_tokens: int) -> Completion:
        t0 = time.perf_counter()
        self._sent.n = 0
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=cast(Any, messages),  # role/content dicts, as the API takes them
                temperature=0,
                max_tokens=max_tokens,
            )
            out = _completion(resp)
        # ValueError: a body that is not JSON (the client does not retry those)
        except (openai.OpenAIError, ValueError) as e:
            out = Completion(None, f"{type(e).__name__}: {str(e)[:300]}")
        out.attempts = max(self._sent.n, 1)
        self.usage.add(out, time.perf_counter() - t0)
        return out


def _completion(resp: ChatCompletion) -> Completion:
    text = resp.choices[0].message.content if resp.choices else None
    if not isinstance(text, str):
        raise ValueError(f"no message content in the response: {resp.model_dump_json()[:200]}")
    usage = resp.usage
    return Completion(
        text,
        None,
        (usage.prompt_tokens or 0) if usage else 0,
        (usage.completion_tokens or 0) if usage else 0,
    )


class LocalChat:
    """A transformers chat model (default: SmolLM2-135M-Instruct), greedy, in batches."""

    def __init__(self, spec: str = "default", device: str = "auto", batch_size: int = 8) -> None:
        import torch

        from core.model.loading import load_model, pick_device

        dev = pick_device(device)
        dtype = "bfloat16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
        self.lm = load_model(spec, str(dev), dtype)
        self.lm.tokenizer.padding_side = "left"
        self.model, self.batch_size, self.usage = self.lm.name, batch_size, Usage()

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        out: list[Completion] = []
        for lo in range(0, len(conversations), self.batch_size):
            t0 = time.perf_counter()
            batch = self._batch(conversations[lo : lo + self.batch_size], max_tokens)
            for c in batch:
                self.usage.add(c, (time.perf_counter() - t0) / len(batch))
            out.extend(batch)
        return out

    def _batch(self, convs: list[Messages], max_tokens: int) -> list[Completion]:
        import torch

        tok, model = self.lm.tokenizer, cast(Any, self.lm.model)  # generate() is untyped
        prompts = [
            tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.lm.device)
        try:
            with torch.inference_mode():
                ids = model.generate(
                    **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
                )  # (B, T + new)
        except (RuntimeError, ValueError) as e:  # out of memory, context too long
            print(f"[explain] local generation failed: {e}", file=sys.stderr)
            return [Completion(None, f"local generation failed: {e}") for _ in convs]
        new = ids[:, enc["input_ids"].shape[1] :]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        n_in = enc["attention_mask"].sum(1).tolist()
        n_out = (new != tok.pad_token_id).sum(1).tolist()
        return [
            Completion(t, None, int(i), int(o)) for t, i, o in zip(texts, n_in, n_out, strict=True)
        ]


def openai_settings(
    base_url: str | None, model: str | None, api_key_env: str
) -> tuple[str, str, str | None]:
    """(base URL, model, API key): flags win over the environment ($OPENAI_BASE_URL,
    $OPENAI_MODEL, $<api_key_env>)."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    name = model or os.environ.get("OPENAI_MODEL")
    if not name:
        raise ValueError("no model for the openai explainer: pass --model or set OPENAI_MODEL")
    return url, name, os.environ.get(api_key_env)


def openai_from_env(
    base_url: str | None,
    model: str | None,
    api_key_env: str,
    **kwargs: Any,
) -> OpenAIChat:
    return OpenAIChat(*openai_settings(base_url, model, api_key_env), **kwargs)
