"""The simulated deployment behind `python -m bench.loop`: the bot's routing decisions and the agents around it.

Every decision is the product's own function: the routing model (`ColdStartRouter`: the baseline
until a fine-tuned model is promoted), the triage rule, the audit draw, the store's recording of a
routed message, label sources and splits, the retrain trigger and the whole training pipeline.
Only Slack, the people and the clock are simulated: messages arrive at `MESSAGES_PER_DAY`, so the
implicit labels' grace window (`SWITCHBOARD_IMPLICIT_AFTER_HOURS`) is a position in the stream.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.asks import should_ask
from bot.audits import should_audit
from bot.baseline_router import BaselineRouter, ColdStartRouter
from bot.routing import verdict_of
from bot.shadow import ShadowQueue
from classifier.baseline_client import make_openai_client
from classifier.routing.outcomes import sent_to_triage
from classifier.routing.router import Classification
from classifier.serving.active_router import NoActiveModel
from core.margins import top_two_margin
from core.settings import Settings
from store.db import SessionFactory, make_engine, session_factory, transaction
from store.examples import add_examples, get_department, label_query
from store.migrations import migrate
from store.registry import active_model
from store.routed import record_routed_message, routing_context
from store.run_report import RunReport
from store.tables import Label, LabelSource, Query, SlackMessage
from trainer.alternatives import AlternativeSet
from trainer.deps import TrainerConfig, TrainerDeps
from trainer.pipeline import RunOptions, run_training
from trainer.promotion import settle_shadow
from trainer.schedule import pending_labels

MESSAGES_PER_DAY = 300
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def open_store(home: Path) -> SessionFactory:
    engine = make_engine(f"sqlite:///{home / 'switchboard.db'}")
    migrate(engine)
    return session_factory(engine)


class ActiveModel:
    """The registry's active model, reloaded whenever the pointer moves (what the bot's hot swap does)."""

    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self.settings, self.sessions = settings, sessions
        self.model_id: int | None = None
        self.router: Any = None

    def refresh(self) -> None:
        from classifier.routing.router import load_router

        with self.sessions() as session:
            model = active_model(session)
        if model is not None and model.id != self.model_id:
            self.router = load_router(self.settings.base_model, cache_dir=self.settings.cache_dir,
                                      adapter_dir=Path(model.adapter_path), name=str(model.id))
            self.model_id = model.id

    def classify(self, text: str) -> Classification:
        if self.router is None:
            raise NoActiveModel("no model yet")
        return self.router.classify(text)  # type: ignore[no-any-return]


class SimulatedDeployment:
    def __init__(self, settings: Settings, sessions: SessionFactory, *, rng: random.Random, correct_rate: float,
                 test: list[tuple[str, str]]) -> None:
        self.settings, self.sessions, self.rng, self.correct_rate, self.test = (settings, sessions, rng,
                                                                                  correct_rate, test)
        self.client = make_openai_client(settings.openai_api_key, settings.openai_base_url)
        self.active = ActiveModel(settings, sessions)
        self.baseline = BaselineRouter(self.client, sessions, model=settings.baseline_model)
        self.router = ColdStartRouter(self.active, self.baseline)
        self.options = RunOptions(progress=False, trigger="bench", alternatives=AlternativeSet.FAST)
        self.deps = self.trainer_deps(settings, sessions)
        self.candidate = ActiveModel(settings, sessions)  # the candidate in shadow, when there is one
        self.shadow = ShadowQueue(self._classify_in_shadow)
        self.shadow_log: list[dict[str, Any]] = []  # each shadow window's end
        self.routing_log: list[dict[str, Any]] = []
        self.streamed = 0
        self.seen: Counter[str] = Counter()

    def trainer_deps(self, settings: Settings, sessions: SessionFactory, **changes: Any) -> TrainerDeps:
        """What the product's trainer is handed, on this world's baseline and simulated clock."""
        return replace(TrainerDeps(sessions, TrainerConfig.of(settings), baseline=self.client, clock=self.now,
                                   baseline_backoff_s=0.0), **changes)

    def now(self) -> datetime:
        return EPOCH + timedelta(days=self.streamed / MESSAGES_PER_DAY)

    def import_history(self, examples: list[tuple[str, str]]) -> dict[str, Any]:
        with transaction(self.sessions) as session:
            add_examples(session, examples=examples)
        return self.retrain(0)

    def route(self, text: str, truth: str) -> None:
        """One customer message: routed (or triaged) as the bot does, then seen by the agents."""
        self.streamed += 1
        ts = f"{self.streamed}.000000"
        result = self.router.classify(text)
        triage = sent_to_triage(result, threshold=self.settings.confidence_threshold,
                                margin=self.settings.confidence_margin)
        routed_to = None if triage else result.department
        with self.sessions() as session:
            context = routing_context(session, channel="CSUPPORT", ts=ts)
        audit = should_audit(self.rng, result, context.holdout, self.settings.audit_rate,
                             cold_start_rate=self.settings.cold_start_audit_rate)
        ask = (not audit and routed_to is not None
               and should_ask(top_two_margin(result.scores), context.margins, context.asked, self.settings.ask_rate))
        message = record_routed_message(self.sessions, text=text, channel="CSUPPORT", ts=ts,
                                        user="UCUSTOMER", event_id=None, verdict=verdict_of(result),
                                        routed_to=routed_to, audit=audit, ask=ask, cache_answer=True)
        self._stamp(message)
        outcome = "triage" if triage else "right" if routed_to == truth else "misrouted"
        self.seen[f"{'baseline' if result.usage else 'model'}:{outcome}"] += 1
        if audit:
            self._label(message.query_id, truth, LabelSource.AUDIT)
        elif ask:
            self._label(message.query_id, truth, LabelSource.ASKED)
            self.seen["asked"] += 1
        elif outcome != "right" and self.rng.random() < self.correct_rate:
            self._label(message.query_id, truth, LabelSource.AGENT)
        self._shadow(message, text)

    def _shadow(self, message: SlackMessage, text: str) -> None:
        """The bot's shadow step after the reply (bot/shadow.py), then the trainer service's poll ending a full
        window (trainer/promotion.py). The candidate is loaded as its own merged model here; the product
        serves it on the active model's base (classifier/model/shadow_deltas.py), the same function."""
        if not self.shadow.add(self.sessions, message, text):
            return
        settled = settle_shadow(self.sessions, self.deps.config.rules)
        if settled is None:
            return
        self.active.refresh()
        self.shadow_log.append({"streamed": self.streamed, "model_id": settled.model_id,
                                "outcome": settled.outcome.value, "reason": settled.reason,
                                "routing_test_accuracy": self.test_accuracy(self.router),
                                "baseline_routing_usd": self.routing_cost()})

    def _classify_in_shadow(self, texts: Sequence[str], model_id: int, folder: str) -> list[Classification]:
        if self.candidate.model_id != model_id:
            from classifier.routing.router import load_router

            self.candidate.router = load_router(self.settings.base_model, cache_dir=self.settings.cache_dir,
                                                adapter_dir=Path(folder), name=f"candidate {model_id}")
            self.candidate.model_id = model_id
        return self.candidate.router.classify_batch(texts)  # type: ignore[no-any-return]

    def _stamp(self, message: SlackMessage) -> None:
        """The message and its query arrive at the simulated time."""
        with transaction(self.sessions) as session:
            stored, query = session.get(SlackMessage, message.id), session.get(Query, message.query_id)
            assert stored is not None and query is not None
            stored.created_at = query.received_at = self.now()
            session.add_all([stored, query])

    def _label(self, query_id: int, department: str, source: LabelSource) -> None:
        with transaction(self.sessions) as session:
            query, target = session.get(Query, query_id), get_department(session, name=department)
            assert query is not None and target is not None
            label_query(session, query=query, department=target, source=source, author="simulated-agent")

    def retrain_due(self) -> bool:
        return pending_labels(self.sessions) >= self.settings.retrain_after_labels

    def retrain(self, streamed: int) -> dict[str, Any]:
        began = time.perf_counter()
        report = run_training(self.deps, self.options)
        wall = round(time.perf_counter() - began, 1)
        candidate_accuracy = self.candidate_accuracy(self.settings, report)
        self.active.refresh()
        routing = f"model {self.active.model_id}" if self.active.model_id else "baseline"
        self.routing_log.append({"streamed": streamed, "since_last_run": dict(self.seen)})
        self.seen.clear()
        return {"run_id": report.run_id, "streamed": streamed, "promoted": report.promoted, "reason": report.reason,
                "routing_model": routing, "routing_test_accuracy": self.test_accuracy(self.router),
                "candidate_test_accuracy": candidate_accuracy,
                "holdout": {"n": report.candidate.n if report.candidate else 0, "sources": report.holdout_sources},
                "macro_f1": {who: getattr(report, who).macro_f1 if getattr(report, who) else None
                             for who in ("candidate", "current", "baseline")},
                "bootstrap": report.bootstrap_macro_f1_difference, "not_judged": report.not_judged,
                "known_mistakes": asdict(report.known_mistakes) if report.known_mistakes else None,
                "train_sources": report.train_sources,
                "labels_by_source": self.labels_by_source(),
                "baseline_cost_usd": {"gate": report.baseline_cost.cost_usd if report.baseline_cost else 0.0,
                                      "routing_so_far": self.routing_cost()},
                "implicit_labels_added": report.implicit_labels,
                "distilled": asdict(report.distillation) if report.distillation else None,
                "training": {k: (report.training or {}).get(k) for k in (
                    "examples", "new", "replay", "seconds", "steps", "best_step", "fold_loss_curve")},
                "run_wall_seconds": wall}

    def candidate_accuracy(self, settings: Settings, report: RunReport) -> float | None:
        if report.adapter is None:
            return None
        from classifier.routing.router import load_router

        return self.test_accuracy(load_router(settings.base_model, cache_dir=settings.cache_dir,
                                                   adapter_dir=Path(report.adapter), name="candidate"))

    def test_accuracy(self, router: Any) -> float:
        texts = [t for t, _ in self.test]
        if hasattr(router, "classify_batch"):
            answers = [c.department for c in router.classify_batch(texts)]
        else:
            answers = [self._test_answer(router, t) for t in texts]
        return round(sum(a == y for a, (_, y) in zip(answers, self.test, strict=True)) / len(self.test), 4)

    def _test_answer(self, router: ColdStartRouter, text: str) -> str:
        try:
            return router.classify(text).department
        except NoActiveModel:
            return ""

    def labels_by_source(self) -> dict[str, int]:
        from sqlmodel import col, select

        with self.sessions() as session:
            rows = session.exec(select(Label.source).where(col(Label.withdrawn_at).is_(None)))
            return dict(Counter(LabelSource(s).value for s in rows))

    def routing_cost(self) -> float:
        from sqlalchemy import func
        from sqlmodel import select

        from store.tables import Prediction

        with self.sessions() as session:
            cost = session.exec(select(func.coalesce(func.sum(Prediction.cost_usd), 0.0))).one()
        return round(float(cost or 0.0), 4)
