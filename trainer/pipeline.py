"""One retraining run, top to bottom: lock, infer labels (implicit, distilled), snapshot, plan, train,
evaluate, gate, promote, report.

`switchboard train`, the slash command and the scheduler all call `run_training`. A crash anywhere
leaves the active model and every label as they were: the adapter is published to a new folder
and registered only at the end, and promotion is one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from classifier.baseline_client import BaselineUnavailable, baseline_configured, make_openai_client
from classifier.routing.adapters import AdapterMeta, discard, new_adapter_dir, publish, sweep_scratch
from classifier.routing.calibration import Calibration
from classifier.routing.metrics import write_confusion_png
from core.errors import SwitchboardError
from core.redact import redactor_of
from core.settings import Settings
from reports.costs import Pricing
from store.db import SessionFactory, transaction
from store.examples import count_labels_since
from store.forget import models_with_forgotten_data
from store.implicit import add_implicit_labels
from store.overview import routing
from store.registry import ActiveModelMoved, active_model, promote, register_model
from store.run_report import Distillation, RunReport
from store.runs import (
    TRAINING_LOCK,
    fail_abandoned_runs,
    finish_run,
    last_trained_at,
    owns_lock,
    release_lock,
    snapshot_time_of,
    start_run,
    try_acquire_lock,
)
from store.shadow import start_pending
from store.tables import ModelStatus, ModelVersion, RunStatus
from trainer.alternatives import score_alternatives
from trainer.baseline import distil
from trainer.candidate import train_candidate
from trainer.config import TrainConfig, hardware_refusal
from trainer.evaluation import score_everyone
from trainer.gate import Decision, GateRules, decide
from trainer.lease import Heartbeat, LeaseLost, owner_name, release_if_holder_died
from trainer.lora import TrainingFailed, TrainResult
from trainer.promotion import first_stage
from trainer.replay import TrainingSet, select_training_set
from trainer.snapshot import Snapshot, take_snapshot

LOCK_TTL = timedelta(minutes=5)
# The active model's own routes become implicit labels only when it was this sure: below, a route it
# got wrong and agents missed would teach it its own mistake (chosen by bench/loop.py's measurement).
IMPLICIT_MIN_MODEL_CONFIDENCE = 0.9
log = logging.getLogger(__name__)


class TrainingBusy(SwitchboardError):
    """Another run holds the training lock."""


@dataclass
class RunOptions:
    config: TrainConfig = field(default_factory=TrainConfig)
    rules: GateRules = field(default_factory=GateRules)
    trigger: str = "cli"
    progress: bool = True
    openai_client: Any | None = None  # tests hand in one pointed at a loopback server
    baseline_backoff_s: float = 1.0  # first wait before retrying a rate-limited or failed baseline request
    alternatives: str = "all"  # "all", "fast" (no fine-tuned encoder: seconds, not minutes, on a CPU) or "none"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the bench runs on simulated time


@dataclass
class Plan:
    """What a run works on: the data snapshot, the model it must beat, and what it trains on."""

    snapshot: Snapshot
    current: ModelVersion | None
    warm_start: ModelVersion | None = None  # the active model, when its adapter fits this base model
    training_set: TrainingSet | None = None
    skip_reason: str | None = None


def run_training(settings: Settings, sessions: SessionFactory, options: RunOptions | None = None) -> RunReport:
    """Runs one retraining under the cross-process lock and returns the run's report."""
    options = options or RunOptions()
    owner = owner_name()
    if not (try_acquire_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL)
            or (release_if_holder_died(sessions)
                and try_acquire_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL))):
        raise TrainingBusy("a training run is already in progress")
    heartbeat = Heartbeat(sessions, owner, ttl=LOCK_TTL)
    try:
        for leftover in sweep_scratch(settings.adapters_dir):
            log.warning("removed %s, a scratch folder left by a run that crashed", leftover)
        with transaction(sessions) as session:
            fail_abandoned_runs(session)
            run_id = start_run(session, trigger=options.trigger).id
        assert run_id is not None
        return _run(settings, sessions, options, run_id, heartbeat)
    finally:
        heartbeat.stop()
        release_lock(sessions, name=TRAINING_LOCK, owner=owner)


def _run(settings: Settings, sessions: SessionFactory, options: RunOptions, run_id: int,
         heartbeat: Heartbeat) -> RunReport:
    started = datetime.now(UTC)
    refused = hardware_refusal(options.config.precision)
    if refused:
        with sessions() as session:
            return _finish(sessions, run_id, RunStatus.FAILED, refused, take_snapshot(session))
    implicit, distillation = _infer_labels(settings, sessions, options)
    plan = _plan(settings, sessions, run_id)
    if plan.skip_reason or plan.training_set is None:
        return _finish(sessions, run_id, RunStatus.SKIPPED, plan.skip_reason or "nothing to train", plan.snapshot)
    scratch, final = new_adapter_dir(settings.adapters_dir, name=f"run{run_id:04d}-{started:%Y%m%d%H%M%S}")
    try:
        candidate, result, calibration, trained_on = train_candidate(
            settings, snapshot=plan.snapshot, training_set=plan.training_set, warm_start=plan.warm_start,
            config=options.config, progress=options.progress, scratch=scratch, name=final.name,
            inferred_weight=settings.implicit_weight)
        heartbeat.check()
        publish(scratch, final, AdapterMeta(labels=plan.snapshot.labels, prompt=candidate.prompt,
                                            base_model=settings.base_model, hyperparameters=result.config.to_dict(),
                                            calibration=calibration))
    except (TrainingFailed, LeaseLost) as exc:
        discard(scratch)
        return _finish(sessions, run_id, RunStatus.FAILED, str(exc), plan.snapshot)
    except BaseException as exc:
        discard(scratch)
        _finish(sessions, run_id, RunStatus.FAILED, f"crashed: {exc!r}"[:500], plan.snapshot)
        raise

    tokenizer = candidate.tokenizer
    scores, baseline_cost, known_mistakes = score_everyone(
        settings, sessions, plan.snapshot, candidate=candidate, candidate_model=result.model, tokenizer=tokenizer,
        current=plan.current, openai_client=options.openai_client, backoff_s=options.baseline_backoff_s,
        candidate_dir=final)
    decision = decide(scores, options.rules)
    alternatives = (score_alternatives([(e.text, e.label) for e in plan.snapshot.train],
                                       [(e.text, e.label) for e in plan.snapshot.holdout], plan.snapshot.labels,
                                       fast_only=options.alternatives == "fast")
                    if options.alternatives != "none" else {})
    png = (write_confusion_png(scores.candidate.metrics["confusion"], final.parent / f"{final.name}.confusion.png",
                               title=f"candidate {final.name} on the holdout") if scores.candidate else None)
    try:
        with transaction(sessions) as session:
            if not owns_lock(session, name=TRAINING_LOCK, owner=heartbeat.owner):
                raise LeaseLost("lost the training lock before registering the candidate (another run may "
                                "have taken it): nothing registered or promoted")
            registered = register_model(session, adapter_path=str(final), base_model=settings.base_model,
                                        labels=plan.snapshot.labels, hyperparameters=result.config.to_dict(),
                                        metrics=_summary(scores.candidate.metrics if scores.candidate else {}),
                                        parent_id=plan.current.id if plan.current else None)
            assert registered.id is not None
            promoted, reason = decision.promote, decision.reason
            stage = first_stage(options.rules, live_rival=scores.routing is not None) if promoted else None
            if stage is not None:
                promoted, reason = False, _pending_reason(stage, decision, options.rules)
            elif promoted:
                try:  # a compare-and-set: an admin's rollback or promotion during the run stands
                    with session.begin_nested():
                        promote(session, model_id=registered.id, by=f"trainer ({options.trigger})",
                                if_active_is=plan.current.id if plan.current else None)
                except ActiveModelMoved as exc:
                    promoted, reason = False, f"{reason}; not promoted: {exc}"
            if stage is not None:
                start_pending(session, model_id=registered.id, stage=stage)
            elif not promoted:
                registered.status = ModelStatus.REJECTED
            return _report(settings, session, run_id, plan, decision, promoted, reason, registered, final, started,
                           stage=stage, rules=options.rules,
                           scores=scores, result=result, calibration=calibration, trained_on=trained_on, png=png,
                           alternatives=alternatives, baseline_cost=baseline_cost, known_mistakes=known_mistakes,
                           distillation=distillation, implicit=implicit)
    except LeaseLost as exc:
        discard(final)
        return _finish(sessions, run_id, RunStatus.FAILED, str(exc), plan.snapshot)


def _report(settings: Settings, session: Any, run_id: int, plan: Plan, decision: Decision, promoted: bool,
            reason: str, registered: ModelVersion, final: Path, started: datetime, *, stage: ModelStatus | None,
            rules: GateRules,
            scores: Any, result: TrainResult,
            calibration: Calibration, trained_on: int, png: Path | None, alternatives: Any, baseline_cost: Any,
            known_mistakes: Any, distillation: Distillation | None, implicit: int) -> RunReport:
    """The run's report, written to the run in the caller's transaction."""
    assert plan.training_set is not None
    status = (RunStatus(stage.value) if stage is not None
              else RunStatus.PROMOTED if promoted else RunStatus.NOT_PROMOTED)
    report = RunReport(
        run_id=run_id, promoted=promoted, reason=reason, status=status.value,
        candidate=scores.candidate.score() if scores.candidate else None,
        current=scores.current.score() if scores.current else None,
        baseline=scores.baseline.score() if scores.baseline else None, baseline_note=scores.baseline_note,
        model_id=registered.id, adapter=str(final), snapshot=plan.snapshot.digest, checks=decision.checks,
        not_judged=decision.not_judged, bootstrap_macro_f1_difference=decision.intervals,
        holdout_sources=plan.snapshot.sources("holdout"), train_sources=plan.snapshot.sources("train"),
        known_mistakes=known_mistakes, alternatives=alternatives, baseline_cost=baseline_cost,
        distillation=distillation, implicit_labels=implicit,
        training={**plan.training_set.describe(), "trained_on": trained_on, **_training_summary(result),
                  "warm_start_model": plan.warm_start.id if plan.warm_start else None},
        calibration=calibration.summary(), confusion_png=str(png) if png else None,
        duration_s=round((datetime.now(UTC) - started).total_seconds(), 1),
        shadow_window=rules.shadow_messages if stage == ModelStatus.SHADOW else None)
    session.flush()
    after = active_model(session)
    report = replace(report, routing=routing(session, active_id=after.id if after else None,
                                             pricing=Pricing.of(settings)))
    finish_run(session, run_id=run_id, reason=reason, report=report.to_json(), status=status,
               snapshot_hash=plan.snapshot.digest, candidate_id=registered.id)
    return report


def _pending_reason(stage: ModelStatus, decision: Decision, rules: GateRules) -> str:
    passed = decision.reason.removeprefix("promoted: ")
    if stage == ModelStatus.SHADOW:
        return (f"in shadow: passed the gate ({passed}); it answers the next {rules.shadow_messages} live messages "
                "beside the active router, unseen, and is promoted then unless it did worse"
                + (" and an admin approves" if rules.approval else ""))
    return f"waiting for an admin's approval: passed the gate ({passed})"


def _infer_labels(settings: Settings, sessions: SessionFactory, options: RunOptions) -> tuple[int, Distillation | None]:
    """Labels no person gave, for messages past the grace window that no one labelled: a route no agent
    corrected (store/implicit.py), then the baseline's answer, from its cache (free) or, within the
    run's budget, asked now. Both only ever train, at `SWITCHBOARD_IMPLICIT_WEIGHT`."""
    before = options.clock() - timedelta(hours=settings.implicit_after_hours)
    with transaction(sessions) as session:
        active = active_model(session)
        implicit = add_implicit_labels(session, routed_before=before, active_model_id=active.id if active else None,
                                       min_model_confidence=IMPLICIT_MIN_MODEL_CONFIDENCE)
    return implicit, _distil(settings, sessions, options, routed_before=before)


def _distil(settings: Settings, sessions: SessionFactory, options: RunOptions, *,
            routed_before: datetime) -> Distillation | None:
    """The baseline labels unlabelled routed messages: its cached answers always, new ones within the budget."""
    with sessions() as session:
        departments = take_snapshot(session).labels
    if not departments:
        return None
    paid = settings.distil_budget_usd > 0 and (baseline_configured(settings) or options.openai_client is not None)
    client = (options.openai_client or make_openai_client(settings)) if paid else None
    try:
        return distil(client, sessions, model=settings.baseline_model, departments=departments,
                      budget_usd=settings.distil_budget_usd if paid else 0.0, routed_before=routed_before,
                      backoff_s=options.baseline_backoff_s, redact=redactor_of(settings))
    except BaselineUnavailable as exc:
        log.warning("distillation stopped: %s", exc)
        return Distillation(budget_usd=settings.distil_budget_usd)


def _plan(settings: Settings, sessions: SessionFactory, run_id: int) -> Plan:
    """All examples from the base model, or, warm-starting, the new labels plus a replay sample."""
    with sessions() as session:
        snapshot = take_snapshot(session)
        current = active_model(session)
        last_run_at = last_trained_at(session)
        new_labels = count_labels_since(session, last_run_at)
        trained_until = snapshot_time_of(session, current)
        forgotten_in = models_with_forgotten_data(session)
    if not snapshot.train:
        return Plan(snapshot, current, skip_reason="no labelled training examples")
    if current is not None and last_run_at is not None and new_labels == 0:
        return Plan(snapshot, current, skip_reason="nothing new labelled since the last run")
    # A model trained on a forgotten customer's data is not built on: the next one starts from the base model.
    warm_start = (current if current is not None and current.base_model == settings.base_model
                  and current.id not in forgotten_in else None)
    training_set = select_training_set(
        snapshot.train, trained_until=trained_until if warm_start else None,
        known_labels=warm_start.labels if warm_start else None, seed=run_id)
    return Plan(snapshot, current, warm_start, training_set)


def _training_summary(result: TrainResult) -> dict[str, Any]:
    return {"steps": result.steps, "seconds": round(result.seconds, 1), "fold_loss_curve": result.curve,
            "precision": result.config.precision,
            "best_step": result.best_step,
            "examples_per_second": round(result.examples_per_second, 2), "final_loss": round(result.final_loss, 4),
            "trainable_parameters": result.trainable_parameters}


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of the holdout metrics; each department's precision and how many holdout
    messages it was given are what the bot's drift alarm compares live corrections with."""
    kept = ("macro_f1", "weighted_f1", "accuracy", "n", "ece")
    summary: dict[str, Any] = {k: metrics[k] for k in kept if k in metrics}
    confusion = metrics.get("confusion")
    if confusion:
        predicted = [sum(column) for column in zip(*confusion["matrix"], strict=True)]
        summary["per_department"] = {
            label: {"precision": round(metrics["per_class"][label]["precision"], 4), "predicted": count}
            for label, count in zip(confusion["labels"], predicted, strict=True)}
    return summary


def _finish(sessions: SessionFactory, run_id: int, status: RunStatus, reason: str,
            snapshot: Snapshot) -> RunReport:
    report = RunReport(run_id=run_id, promoted=False, reason=reason, status=status.value,
                       holdout_sources=snapshot.sources("holdout"), train_sources=snapshot.sources("train"))
    with transaction(sessions) as session:
        finish_run(session, run_id=run_id, status=status, reason=reason, report=report.to_json(),
                   snapshot_hash=snapshot.digest)
    return report
