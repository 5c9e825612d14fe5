"""The GPT-4o few-shot baseline in the trainer: the yardstick on the gate's holdout, and a labeller.

Its shots are fixed per department (`store/shots.py`), so its prompt, and with it its score, stay
comparable from run to run. Answers are cached per (query, prompt version, model) in
`baseline_predictions` and written as they arrive, so an answer is paid for once, across runs and
crashes, whether it was asked for the holdout, for distillation or by the bot routing in cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from classifier.baseline_client import INVALID, BaselineUnavailable, FewShotPrompt, Shot, ask, build_prompt, price_usd
from core.redact import Redactor
from store.baseline_cache import cache_answer, cached_answers, label_if_unlabelled, unlabelled_queries
from store.db import SessionFactory, transaction
from store.examples import Example, descriptions
from store.run_report import BaselineCost, Distillation
from store.shots import ensure_shots

if TYPE_CHECKING:
    import openai

__all__ = ["INVALID", "BaselineResult", "BaselineUnavailable", "distil", "fixed_prompt", "score_baseline"]


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
        return price_usd(self.model, self.prompt_tokens, self.completion_tokens)

    def cost(self) -> BaselineCost:
        return BaselineCost(model=self.model, prompt_version=self.prompt_version, requests=self.requests,
                            retries=self.retries, cached=self.cached, invalid=self.invalid,
                            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                            cost_usd=self.cost_usd)


def fixed_prompt(sessions: SessionFactory, departments: Sequence[str], redact: Redactor | None = None) -> FewShotPrompt:
    """The baseline's prompt over these departments, with their kept shots (picked now for a new one)."""
    with transaction(sessions) as session:
        shots = [Shot(s.text, s.department) for s in ensure_shots(session, departments=departments)]
        about = descriptions(session)
    return build_prompt([(name, about.get(name)) for name in departments], shots, redact)


def score_baseline(
    client: openai.OpenAI,
    sessions: SessionFactory,
    *,
    model: str,
    departments: Sequence[str],
    holdout: Sequence[Example],
    max_attempts: int = 5,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    redact: Redactor | None = None,
) -> BaselineResult:
    """The baseline's department for every holdout query. Raises BaselineUnavailable when it cannot finish.

    An answer outside the departments (a refusal, broken JSON, a made-up name) becomes INVALID, a wrong
    prediction, and is not cached: a later run asks again rather than keep a glitch forever.
    """
    if not departments:
        raise ValueError("the baseline needs at least one department")
    prompt = fixed_prompt(sessions, departments, redact)
    result = BaselineResult(predictions={}, model=model, prompt_version=prompt.version)
    with sessions() as session:
        cache = cached_answers(session, model=model, version=prompt.version, query_ids=[e.query_id for e in holdout])
    for example in holdout:
        if example.query_id in cache:
            result.predictions[example.query_id] = cache[example.query_id]
            result.cached += 1
            continue
        answer = _ask_and_cache(client, sessions, prompt, example.query_id, example.text, model=model, result=result,
                                max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep)
        result.predictions[example.query_id] = answer
    return result


def distil(client: openai.OpenAI | None, sessions: SessionFactory, *, model: str, departments: Sequence[str],
           budget_usd: float, routed_before: datetime | None = None, backoff_s: float = 1.0,
           redact: Redactor | None = None) -> Distillation:
    """Labels routed messages no person labelled with the baseline's answers (source `baseline`: train only).

    Answers already paid for (the bot's cold-start routing, earlier runs) are used first and cost
    nothing: that part runs whatever the budget, with no client at all. New requests stop before
    the one that would pass the budget, judged by the mean cost of the requests so far. A model
    without a known price cannot be metered, so it distils only from the cache. `routed_before`:
    only messages older than this (agents have had the grace window to label them themselves).
    """
    prompt = fixed_prompt(sessions, departments, redact)
    with sessions() as session:
        pending = unlabelled_queries(session, routed_before=routed_before)
        cache = cached_answers(session, model=model, version=prompt.version, query_ids=[i for i, _ in pending])
    result = BaselineResult(predictions={}, model=model, prompt_version=prompt.version)
    labelled = 0
    stopped = False
    for query_id, text in pending:
        assert query_id is not None
        answer = cache.get(query_id)
        if answer is None:
            spent = result.cost_usd
            mean = (spent / result.requests) if spent is not None and result.requests else 0.0
            if client is None or spent is None or spent + mean > budget_usd or budget_usd <= 0:
                stopped = budget_usd > 0
                continue
            answer = _ask_and_cache(client, sessions, prompt, query_id, text, model=model, result=result,
                                    max_attempts=5, backoff_s=backoff_s, sleep=time.sleep)
        else:
            result.cached += 1
        labelled += _store_label(sessions, query_id, answer, model)
    return Distillation(labelled=labelled, requests=result.requests, cached=result.cached,
                        cost_usd=result.cost_usd or 0.0, budget_usd=budget_usd, stopped_by_budget=stopped)


def _store_label(sessions: SessionFactory, query_id: int, department_name: str, model: str) -> int:
    """Stores the baseline's label unless a person labelled the query meanwhile; 1 when stored."""
    if department_name == INVALID:
        return 0
    with transaction(sessions) as session:
        return int(label_if_unlabelled(session, query_id=query_id, department_name=department_name, model=model))


def _ask_and_cache(client: openai.OpenAI, sessions: SessionFactory, prompt: FewShotPrompt, query_id: int, text: str,
                   *, model: str, result: BaselineResult, max_attempts: int, backoff_s: float,
                   sleep: Callable[[float], None]) -> str:
    answer = ask(client, prompt, text, model=model, max_attempts=max_attempts, backoff_s=backoff_s, sleep=sleep)
    result.requests += 1
    result.retries += answer.retries
    result.prompt_tokens += answer.prompt_tokens
    result.completion_tokens += answer.completion_tokens
    if answer.department == INVALID:
        result.invalid += 1
    else:
        cache_answer(sessions, query_id=query_id, version=prompt.version, model=model, department=answer.department,
                     prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
    return answer.department
