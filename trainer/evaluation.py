"""Scores the candidate, the active model and the baseline on the same holdout examples.

The active adapter is loaded beside the candidate's on the base model already in memory (PEFT
keeps several adapters on one base), so evaluating it costs no second base-model load. Only when
the active model was trained on another base model is that base loaded for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from router.adapters import check_adapter_dir
from router.classifier import LoraRouter, Router
from router.metrics import classification_metrics
from router.settings import Settings
from store.db import SessionFactory
from store.examples import list_departments
from store.tables import ModelVersion
from trainer.baseline import BaselineUnavailable, baseline_configured, make_openai_client, score_baseline
from trainer.gate import NOT_CONFIGURED, Contender, Scores
from trainer.snapshot import Snapshot

log = logging.getLogger(__name__)


def evaluate_router(router: Router, snapshot: Snapshot) -> Contender | None:
    if not snapshot.holdout:
        return None
    out = router.classify_batch([e.text for e in snapshot.holdout])
    predictions = [c.department for c in out]
    metrics = classification_metrics([e.label for e in snapshot.holdout], predictions, labels=snapshot.labels,
                                     confidences=[c.confidence for c in out])
    return Contender(metrics, predictions)


def evaluate_current(settings: Settings, current: ModelVersion, candidate_model: Any, tokenizer: Any,
                     snapshot: Snapshot) -> Contender | None:
    """The active model on the holdout, loaded as a second adapter on the candidate's base."""
    folder = Path(current.adapter_path)
    meta = check_adapter_dir(folder)
    if current.base_model != settings.base_model:
        from router.loading import load_router

        router: Router = load_router(settings, adapter_dir=folder, name=f"model {current.id}",
                                     base_model=current.base_model)
        return evaluate_router(router, snapshot)
    candidate_model.load_adapter(str(folder), adapter_name="active", is_trainable=False)
    try:
        candidate_model.set_adapter("active")
        router = LoraRouter(model=candidate_model.get_base_model(), tokenizer=tokenizer, labels=meta.labels,
                            prompt=meta.prompt, name=f"model {current.id}")
        return evaluate_router(router, snapshot)
    finally:
        candidate_model.set_adapter("default")
        candidate_model.delete_adapter("active")


def evaluate_baseline(settings: Settings, sessions: SessionFactory, snapshot: Snapshot, client: Any | None,
                      backoff_s: float = 1.0) -> tuple[Contender | None, str, dict[str, Any] | None]:
    """(contender or None, note for the report, cost report). Never raises for an unreachable API."""
    if not baseline_configured(settings) and client is None:
        return None, NOT_CONFIGURED, None
    if not snapshot.holdout:
        return None, "baseline: no holdout to score", None
    with sessions() as session:
        descriptions = {d.name: d.description for d in list_departments(session)}
    try:
        result = score_baseline(client or make_openai_client(settings), sessions, model=settings.baseline_model,
                                departments=[(name, descriptions.get(name)) for name in snapshot.labels],
                                train=snapshot.train, holdout=snapshot.holdout, backoff_s=backoff_s)
    except BaselineUnavailable as exc:
        log.warning("%s", exc)
        return None, str(exc), None
    predictions = [result.predictions[e.query_id] for e in snapshot.holdout]
    metrics = classification_metrics([e.label for e in snapshot.holdout], predictions, labels=snapshot.labels)
    return Contender(metrics, predictions), f"baseline: {settings.baseline_model}", result.to_report()


def score_everyone(settings: Settings, sessions: SessionFactory, snapshot: Snapshot, *, candidate: Router,
                   candidate_model: Any, tokenizer: Any, current: ModelVersion | None,
                   openai_client: Any | None, backoff_s: float = 1.0) -> tuple[Scores, dict[str, Any] | None]:
    baseline, note, cost = evaluate_baseline(settings, sessions, snapshot, openai_client, backoff_s)
    scores = Scores(
        y_true=[e.label for e in snapshot.holdout],
        candidate=evaluate_router(candidate, snapshot),
        current=evaluate_current(settings, current, candidate_model, tokenizer, snapshot) if current else None,
        baseline=baseline, baseline_note=note,
        baseline_configured=baseline_configured(settings) or openai_client is not None,
    )
    return scores, cost
