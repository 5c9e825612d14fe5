"""Scores the candidate, the active model and the baseline on the same holdout examples.

The active adapter is loaded beside the candidate's on the base model already in memory (PEFT
keeps several adapters on one base), so evaluating it costs no second base-model load. Only when
the active model was trained on another base model is that base loaded for it.

With SWITCHBOARD_INFERENCE_URL set, both are scored by the inference engine that serves the bot
(classifier/serving/engine_router.py), each loaded there under a name of its own and unloaded after: the gate
judges what would be served (the label scores, without the head). If the engine fails, both are
scored here instead, so the two are always compared on the same scorer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from classifier.routing.adapters import check_adapter_dir, read_bank, read_bank_labels
from classifier.routing.head import read_head
from classifier.routing.metrics import classification_metrics
from classifier.routing.router import LoraRouter, Router
from classifier.serving.engine_router import EngineClient, EngineError, engine_candidate
from store.db import SessionFactory
from store.run_report import BaselineCost, KnownMistakes
from store.tables import OUT_OF_SCOPE, ModelVersion
from trainer.baseline import BaselineUnavailable, score_baseline
from trainer.deps import TrainerConfig
from trainer.gate import NOT_CONFIGURED, Contender, Scores
from trainer.snapshot import Snapshot

log = logging.getLogger(__name__)


class Evaluated:
    """A router's answers on the holdout, and how many of the known mistakes it gets right."""

    def __init__(self, router: Router, snapshot: Snapshot) -> None:
        self.holdout: Contender | None = None
        if snapshot.holdout:
            out = router.classify_batch([e.text for e in snapshot.holdout])
            # "None of these" is scored where the holdout can show it right; on a holdout without
            # out-of-scope examples it could only be wrong, so there the department is scored.
            judged_none = any(e.label == OUT_OF_SCOPE for e in snapshot.holdout)
            predictions = [c.answer if judged_none else c.department for c in out]
            metrics = classification_metrics([e.label for e in snapshot.holdout], predictions,
                                             labels=snapshot.labels, confidences=[c.confidence for c in out])
            self.holdout = Contender(metrics, predictions)
        mistakes = snapshot.known_mistakes
        answers = router.classify_batch([e.text for e in mistakes]) if mistakes else []
        self.mistakes_right = sum((a.answer if e.label == OUT_OF_SCOPE else a.department) == e.label
                                  for a, e in zip(answers, mistakes, strict=True))



def evaluate_current(config: TrainerConfig, current: ModelVersion, candidate_model: Any, tokenizer: Any,
                     snapshot: Snapshot) -> Evaluated:
    """The active model on the holdout, loaded as a second adapter on the candidate's base."""
    folder = Path(current.adapter_path)
    meta = check_adapter_dir(folder)
    if current.base_model != config.base_model:
        from classifier.routing.router import load_router

        router: Router = load_router(current.base_model, cache_dir=config.cache_dir, adapter_dir=folder,
                                     name=f"model {current.id}")
        return Evaluated(router, snapshot)
    candidate_model.load_adapter(str(folder), adapter_name="active", is_trainable=False)
    try:
        candidate_model.set_adapter("active")
        router = LoraRouter(model=candidate_model.get_base_model(), tokenizer=tokenizer, labels=meta.labels,
                            prompt=meta.prompt, name=f"model {current.id}", calibration=meta.calibration,
                            bank=read_bank(folder), head=read_head(folder), bank_labels=read_bank_labels(folder))
        return Evaluated(router, snapshot)
    finally:
        candidate_model.set_adapter("default")
        candidate_model.delete_adapter("active")


def evaluate_baseline(config: TrainerConfig, sessions: SessionFactory, snapshot: Snapshot, client: Any | None,
                      backoff_s: float = 1.0) -> tuple[Contender | None, str, BaselineCost | None]:
    """(contender or None, note for the report, cost report). Never raises for an unreachable API.
    `client`: the baseline's, None when none is configured."""
    if client is None:
        return None, NOT_CONFIGURED, None
    if not snapshot.holdout:
        return None, "baseline: no holdout to score", None
    try:
        result = score_baseline(client, sessions, model=config.baseline_model,
                                departments=snapshot.labels, holdout=snapshot.holdout, backoff_s=backoff_s,
                                redact=config.redact)
    except BaselineUnavailable as exc:
        log.warning("%s", exc)
        return None, str(exc), None
    predictions = [result.predictions[e.query_id] for e in snapshot.holdout]
    metrics = classification_metrics([e.label for e in snapshot.holdout], predictions, labels=snapshot.labels)
    return Contender(metrics, predictions), f"baseline: {config.baseline_model}", result.cost()


def score_everyone(config: TrainerConfig, sessions: SessionFactory, snapshot: Snapshot, *, candidate: Router,
                   candidate_model: Any, tokenizer: Any, current: ModelVersion | None, baseline_client: Any | None,
                   backoff_s: float = 1.0, candidate_dir: Path | None = None,
                   ) -> tuple[Scores, BaselineCost | None, KnownMistakes | None]:
    """`candidate_dir`: the candidate's adapter folder, for the engine (default: the adapters folder's entry
    named as the candidate router is)."""
    baseline, note, cost = evaluate_baseline(config, sessions, snapshot, baseline_client, backoff_s)
    judged, unservable = None, None
    if config.inference_url:
        folder = candidate_dir or config.adapters_dir / str(getattr(candidate, "name", ""))
        try:
            judged = _through_engine(config.base_model, EngineClient(config.inference_url), tokenizer, snapshot,
                                     folder, current)
        except CandidateRefused as exc:
            unservable = exc.reason
            log.warning("the inference engine refused the candidate (%s): scoring here; it will not be promoted",
                        exc.reason)
        except EngineError as exc:
            log.warning("%s: scoring the candidate and the active model in this process instead", exc)
    if judged is None:
        judged = (Evaluated(candidate, snapshot),
                  evaluate_current(config, current, candidate_model, tokenizer, snapshot) if current else None)
    mine, theirs = judged
    scores = Scores(
        y_true=[e.label for e in snapshot.holdout], candidate=mine.holdout,
        current=theirs.holdout if theirs else None, baseline=baseline, baseline_note=note,
        baseline_configured=baseline_client is not None, unservable=unservable,
    )
    mistakes = (KnownMistakes(n=len(snapshot.known_mistakes), candidate_correct=mine.mistakes_right,
                              current_correct=theirs.mistakes_right if theirs else None)
                if snapshot.known_mistakes else None)
    return scores, cost, mistakes


class CandidateRefused(Exception):
    """The engine answered, and refused the candidate (a rank above its limit, a layout it cannot load)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _through_engine(base_model: str, engine: EngineClient, tokenizer: Any, snapshot: Snapshot, folder: Path,
                    current: ModelVersion | None) -> tuple[Evaluated, Evaluated | None] | None:
    """Both contenders scored by the engine; None when the active model was trained on another base."""
    if current is not None and current.base_model != base_model:
        return None
    try:
        with engine_candidate(engine, tokenizer, folder, name=folder.name) as scorer:
            mine = Evaluated(scorer, snapshot)
    except EngineError as exc:
        if exc.status is None:  # unreachable: nothing is known about the candidate
            raise
        raise CandidateRefused(exc.message) from exc
    if current is None:
        return mine, None
    with engine_candidate(engine, tokenizer, Path(current.adapter_path), name=f"model {current.id}",
                          model_id=current.id) as scorer:
        return mine, Evaluated(scorer, snapshot)
