"""What routing has cost so far, as the store measured it: the baseline's tokens, the router's latency, the volume.

Queries (and the one dollar format both sides print): pricing these, at list prices and the host's price
per hour, is `reports.costs`'s job, which the store never imports; `status` takes it as a `Pricing` parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel import Session, col, func, select

from store.tables import BaselinePrediction, Prediction, SlackMessage, utcnow

VOLUME_WINDOW_DAYS = 7


@dataclass(frozen=True)
class BaselineUsage:
    """The tokens one baseline model actually used: means per request, over `requests` requests."""

    model: str
    requests: int
    prompt_tokens: float
    completion_tokens: float

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class CostMeasures:
    baseline: dict[str, BaselineUsage]  # model -> usage; only models with at least one measured request
    median_latency_ms: float | None  # the fine-tuned router's, one query at a time; None before it routed any
    router_queries: int
    volume_per_day: float  # customer messages per day over the last VOLUME_WINDOW_DAYS days


class Pricing(Protocol):
    """What `status` needs to say which model routes and what that costs (`reports.costs.Pricing`)."""

    @property
    def baseline_model(self) -> str | None:
        """The configured baseline's model; None when no baseline is configured."""
        ...

    def routing_cost(self, measures: CostMeasures, *, baseline: bool) -> tuple[float | None, str | None]:
        """Dollars per 1,000 queries routed by the baseline (or the fine-tuned router), or None and why not."""
        ...


def cost_measures(session: Session, *, now: datetime | None = None) -> CostMeasures:
    latency, count = median_router_latency(session)
    return CostMeasures(baseline=baseline_usage(session), median_latency_ms=latency, router_queries=count,
                        volume_per_day=volume_per_day(session, now=now))


def baseline_usage(session: Session) -> dict[str, BaselineUsage]:
    """Per model, over the baseline's holdout and distillation answers and the messages it routed."""
    totals: dict[str, tuple[int, int, int]] = {}
    scored = select(BaselinePrediction.model, func.count(), func.sum(BaselinePrediction.prompt_tokens),
                    func.sum(BaselinePrediction.completion_tokens)).group_by(col(BaselinePrediction.model))
    routed = (select(Prediction.baseline_model, func.count(), func.sum(Prediction.prompt_tokens),
                     func.sum(Prediction.completion_tokens))
              .where(col(Prediction.baseline_model).is_not(None), col(Prediction.prompt_tokens).is_not(None),
                     col(Prediction.completion_tokens).is_not(None))
              .group_by(col(Prediction.baseline_model)))
    for stmt in (scored, routed):
        for model, n, prompt, completion in session.exec(stmt):  # type: ignore[call-overload]
            if model is None:
                continue
            before = totals.get(model, (0, 0, 0))
            totals[model] = (before[0] + int(n), before[1] + int(prompt or 0), before[2] + int(completion or 0))
    return {model: BaselineUsage(model, n, prompt / n, completion / n)
            for model, (n, prompt, completion) in totals.items() if n}


def median_router_latency(session: Session) -> tuple[float | None, int]:
    """The median latency of the fine-tuned router's predictions and how many there are.

    The middle rows are found by the database (ORDER BY with OFFSET), so no latency list is loaded.
    """
    routed = (col(Prediction.model_version_id).is_not(None), col(Prediction.baseline_model).is_(None))
    n = int(session.exec(select(func.count()).select_from(Prediction).where(*routed)).one())
    if n == 0:
        return None, 0
    middle = list(session.exec(select(Prediction.latency_ms).where(*routed).order_by(col(Prediction.latency_ms))
                               .offset((n - 1) // 2).limit(1 if n % 2 else 2)))
    return sum(middle) / len(middle), n


def volume_per_day(session: Session, *, now: datetime | None = None) -> float:
    since = (now or utcnow()) - timedelta(days=VOLUME_WINDOW_DAYS)
    n = session.exec(select(func.count()).select_from(SlackMessage).where(SlackMessage.created_at >= since)).one()
    return int(n or 0) / VOLUME_WINDOW_DAYS


def usd(amount: float | None) -> str:
    """Dollars with two decimals, or two significant digits below a cent (a router's cost per query is tiny)."""
    if amount is None:
        return "unknown"
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:,.2f}"
    return f"${amount:.{1 - math.floor(math.log10(abs(amount)))}f}"
