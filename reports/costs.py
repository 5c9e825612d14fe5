"""Cost per 1,000 queries of the few-shot baseline and of the fine-tuned router, and a year's projection.

Pure arithmetic on what the store measured (`store.costs.CostMeasures`): the baseline from the tokens it
actually used, at list prices; the router from what its host costs per hour and how many queries it
answers in an hour, one at a time, at its median latency. The projection is the book's Figure 5.1: the
current volume growing 1 % a day for a year; the baseline pays per query, the router per host-hour,
with as many hosts as the day's volume needs. A figure that was not measured is None, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from classifier.baseline_client import price_usd

if TYPE_CHECKING:
    from core.settings import Settings
    from store.costs import BaselineUsage, CostMeasures

DAYS = 365
DAILY_GROWTH = 0.01


@dataclass(frozen=True)
class BaselineCost:
    model: str
    usage: BaselineUsage | None
    per_1000_usd: float | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        return {"model": self.model, "cost_per_1000_usd": self.per_1000_usd,
                "tokens_per_query": None if u is None else round(u.tokens, 1),
                "prompt_tokens_per_query": None if u is None else round(u.prompt_tokens, 1),
                "completion_tokens_per_query": None if u is None else round(u.completion_tokens, 1),
                "measured_requests": 0 if u is None else u.requests, "note": self.note}


@dataclass(frozen=True)
class RouterCost:
    host_usd_per_hour: float
    median_latency_ms: float | None
    queries_per_hour: float | None  # one query at a time on one host
    per_1000_usd: float | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cost_per_1000_usd": self.per_1000_usd, "host_usd_per_hour": self.host_usd_per_hour,
                "median_latency_ms": self.median_latency_ms, "queries_per_hour": self.queries_per_hour,
                "note": self.note}


@dataclass(frozen=True)
class Projection:
    volume_per_day: float  # day 0's volume; day d's is volume_per_day * (1 + DAILY_GROWTH) ** d
    baseline_daily: list[float] | None  # dollars per day; None when the baseline's cost is unknown
    router_daily: list[float] | None
    router_hosts_max: int | None
    note: str | None = None

    @property
    def baseline_usd(self) -> float | None:
        return None if self.baseline_daily is None else round(sum(self.baseline_daily), 2)

    @property
    def router_usd(self) -> float | None:
        return None if self.router_daily is None else round(sum(self.router_daily), 2)

    def to_json(self) -> dict[str, Any]:
        return {"days": DAYS, "daily_growth": DAILY_GROWTH, "volume_per_day": self.volume_per_day,
                "baseline_usd": self.baseline_usd, "router_usd": self.router_usd,
                "router_hosts_max": self.router_hosts_max, "note": self.note}


@dataclass(frozen=True)
class CostSummary:
    baseline: BaselineCost | None  # None: no baseline configured
    router: RouterCost
    projection: Projection

    @property
    def chartable(self) -> bool:
        return self.projection.baseline_daily is not None or self.projection.router_daily is not None

    def to_json(self) -> dict[str, Any]:
        return {"baseline": None if self.baseline is None else self.baseline.to_json(),
                "router": self.router.to_json(), "volume_per_day": self.projection.volume_per_day,
                "projection": self.projection.to_json()}


@dataclass(frozen=True)
class Pricing:
    """The prices that turn measures into dollars; also what `store.overview.status` takes."""

    baseline_model: str | None  # None when no baseline is configured
    host_usd_per_hour: float

    @classmethod
    def of(cls, settings: Settings) -> Pricing:
        return cls(settings.baseline_model if settings.baseline_configured else None, settings.host_usd_per_hour)

    def baseline(self, measures: CostMeasures) -> BaselineCost | None:
        if self.baseline_model is None:
            return None
        usage = measures.baseline.get(self.baseline_model)
        if usage is None:
            return BaselineCost(self.baseline_model, None, None, f"no {self.baseline_model} request measured yet")
        # The tokens of 1,000 mean requests, priced at once: price_usd rounds, and a single query's cost is tiny.
        cost = price_usd(self.baseline_model, round(usage.prompt_tokens * 1000), round(usage.completion_tokens * 1000))
        return BaselineCost(self.baseline_model, usage, cost,
                            None if cost is not None else f"no list price known for {self.baseline_model}")

    def router(self, measures: CostMeasures) -> RouterCost:
        latency = measures.median_latency_ms
        if latency is None or latency <= 0:
            return RouterCost(self.host_usd_per_hour, None, None, None,
                              "the fine-tuned router has not routed a query yet")
        per_hour = 3_600_000 / latency
        return RouterCost(self.host_usd_per_hour, latency, round(per_hour, 1),
                          round(self.host_usd_per_hour / per_hour * 1000, 6))

    def routing_cost(self, measures: CostMeasures, *, baseline: bool) -> tuple[float | None, str | None]:
        cost = self.baseline(measures) if baseline else self.router(measures)
        return (None, "no baseline configured") if cost is None else (cost.per_1000_usd, cost.note)

    def summarize(self, measures: CostMeasures) -> CostSummary:
        baseline, router = self.baseline(measures), self.router(measures)
        projection = project(measures.volume_per_day, baseline_per_1000=baseline.per_1000_usd if baseline else None,
                             host_usd_per_hour=self.host_usd_per_hour, queries_per_hour=router.queries_per_hour)
        return CostSummary(baseline, router, projection)


def daily_volumes(volume_per_day: float, *, days: int = DAYS, growth: float = DAILY_GROWTH) -> list[float]:
    return [volume_per_day * (1 + growth) ** d for d in range(days)]


def project(volume_per_day: float, *, baseline_per_1000: float | None, host_usd_per_hour: float,
            queries_per_hour: float | None) -> Projection:
    """A year's daily costs; the router keeps at least one host up, and adds one per host-day of queries."""
    volumes = daily_volumes(volume_per_day)
    baseline = None if baseline_per_1000 is None else [v * baseline_per_1000 / 1000 for v in volumes]
    router, hosts_max = None, None
    if queries_per_hour:
        hosts = [max(1, math.ceil(v / (queries_per_hour * 24))) for v in volumes]
        router, hosts_max = [h * 24 * host_usd_per_hour for h in hosts], max(hosts)
    note = None if volume_per_day > 0 else "no customer messages in the last 7 days: no traffic to project"
    return Projection(volume_per_day, baseline, router, hosts_max, note)
