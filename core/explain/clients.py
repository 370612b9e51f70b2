"""Chat back-ends for explainers and scorers: any OpenAI-compatible endpoint over plain HTTP
(urllib; concurrency limit, retries with backoff, timeouts) and a local transformers model
(batched, GPU when present). A failed call is a Completion with text None and an error."""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

Messages = list[dict[str, str]]
DEFAULT_BASE_URL = "https://api.openai.com/v1"


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


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class OpenAIChat:
    """POST {base_url}/chat/completions, `concurrency` requests at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        usage: Usage | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.usage = usage or Usage()
        self._sleep = sleep

    def complete(self, conversations: list[Messages], max_tokens: int) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, max_tokens), conversations))

    def _one(self, messages: Messages, max_tokens: int) -> Completion:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        t0, err = time.perf_counter(), ""
        for attempt in range(1, self.max_retries + 2):
            try:
                out = _parse_response(self._post(body))
                out.attempts = attempt
                break
            except _Retryable as e:
                err = str(e)
                if attempt > self.max_retries:
                    out = Completion(
                        None, f"gave up after {attempt} attempts: {err}", attempts=attempt
                    )
                    break
                self._sleep(
                    e.retry_after
                    if e.retry_after is not None
                    else self.backoff_s * 2 ** (attempt - 1)
                )
            except ValueError as e:  # a non-retryable HTTP error (bad key, bad request)
                out = Completion(None, str(e), attempts=attempt)
                break
        self.usage.add(out, time.perf_counter() - t0)
        return out

    def _post(self, body: dict[str, Any]) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            msg = f"HTTP {e.code} from {self.url}: {detail}"
            if e.code == 429 or e.code >= 500:
                raise _Retryable(msg, _retry_after(e.headers.get("Retry-After"))) from e
            raise ValueError(msg) from e
        except (
            urllib.error.URLError,
            TimeoutError,
            ConnectionError,
            http.client.HTTPException,
        ) as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from e


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _parse_response(raw: bytes) -> Completion:
    try:
        data = json.loads(raw)
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _Retryable(f"malformed response: {raw[:200]!r}") from e
    if not isinstance(text, str):
        raise _Retryable(f"malformed response: no message content in {raw[:200]!r}")
    usage = data.get("usage") or {}
    return Completion(
        text, None, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
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


def openai_from_env(
    base_url: str | None, model: str | None, api_key_env: str, **kwargs: Any
) -> OpenAIChat:
    """Flags win over the environment ($OPENAI_BASE_URL, $OPENAI_MODEL, $<api_key_env>)."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    name = model or os.environ.get("OPENAI_MODEL")
    if not name:
        raise ValueError("no model for the openai explainer: pass --model or set OPENAI_MODEL")
    return OpenAIChat(url, name, os.environ.get(api_key_env), **kwargs)
