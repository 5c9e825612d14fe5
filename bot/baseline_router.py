"""Routing with the few-shot baseline while no fine-tuned model has beaten it: the cold start.

A new deployment has a handful of labels and no model worth trusting, but GPT-4o with a few shots
routes well from day one. So until a candidate beats the baseline on the gate's holdout (and is
promoted), the bot routes with the baseline: the same reply and triage rule, the answer's
probability read from the endpoint's token logprobs, and each message's tokens and cost recorded.
The first promoted model takes over on the next message.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from classifier.baseline_client import INVALID, BaselineUnavailable, Shot, ask, build_prompt, price_usd
from classifier.routing.router import Classification, Usage
from classifier.serving.active_router import NoActiveModel
from core.redact import Redactor
from store.db import SessionFactory, transaction
from store.examples import list_departments
from store.shots import ensure_shots
from store.tables import OUT_OF_SCOPE, OUT_OF_SCOPE_ABOUT

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


class BaselineRouter:
    """Answers one text at a time with the baseline; each answer's usage names the cache it belongs in."""

    def __init__(self, client: openai.OpenAI, sessions: SessionFactory, *, model: str, backoff_s: float = 1.0,
                 redact: Redactor | None = None) -> None:
        self._client, self._sessions, self._model, self._backoff_s = client, sessions, model, backoff_s
        self._redact = redact or Redactor()

    def classify(self, text: str) -> Classification:
        with transaction(self._sessions) as session:
            departments = [(d.name, d.description) for d in list_departments(session)]
            names = [name for name, _ in departments]
            shots = [Shot(s.text, s.department) for s in ensure_shots(session, departments=[*names, OUT_OF_SCOPE])]
        if not departments:
            raise NoActiveModel("no departments yet: nothing to route to")
        prompt = build_prompt([*departments, (OUT_OF_SCOPE, OUT_OF_SCOPE_ABOUT)], shots, self._redact)
        started = time.perf_counter()
        answer = ask(self._client, prompt, text, model=self._model, logprobs=True, backoff_s=self._backoff_s)
        latency_ms = (time.perf_counter() - started) * 1000
        scores = answer.scores
        if scores is None:  # the endpoint gave no logprobs: the answer is all there is
            scores = {name: float(name == answer.department) for name in prompt.labels}
        none = scores.pop(OUT_OF_SCOPE, 0.0)
        department = answer.department
        if department == OUT_OF_SCOPE:  # the likeliest real department stays on record beside the verdict
            department = max(scores, key=scores.__getitem__) if any(scores.values()) else names[0]
        confidence = scores.get(department, 0.0) if department != INVALID else 0.0
        usage = Usage(self._model, answer.prompt_tokens, answer.completion_tokens,
                      price_usd(self._model, answer.prompt_tokens, answer.completion_tokens), prompt.version)
        return Classification(department=department, confidence=confidence, scores=scores,
                              model_name=f"baseline {self._model}", latency_ms=latency_ms, usage=usage,
                              out_of_scope=none, none_of_these=answer.department == OUT_OF_SCOPE)


class ColdStartRouter:
    """The active fine-tuned model when there is one, else the baseline (when configured)."""

    def __init__(self, active: Any, baseline: BaselineRouter | None) -> None:
        self._active, self._baseline = active, baseline

    @property
    def model_id(self) -> int | None:
        return self._active.model_id  # type: ignore[no-any-return]

    @property
    def baseline(self) -> BaselineRouter | None:
        return self._baseline

    def classify(self, text: str) -> Classification:
        try:
            return self._active.classify(text)  # type: ignore[no-any-return]
        except NoActiveModel:
            if self._baseline is None:
                raise
        try:
            return self._baseline.classify(text)
        except BaselineUnavailable as exc:
            log.warning("%s: sending the message to triage", exc)
            raise NoActiveModel(str(exc)) from exc
