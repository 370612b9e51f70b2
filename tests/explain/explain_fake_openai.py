"""A real OpenAI-compatible HTTP endpoint on localhost for the tests (http.server in a thread).

Answers like a tiny, honest LLM: the explainer names 'Paris' when the examples mark it; the
detection / fuzzing scorer says 1 exactly where Paris appears (is marked). `faults` injects
failures for requests whose user message contains a key, in order: '429', '500', '401',
'malformed' (not JSON), 'nocontent' (a null message), 'timeout' (answers after `delay` s);
`unparsable` lists keys whose explainer answer has no [EXPLANATION] line. Every answer takes
`latency` s, and `max_in_flight` records the most requests the server held at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, delay: float = 1.0, latency: float = 0.0) -> None:
        self.faults: dict[str, list[str]] = {}
        self.unparsable: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.delay, self.latency = delay, latency
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault(self, user: str) -> str | None:
        with self._lock:
            for key, todo in self.faults.items():
                if key in user and todo:
                    return todo.pop(0)
        return None

    def requests_with(self, key: str) -> int:
        """How many requests carried `key` in their user message (retries included)."""
        return sum(key in r["messages"][-1]["content"] for r in self.requests)

    def respond(self, body: dict[str, Any]) -> tuple[int, bytes]:
        msgs = body["messages"]
        system, user = msgs[0]["content"], msgs[-1]["content"]
        fault = self._fault(user)
        time.sleep(self.latency)
        if fault in ("429", "500", "401"):
            return int(fault), b'{"error": {"message": "injected"}}'
        if fault == "malformed":
            return 200, b"<html>not json"
        if fault == "timeout":
            time.sleep(self.delay)
        text = self.explain(user) if "[EXPLANATION]" in system else self.score(user)
        if fault == "nocontent":
            return 200, json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": None}}]}
            ).encode()
        usage = {"prompt_tokens": len(system + user) // 4, "completion_tokens": len(text) // 4}
        return 200, json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": text}}], "usage": usage}
        ).encode()

    def explain(self, user: str) -> str:
        if any(k in user for k in self.unparsable):
            return "These look like pieces of program code, I think."
        if "<< Paris>>" in user:
            return "Every example marks the city name.\n[EXPLANATION]: the word Paris"
        return "[EXPLANATION]: miscellaneous tokens"

    @staticmethod
    def score(user: str) -> str:
        explanation, _, rest = user.partition("\n\n")
        excerpts = re.findall(r"^Excerpt \d+: (.*)$", rest, flags=re.M)
        if "Paris" not in explanation:
            return str([0] * len(excerpts))
        if "<<" in rest:  # fuzzing: is Paris what is marked?
            return str(
                [int(any("Paris" in m for m in re.findall(r"<<(.*?)>>", e))) for e in excerpts]
            )
        return "Let me see. " + str([int("Paris" in e) for e in excerpts])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, payload = fake.respond(body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if status == 429 or status >= 500:  # the client waits this long, not seconds
                        self.send_header("Retry-After-Ms", "10")
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args: object) -> None:
                pass

        return Handler
