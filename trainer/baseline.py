"""The GPT-4o few-shot baseline: the bar a fine-tuned router should clear, scored on the gate's holdout.

Answers are cached per (query, prompt version, model) in `baseline_predictions` and written as they
arrive, so each holdout example is paid for once, even across a crash. The prompt version carries a
hash of the rendered system prompt: new few-shot examples or departments make a new cache key.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from router.settings import Settings
from store.db import SessionFactory, transaction
from store.examples import Example
from store.tables import BaselinePrediction

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

PROMPT_VERSION = "fewshot-v1"  # bump when the request changes in a way the system prompt's hash does not see
SHOT_SEED = 0
INVALID = "<invalid>"
REQUEST_TIMEOUT_S = 30.0
MAX_RETRY_AFTER_S = 60.0
PRICES_PER_MILLION_TOKENS = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}
TASK = ("You route customer support messages to the department that should handle them. "
        'Answer with JSON {"department": NAME}, where NAME is exactly one of the departments below.')


class BaselineUnavailable(RuntimeError):
    """The baseline could not be scored; the message is one line, fit for a run report, and holds no secret."""


@dataclass(frozen=True)
class FewShotPrompt:
    system: str
    labels: list[str]

    @property
    def version(self) -> str:
        return f"{PROMPT_VERSION}-{hashlib.sha256(self.system.encode()).hexdigest()[:12]}"

    def messages(self, text: str) -> list[ChatCompletionMessageParam]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}]

    def response_format(self) -> ResponseFormatJSONSchema:
        schema = {"type": "object", "properties": {"department": {"type": "string", "enum": self.labels}},
                  "required": ["department"], "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "route", "strict": True, "schema": schema}}


@dataclass
class BaselineResult:
    """`requests`, `retries`, tokens and cost count this run only; cached answers cost nothing again."""

    predictions: dict[int, str]
    model: str
    prompt_version: str
    requests: int = 0
    retries: int = 0
    cached: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def cost_usd(self) -> float | None:
        prices = PRICES_PER_MILLION_TOKENS.get(re.sub(r"-\d{4}-\d{2}-\d{2}$", "", self.model))
        if prices is None:
            return None
        return round((self.prompt_tokens * prices[0] + self.completion_tokens * prices[1]) / 1_000_000, 6)

    def to_report(self) -> dict[str, Any]:
        """Everything but the predictions, which the caller turns into metrics."""
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"}
        return {**counts, "cost_usd": self.cost_usd}


def baseline_configured(settings: Settings) -> bool:
    return settings.openai_api_key is not None or bool(settings.openai_base_url)


def make_openai_client(settings: Settings, *, timeout: float = REQUEST_TIMEOUT_S) -> openai.OpenAI:
    """The client's own retries are off: `score_baseline` retries, counts and reports them itself."""
    import openai

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return openai.OpenAI(api_key=key, base_url=settings.openai_base_url, max_retries=0, timeout=timeout)


def sample_shots(train: list[Example], labels: list[str], *, per_department: int) -> list[Example]:
    """Up to `per_department` training examples of each department, chosen to stay put as data grows.

    Each example gets a fixed pseudo-random rank from its text; a department's shots are its
    lowest-ranked examples. A new label changes them only if it outranks one (about k/n of the
    time), so the prompt, and with it the cache of paid-for answers, survives most retrains.
    """
    def rank(example: Example) -> str:
        return hashlib.sha256(f"{SHOT_SEED}:{example.text}".encode()).hexdigest()

    shots = []
    for label in labels:
        shots += sorted((e for e in train if e.label == label), key=rank)[:per_department]
    return sorted(shots, key=rank)


def build_prompt(departments: list[tuple[str, str | None]], shots: list[Example]) -> FewShotPrompt:
    listing = "\n".join(f"- {name}: {' '.join(about.split())}" if about else f"- {name}" for name, about in departments)
    examples = "\n\n".join(f"Message: {json.dumps(e.text, ensure_ascii=False)}\nDepartment: {e.label}" for e in shots)
    system = f"{TASK}\n\nDepartments:\n{listing}"
    if shots:
        system += f"\n\nExamples:\n\n{examples}"
    return FewShotPrompt(system=system, labels=[name for name, _ in departments])


def score_baseline(
    client: openai.OpenAI,
    sessions: SessionFactory,
    *,
    model: str,
    departments: list[tuple[str, str | None]],
    train: list[Example],
    holdout: list[Example],
    shots_per_department: int = 3,
    max_attempts: int = 5,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> BaselineResult:
    """The baseline's department for every holdout query. Raises BaselineUnavailable when it cannot finish.

    An answer outside the departments (a refusal, broken JSON, a made-up name) becomes INVALID, a wrong
    prediction, and is not cached: a later run asks again rather than keep a glitch forever.
    """
    if not departments or max_attempts < 1:
        raise ValueError("the baseline needs at least one department and one attempt")
    names = [name for name, _ in departments]
    prompt = build_prompt(departments, sample_shots(train, names, per_department=shots_per_department))
    result = BaselineResult(predictions={}, model=model, prompt_version=prompt.version)
    cache = _cached_answers(sessions, model=model, version=prompt.version, query_ids=[e.query_id for e in holdout])
    for example in holdout:
        if example.query_id in cache:
            result.predictions[example.query_id] = cache[example.query_id]
            result.cached += 1
            continue
        completion = _complete(client, prompt, example.text, model=model, result=result,
                               max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep)
        usage = completion.usage
        prompt_tokens, completion_tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        result.requests += 1
        result.prompt_tokens += prompt_tokens
        result.completion_tokens += completion_tokens
        department = _parse_department(completion, names)
        result.predictions[example.query_id] = department
        if department == INVALID:
            result.invalid += 1
        else:
            _cache_answer(sessions, BaselinePrediction(
                query_id=example.query_id, prompt_version=prompt.version, model=model, department=department,
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))
    return result


def _cached_answers(sessions: SessionFactory, *, model: str, version: str, query_ids: list[int]) -> dict[int, str]:
    with sessions() as session:
        rows = session.exec(select(BaselinePrediction).where(
            BaselinePrediction.model == model, BaselinePrediction.prompt_version == version,
            col(BaselinePrediction.query_id).in_(query_ids)))
        return {row.query_id: row.department for row in rows}


def _cache_answer(sessions: SessionFactory, row: BaselinePrediction) -> None:
    try:
        with transaction(sessions) as session:
            session.add(row)
    except IntegrityError:
        pass  # another process cached the same answer first


def _complete(client: openai.OpenAI, prompt: FewShotPrompt, text: str, *, model: str, result: BaselineResult,
              max_attempts: int, backoff_s: float, sleep: Callable[[float], None]) -> ChatCompletion:
    import openai

    transient = (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError)
    attempt = 0
    while True:
        attempt += 1
        try:
            return client.chat.completions.create(model=model, messages=prompt.messages(text),
                                                  temperature=0, response_format=prompt.response_format())
        except transient as exc:
            if attempt == max_attempts:
                raise BaselineUnavailable(f"baseline unavailable: {_describe(exc, client.api_key)} "
                                          f"({attempt} attempts)") from exc
            result.retries += 1
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


def _parse_department(completion: ChatCompletion, names: list[str]) -> str:
    content = completion.choices[0].message.content if completion.choices else None
    try:
        department = json.loads(content or "").get("department")
    except (ValueError, AttributeError):
        return INVALID
    return department if department in names else INVALID
