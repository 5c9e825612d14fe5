"""A loopback OpenAI-compatible chat-completions server, for testing the real `openai` client against.

It answers `POST /v1/chat/completions` (and `/chat/completions`) with a proper `chat.completion` whose
content is `{"department": ...}`, chosen from the last user message by a mapping or a callable (which may
also give the answer's probability, sent as token logprobs when the request asks for them). It can
fail a scripted number of requests first (429 with `Retry-After: 0`, 5xx, 401...) with OpenAI-style
error bodies, answer slowly, reject a wrong API key, and be stopped so that connections are refused. Every request
body is recorded, failed ones included.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATHS = ("/v1/chat/completions", "/chat/completions")
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}. You can find your API key "
          "at https://platform.openai.com/account/api-keys."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 0s."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def masked(key: str) -> str:
    """How OpenAI echoes a wrong key: its start and its last four characters."""
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:]


class FakeOpenAI:
    """`with FakeOpenAI(answers) as fake:` then point a client at `fake.base_url`."""

    def __init__(
        self,
        answers: Mapping[str, str] | Callable[[str], str],
        *,
        failures: Iterable[int] = (),
        api_key: str | None = None,
    ) -> None:
        self.answer = answers if callable(answers) else answers.__getitem__
        self.failures = list(failures)
        self.delays: list[tuple[float, Callable[[], None] | None]] = []
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        """After this, connections to `base_url` are refused."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self.failures.extend(statuses)

    def slow_next(self, seconds: float, *, started: Callable[[], None] | None = None) -> None:
        """The next request is answered after `seconds` (`started` is called when the wait begins)."""
        with self._lock:
            self.delays.append((seconds, started))

    def respond(self, body: dict[str, Any], authorization: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            delay = self.delays.pop(0) if self.delays else None
        if delay is not None:
            if delay[1] is not None:
                delay[1]()
            time.sleep(delay[0])
        with self._lock:
            self.requests.append(body)
            given_key = authorization.removeprefix("Bearer ")
            if self.api_key is not None and given_key != self.api_key:
                return error(401, key=masked(given_key))
            if self.failures:
                return error(self.failures.pop(0))
        text = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        try:
            answer = self.answer(text)
        except KeyError:
            return error(400)
        department, probability = answer if isinstance(answer, tuple) else (answer, 0.98)
        content = json.dumps({"department": department})
        prompt_tokens = sum(len(str(m["content"])) for m in body["messages"]) // 4 + 1
        completion_tokens = len(content) // 4 + 1
        with self._lock:
            self.usage["prompt_tokens"] += prompt_tokens
            self.usage["completion_tokens"] += completion_tokens
        logprobs = token_logprobs(department, probability, body) if body.get("logprobs") else None
        return 200, {}, completion(body["model"], content, prompt_tokens, completion_tokens, len(self.requests),
                                   logprobs)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path not in PATHS:
                    self._send(404, {}, {"error": {"message": f"Unknown path {self.path}", "param": None,
                                                   "type": "invalid_request_error", "code": "unknown_url"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._send(*fake.respond(body, self.headers.get("Authorization", "")))

            def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                    "Connection": "close", "x-request-id": "req_fake", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        return Handler


def error(status: int, *, key: str = "") -> tuple[int, dict[str, str], dict[str, Any]]:
    kind, code, message = ERRORS.get(status, ("server_error", None, "Unexpected error."))
    headers = {"Retry-After": "0", "retry-after-ms": "0"} if status == 429 else {}
    return status, headers, {"error": {"message": message.format(key=key), "type": kind, "param": None, "code": code}}


def token_logprobs(department: str, probability: float, body: dict[str, Any]) -> dict[str, Any]:
    """`choices[].logprobs` as OpenAI sends it for `{"department": ...}`: the value's first token carries
    `probability`, and its alternatives (up to `top_logprobs`) offer another department with the rest."""
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    pieces = [department[i:i + 4] for i in range(0, len(department), 4)] or [""]
    names = body.get("response_format", {}).get("json_schema", {}).get("schema", {}).get("properties", {}) \
        .get("department", {}).get("enum", [])
    rival = next((n for n in names if not n.startswith(pieces[0])), None)
    top = [entry(pieces[0], math.log(probability))]
    if rival and probability < 1:
        top.append(entry(rival[:4], math.log(1 - probability)))
    tokens = [{**entry('{"', 0.0), "top_logprobs": []}, {**entry("department", 0.0), "top_logprobs": []},
              {**entry('":"', 0.0), "top_logprobs": []},
              {**entry(pieces[0], math.log(probability)), "top_logprobs": top[: body.get("top_logprobs") or 0]},
              *({**entry(piece, 0.0), "top_logprobs": []} for piece in pieces[1:]),
              {**entry('"}', 0.0), "top_logprobs": []}]
    return {"content": tokens, "refusal": None}


def completion(model: str, content: str, prompt_tokens: int, completion_tokens: int, n: int,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
