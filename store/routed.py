"""A customer's message as the store sees it: one read before the model, one write after it.

`routing_context` reads everything the bot decides with (the message if a redelivery answered it
already, the departments with their channels, the holdout counts the audit rate follows);
`record_routed_message` writes the query, the model's verdict, the message and, for the
baseline's answers, the answer cache, in one transaction. The bot then writes only the reply's ts
once Slack has given it one (store/posts.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from core.margins import top_two_margin
from store.db import SessionFactory, transaction
from store.examples import list_departments
from store.slack import find_message, holdout_counts, query_for_text
from store.tables import BaselinePrediction, Department, Prediction, SlackMessage

RECENT = 500  # routed messages whose margins decide what "least sure" means now


@dataclass(frozen=True)
class RoutingContext:
    earlier: SlackMessage | None  # the same message handled before (under another event id)
    departments: list[Department]
    holdout: Counter[str]
    margins: list[float] = field(default_factory=list)  # the last routed messages' top-two margins
    asked: int = 0  # how many of those the bot asked agents about

    def department_channels(self) -> set[str]:
        """The departments' channels: the bot posts there, and never routes their messages (bot/channels.py)."""
        return {d.channel for d in self.departments if d.channel}

    def department(self, name: str | None) -> Department | None:
        return next((d for d in self.departments if d.name == name), None)


def routing_context(session: Session, *, channel: str, ts: str) -> RoutingContext:
    recent = session.exec(
        select(SlackMessage.ask_requested, Prediction.scores)
        .join(Prediction, col(Prediction.id) == SlackMessage.prediction_id)
        .where(col(SlackMessage.routed_to).is_not(None))
        .order_by(col(SlackMessage.id).desc()).limit(RECENT)).all()
    return RoutingContext(find_message(session, channel=channel, ts=ts), list_departments(session),
                          holdout_counts(session), [top_two_margin(scores) for _, scores in recent],
                          sum(1 for asked, _ in recent if asked))


@dataclass(frozen=True)
class Verdict:
    """What the model said about a message, as the store keeps it."""

    department: str
    confidence: float
    scores: dict[str, float]
    latency_ms: float
    out_of_scope: float | None = None
    model_id: int | None = None  # a registry model; None for the baseline
    baseline_model: str | None = None
    prompt_version: str | None = None  # the baseline's prompt, for its answer cache
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


def record_routed_message(sessions: SessionFactory, *, text: str, channel: str, ts: str, user: str | None,
                          event_id: str | None, verdict: Verdict | None, routed_to: str | None,
                          audit: bool, ask: bool = False, cache_answer: bool = False,
                          external: bool = False) -> SlackMessage:
    """Stores the message, its query and the verdict; `cache_answer` keeps a baseline's answer for
    the gate and distillation, so they never pay for it again."""
    with transaction(sessions) as session:
        query = query_for_text(session, text=text, channel=channel, ts=ts, user=user, event_id=event_id)
        assert query.id is not None
        prediction = _prediction(session, query.id, verdict) if verdict is not None else None
        message = SlackMessage(channel=channel, ts=ts, user=user, event_id=event_id, query_id=query.id,
                               prediction_id=prediction.id if prediction else None, routed_to=routed_to,
                               audit_requested=audit, ask_requested=ask, external=external)
        session.add(message)
        if verdict is not None and cache_answer and verdict.prompt_version and verdict.baseline_model:
            _cache_baseline_answer(session, query.id, verdict, verdict.prompt_version, verdict.baseline_model)
        session.flush()
    return message


def shown_verdict(session: Session, message: SlackMessage) -> tuple[Prediction | None, list[Department]]:
    """What the reply shows: the verdict the message was routed by, and the departments."""
    prediction = session.get(Prediction, message.prediction_id) if message.prediction_id is not None else None
    return prediction, list_departments(session)


def _prediction(session: Session, query_id: int, verdict: Verdict) -> Prediction:
    fields: dict[str, Any] = {k: getattr(verdict, k) for k in (
        "department", "confidence", "scores", "latency_ms", "out_of_scope", "baseline_model", "prompt_tokens",
        "completion_tokens", "cost_usd")}
    prediction = Prediction(query_id=query_id, model_version_id=verdict.model_id, **fields)
    session.add(prediction)
    session.flush()
    return prediction


def _cache_baseline_answer(session: Session, query_id: int, verdict: Verdict, prompt_version: str, model: str) -> None:
    """Keeps the baseline's answer to a routed message unless that prompt's answer is kept already."""
    kept = session.exec(select(BaselinePrediction).where(
        BaselinePrediction.query_id == query_id, BaselinePrediction.prompt_version == prompt_version,
        BaselinePrediction.model == model)).first()
    if kept is None:
        session.add(BaselinePrediction(query_id=query_id, prompt_version=prompt_version,
                                       model=model, department=verdict.department,
                                       prompt_tokens=verdict.prompt_tokens or 0,
                                       completion_tokens=verdict.completion_tokens or 0))
