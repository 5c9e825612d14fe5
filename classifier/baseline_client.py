"""The few-shot baseline's request: the prompt, the OpenAI-compatible call with its retries, and prices.

Shared by the trainer, which scores the baseline on the gate's holdout and distils its labels, and
by the bot, which routes with it while no fine-tuned model has beaten it (cold start).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from core.errors import SwitchboardError
from core.redact import Redactor

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

PROMPT_VERSION = "fewshot-v1"  # bump when the request changes in a way the system prompt's hash does not see
INVALID = "<invalid>"
REQUEST_TIMEOUT_S = 30.0
MAX_RETRY_AFTER_S = 60.0
PRICES_PER_MILLION_TOKENS = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}
TASK = ("You route customer support messages to the department that should handle them. "
        'Answer with JSON {"department": NAME}, where NAME is exactly one of the departments below.')
_VALUE = re.compile(r'"department"\s*:\s*"')


class BaselineUnavailable(SwitchboardError):
    """The baseline could not be reached; the message is one line, fit for a run report, and holds no secret."""


def price_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What the tokens cost at the model's list price; None for a model without a known price."""
    prices = PRICES_PER_MILLION_TOKENS.get(re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model))
    if prices is None:
        return None
    return (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1_000_000


def make_openai_client(api_key: SecretStr | str | None, base_url: str | None, *,
                       timeout: float = REQUEST_TIMEOUT_S) -> openai.OpenAI:
    """The client's own retries are off: `complete` retries, counts and reports them itself."""
    import openai

    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return openai.OpenAI(api_key=key or "unused", base_url=base_url, max_retries=0, timeout=timeout)


@dataclass(frozen=True)
class Shot:
    text: str
    label: str


@dataclass(frozen=True)
class FewShotPrompt:
    """The system prompt (its shots redacted already) and the redaction every query gets before it leaves."""

    system: str
    labels: list[str]
    redact: Redactor = field(default_factory=Redactor)

    @property
    def version(self) -> str:
        return f"{PROMPT_VERSION}-{hashlib.sha256(self.system.encode()).hexdigest()[:12]}"

    def messages(self, text: str) -> list[ChatCompletionMessageParam]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.redact.text(text)}]

    def response_format(self) -> ResponseFormatJSONSchema:
        schema = {"type": "object", "properties": {"department": {"type": "string", "enum": self.labels}},
                  "required": ["department"], "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "route", "strict": True, "schema": schema}}


def build_prompt(departments: Sequence[tuple[str, str | None]], shots: Sequence[Shot],
                 redact: Redactor | None = None) -> FewShotPrompt:
    """The baseline's prompt; `redact` (default: the built-in detectors) is applied to the shots now and to
    every query `messages` sends, so no personal detail in a stored text reaches the endpoint."""
    redact = redact or Redactor()
    shots = [Shot(redact.text(s.text), s.label) for s in shots]
    listing = "\n".join(f"- {name}: {' '.join(about.split())}" if about else f"- {name}" for name, about in departments)
    examples = "\n\n".join(f"Message: {json.dumps(s.text, ensure_ascii=False)}\nDepartment: {s.label}" for s in shots)
    system = f"{TASK}\n\nDepartments:\n{listing}"
    if shots:
        system += f"\n\nExamples:\n\n{examples}"
    return FewShotPrompt(system=system, labels=[name for name, _ in departments], redact=redact)


@dataclass(frozen=True)
class Answer:
    """One answer: the department (or INVALID), its probability and the runners-up where the endpoint gave
    logprobs (else None), and the tokens it took."""

    department: str
    scores: dict[str, float] | None
    prompt_tokens: int
    completion_tokens: int
    retries: int


def ask(client: openai.OpenAI, prompt: FewShotPrompt, text: str, *, model: str, logprobs: bool = False,
        max_attempts: int = 5, backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> Answer:
    """One request (with retries on rate limits and dropped connections). Raises BaselineUnavailable."""
    completion, retries = _complete(client, prompt, text, model=model, logprobs=logprobs, max_attempts=max_attempts,
                                    backoff_s=backoff_s, sleep=sleep)
    usage = completion.usage
    department = parse_department(completion, prompt.labels)
    scores = _scores_from_logprobs(completion, department, prompt.labels) if logprobs else None
    return Answer(department, scores, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                  retries)


def _complete(client: openai.OpenAI, prompt: FewShotPrompt, text: str, *, model: str, logprobs: bool,
              max_attempts: int, backoff_s: float, sleep: Callable[[float], None]) -> tuple[ChatCompletion, int]:
    import openai

    if max_attempts < 1:
        raise ValueError("the baseline needs at least one attempt")
    transient = (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError)
    extra: dict[str, Any] = {"logprobs": True, "top_logprobs": 5} if logprobs else {}
    attempt = 0
    while True:
        attempt += 1
        try:
            return client.chat.completions.create(model=model, messages=prompt.messages(text), temperature=0,
                                                  response_format=prompt.response_format(), **extra), attempt - 1
        except transient as exc:
            if attempt == max_attempts:
                raise BaselineUnavailable(f"baseline unavailable: {_describe(exc, client.api_key)} "
                                          f"({attempt} attempts)") from exc
            sleep(_retry_delay(exc, attempt, backoff_s))
        except openai.APIError as exc:
            raise BaselineUnavailable(f"baseline unavailable: {_describe(exc, client.api_key)}") from exc


def _retry_delay(exc: Exception, attempt: int, backoff_s: float) -> float:
    """The server's Retry-After when it gives one (capped), else exponential backoff."""
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after", "") if response is not None else ""
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return backoff_s * 2 ** (attempt - 1)


def _describe(exc: Exception, api_key: str) -> str:
    """A short, one-line, secret-free reason: servers echo keys (masked or not) in their error messages."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        url = exc.request.url
        return f"cannot connect to {url.host}" + (f":{url.port}" if url.port else "")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message") or body.get("code") or "")
        if api_key:
            detail = detail.replace(api_key, "***")
        detail = re.sub(r"\bsk-[\w*.-]+", "sk-***", " ".join(detail.split()))[:160]
        return f"HTTP {exc.status_code}" + (f": {detail}" if detail else "")
    return type(exc).__name__


def parse_department(completion: ChatCompletion, names: Sequence[str]) -> str:
    content = completion.choices[0].message.content if completion.choices else None
    try:
        department = json.loads(content or "").get("department")
    except (ValueError, AttributeError):
        return INVALID
    return department if department in names else INVALID


def _scores_from_logprobs(completion: ChatCompletion, department: str, names: Sequence[str]) -> dict[str, float] | None:
    """Each department's probability as far as the endpoint's logprobs show it: the answer's is the product
    of its value's tokens; another department's is the probability of the path where it leaves the answer's
    (the tokens before, times the alternative token that starts it). None when no logprobs were sent."""
    choice = completion.choices[0] if completion.choices else None
    tokens = choice.logprobs.content if choice and choice.logprobs and choice.logprobs.content else None
    if not tokens or department == INVALID:
        return None
    content = "".join(t.token for t in tokens)
    match = _VALUE.search(content)
    if match is None:
        return None
    start, end = match.end(), match.end() + len(json.dumps(department)[1:-1])
    scores = dict.fromkeys(names, 0.0)
    offset, logprob = 0, 0.0
    for token in tokens:
        token_end = offset + len(token.token)
        if token_end > start and offset < end:
            before = content[start:offset]  # the answer's characters ahead of this token
            for alternative in token.top_logprobs or []:
                if alternative.token == token.token:
                    continue  # the answer's own path
                prefix = before + alternative.token[max(0, start - offset):]
                rivals = [n for n in names if n != department and prefix and n.startswith(prefix)]
                for name in rivals:
                    scores[name] = max(scores[name], math.exp(logprob + alternative.logprob) / len(rivals))
            logprob += token.logprob
        offset = token_end
    scores[department] = math.exp(logprob)
    return scores
