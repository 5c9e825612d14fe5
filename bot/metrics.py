"""The bot's `/metrics` for Prometheus: what this process routed and how fast, the model it serves and
its queue, and the store-wide counts every replica reads alike (training runs by outcome, events
waiting for a retry, retrain requests waiting).

One registry per process, built by `switchboard serve` and passed in with the other dependencies,
never the client library's global one. Per-process counters add up across replicas in a query
(`sum by (outcome) (rate(switchboard_messages_total[5m]))`); the store gauges are the same on
every replica (take `max`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from store.db import SessionFactory
from store.gauges import store_gauges

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("switchboard_messages", "Customer messages answered, by outcome "
                                "(routed, triaged, out_of_scope)", ["outcome"], registry=self.registry)
        self.routed = Counter("switchboard_routed", "Messages routed to a department", ["department"],
                              registry=self.registry)
        self.corrections = Counter("switchboard_corrections", "Agents' relabels of a routed message, by the "
                                   "department it had been routed to", ["department"], registry=self.registry)
        self.latency = Histogram("switchboard_classification_seconds", "Time to classify one message",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.alerts = Counter("switchboard_drift_alarms", "Drift alarms this process raised", ["department"],
                              registry=self.registry)

    def watch(self, *, health: Callable[[], dict[str, Any]], sessions: SessionFactory) -> BotMetrics:
        """Adds the values read when scraped: the serving model and its queue, and the store's counts."""
        serving = Gauge("switchboard_serving_model", "Id of the model this process serves (0: none)",
                        registry=self.registry)
        serving.set_function(lambda: float(health().get("active_model") or 0))
        queue = Gauge("switchboard_model_queue_depth", "Requests waiting for the model thread",
                      registry=self.registry)
        queue.set_function(lambda: float(health().get("backlog") or 0))
        wanted = Gauge("switchboard_registry_model", "Id of the model the registry says is active, as this "
                       "process last read it (0: none)", registry=self.registry)
        wanted.set_function(lambda: float(health().get("registry_model") or 0))
        degraded = Gauge("switchboard_degraded", "1 while /healthz says degraded (a stuck model thread, a "
                         "backlog, or the registry's model not served); the reasons are in /healthz",
                         registry=self.registry)
        degraded.set_function(lambda: float(health().get("status", "ok") != "ok"))
        self.registry.register(_StoreCollector(sessions))
        return self

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._sessions() as session:
            gauges = store_gauges(session)
        runs = GaugeMetricFamily("switchboard_training_runs", "Training runs in the store, by outcome",
                                 labels=["outcome"])
        for outcome in ("promoted", "not_promoted", "skipped", "failed", "running"):
            runs.add_metric([outcome], gauges.runs_by_outcome.get(outcome, 0))
        yield runs
        yield GaugeMetricFamily("switchboard_events_waiting_retry", "Slack events whose handling failed and "
                                "waits for the outbox's retry", value=gauges.events_waiting_retry)
        yield GaugeMetricFamily("switchboard_events_handed_off", "Slack events whose retries ran out and "
                                "that were handed to people (the triage channel) in the last day",
                                value=gauges.events_handed_off)
        yield GaugeMetricFamily("switchboard_events_abandoned", "Slack events even the hand-off failed for: "
                                "alert on any", value=gauges.events_abandoned)
        yield GaugeMetricFamily("switchboard_retrain_requests_waiting", "Admins' retrain requests not yet "
                                "answered by the trainer", value=gauges.retrain_requests_waiting)
