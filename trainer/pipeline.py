"""One retraining run, top to bottom: lock, infer labels (implicit, distilled), plan, train, score, register and
promote, report. Each stage returns a typed record (`Plan`, `Trained`, `Scored`, `Registered`) and the report
is built from them.

`switchboard train`, the slash command and the scheduler all call `run_training` with the `TrainerDeps`
that `cli/compose.py` builds. A crash anywhere leaves the active model and every label as they were: the
adapter is published to a new folder and registered only at the end, and promotion is one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from classifier.baseline_client import BaselineUnavailable
from classifier.routing.adapters import AdapterMeta, discard, new_adapter_dir, publish, sweep_scratch
from classifier.routing.metrics import write_confusion_png
from core.errors import SwitchboardError
from store.db import transaction
from store.examples import count_labels_since
from store.forget import models_with_forgotten_data
from store.implicit import add_implicit_labels
from store.overview import routing
from store.registry import ActiveModelMoved, active_model, promote, register_model
from store.run_report import BaselineCost, Distillation, KnownMistakes, RunReport
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
from trainer.alternatives import AlternativeSet, score_alternatives
from trainer.baseline import distil
from trainer.candidate import Trained, TrainingJob
from trainer.config import TrainConfig, hardware_refusal
from trainer.deps import TrainerDeps
from trainer.evaluation import score_everyone
from trainer.gate import Decision, GateRules, Scores, decide
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


@dataclass(frozen=True)
class RunOptions:
    """What differs from one run to the next; everything else is in `TrainerDeps`."""

    config: TrainConfig = field(default_factory=TrainConfig)
    trigger: str = "cli"
    progress: bool = True
    alternatives: AlternativeSet = AlternativeSet.FAST  # what `switchboard train` asks for; schedules take the fast set


@dataclass(frozen=True)
class Plan:
    """What a run works on: the data snapshot, the model it must beat, and what it trains on."""

    snapshot: Snapshot
    current: ModelVersion | None
    warm_start: ModelVersion | None = None  # the active model, when its adapter fits this base model
    training_set: TrainingSet | None = None
    skip_reason: str | None = None


@dataclass(frozen=True)
class Scored:
    """Everyone on the holdout, the gate's decision, and the alternatives beside them."""

    scores: Scores
    decision: Decision
    baseline_cost: BaselineCost | None
    known_mistakes: KnownMistakes | None
    alternatives: dict[str, Any]
    confusion_png: Path | None


@dataclass(frozen=True)
class Registered:
    """The candidate in the registry, and where it went: promoted, to shadow or approval (`stage`), or refused."""

    model: ModelVersion
    promoted: bool
    reason: str
    stage: ModelStatus | None


def run_training(deps: TrainerDeps, options: RunOptions | None = None) -> RunReport:
    """Runs one retraining under the cross-process lock and returns the run's report."""
    options = options or RunOptions()
    sessions, owner = deps.sessions, owner_name()
    if not (try_acquire_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL)
            or (release_if_holder_died(sessions)
                and try_acquire_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL))):
        raise TrainingBusy("a training run is already in progress")
    heartbeat = Heartbeat(sessions, owner, ttl=LOCK_TTL)
    try:
        for leftover in sweep_scratch(deps.config.adapters_dir):
            log.warning("removed %s, a scratch folder left by a run that crashed", leftover)
        with transaction(sessions) as session:
            fail_abandoned_runs(session)
            run_id = start_run(session, trigger=options.trigger).id
        assert run_id is not None
        return _run(deps, options, run_id, heartbeat)
    finally:
        heartbeat.stop()
        release_lock(sessions, name=TRAINING_LOCK, owner=owner)


def _run(deps: TrainerDeps, options: RunOptions, run_id: int, heartbeat: Heartbeat) -> RunReport:
    started = datetime.now(UTC)
    refused = hardware_refusal(options.config.precision)
    if refused:
        with deps.sessions() as session:
            return _finish(deps, run_id, RunStatus.FAILED, refused, take_snapshot(session))
    implicit, distillation = _infer_labels(deps)
    plan = _plan(deps, run_id)
    if plan.skip_reason or plan.training_set is None:
        return _finish(deps, run_id, RunStatus.SKIPPED, plan.skip_reason or "nothing to train", plan.snapshot)
    scratch, final = new_adapter_dir(deps.config.adapters_dir, name=f"run{run_id:04d}-{started:%Y%m%d%H%M%S}")
    try:
        trained = _train(deps, options, plan, scratch, final)
        heartbeat.check()
    except (TrainingFailed, LeaseLost) as exc:
        discard(scratch)
        return _finish(deps, run_id, RunStatus.FAILED, str(exc), plan.snapshot)
    except BaseException as exc:
        discard(scratch)
        _finish(deps, run_id, RunStatus.FAILED, f"crashed: {exc!r}"[:500], plan.snapshot)
        raise
    scored = _score(deps, options, plan, trained, final)
    try:
        with transaction(deps.sessions) as session:
            if not owns_lock(session, name=TRAINING_LOCK, owner=heartbeat.owner):
                raise LeaseLost("lost the training lock before registering the candidate (another run may "
                                "have taken it): nothing registered or promoted")
            registered = _register(deps, session, options, plan, trained, scored, final)
            report = _report(deps.config.rules, run_id, plan, trained, scored, registered, started,
                             implicit=implicit, distillation=distillation)
            session.flush()
            after = active_model(session)
            report = replace(report, routing=routing(session, active_id=after.id if after else None,
                                                     pricing=deps.config.pricing))
            finish_run(session, run_id=run_id, reason=report.reason, report=report.to_json(),
                       status=RunStatus(report.status), snapshot_hash=plan.snapshot.digest,
                       candidate_id=registered.model.id)
            return report
    except LeaseLost as exc:
        discard(final)
        return _finish(deps, run_id, RunStatus.FAILED, str(exc), plan.snapshot)


def _train(deps: TrainerDeps, options: RunOptions, plan: Plan, scratch: Path, final: Path) -> Trained:
    """The candidate trained into `scratch`, then published to `final` with its `switchboard.json`."""
    assert plan.training_set is not None
    config = deps.config
    trained = deps.train_candidate(TrainingJob(
        base_model=config.base_model, cache_dir=config.cache_dir, snapshot=plan.snapshot,
        training_set=plan.training_set, warm_start=plan.warm_start, config=options.config, scratch=scratch,
        name=final.name, inferred_weight=config.implicit_weight, progress=options.progress))
    publish(scratch, final, AdapterMeta(labels=plan.snapshot.labels, prompt=trained.router.prompt,
                                        base_model=config.base_model, hyperparameters=trained.result.config.to_dict(),
                                        calibration=trained.calibration))
    return trained


def _score(deps: TrainerDeps, options: RunOptions, plan: Plan, trained: Trained, final: Path) -> Scored:
    """The candidate, the active model and the baseline on the same holdout, the gate's decision on them,
    and the cheap alternatives trained on the same examples, for the report."""
    snapshot = plan.snapshot
    scores, baseline_cost, known_mistakes = score_everyone(
        deps.config, deps.sessions, snapshot, candidate=trained.router, candidate_model=trained.result.model,
        tokenizer=trained.router.tokenizer, current=plan.current, baseline_client=deps.baseline,
        backoff_s=deps.baseline_backoff_s, candidate_dir=final)
    alternatives = score_alternatives([(e.text, e.label) for e in snapshot.train],
                                      [(e.text, e.label) for e in snapshot.holdout], snapshot.labels,
                                      which=options.alternatives)
    png = (write_confusion_png(scores.candidate.metrics["confusion"], final.parent / f"{final.name}.confusion.png",
                               title=f"candidate {final.name} on the holdout") if scores.candidate else None)
    return Scored(scores, decide(scores, deps.config.rules), baseline_cost, known_mistakes, alternatives, png)


def _register(deps: TrainerDeps, session: Any, options: RunOptions, plan: Plan, trained: Trained, scored: Scored,
              final: Path) -> Registered:
    """The candidate registered, then promoted (a compare-and-set: an admin's rollback or promotion during the
    run stands), sent to shadow or approval, or refused, in the caller's transaction."""
    rules, decision = deps.config.rules, scored.decision
    model = register_model(session, adapter_path=str(final), base_model=deps.config.base_model,
                           labels=plan.snapshot.labels, hyperparameters=trained.result.config.to_dict(),
                           metrics=_summary(scored.scores.candidate.metrics if scored.scores.candidate else {}),
                           parent_id=plan.current.id if plan.current else None)
    assert model.id is not None
    if not decision.promote:
        model.status = ModelStatus.REJECTED
        return Registered(model, False, decision.reason, None)
    stage = first_stage(rules, live_rival=scored.scores.routing is not None)
    if stage is not None:
        start_pending(session, model_id=model.id, stage=stage)
        return Registered(model, False, _pending_reason(stage, decision, rules), stage)
    try:
        with session.begin_nested():
            promote(session, model_id=model.id, by=f"trainer ({options.trigger})",
                    if_active_is=plan.current.id if plan.current else None)
    except ActiveModelMoved as exc:
        model.status = ModelStatus.REJECTED
        return Registered(model, False, f"{decision.reason}; not promoted: {exc}", None)
    return Registered(model, True, decision.reason, None)


def _report(rules: GateRules, run_id: int, plan: Plan, trained: Trained, scored: Scored, registered: Registered,
            started: datetime, *, implicit: int, distillation: Distillation | None) -> RunReport:
    assert plan.training_set is not None
    scores, decision, stage = scored.scores, scored.decision, registered.stage
    status = (RunStatus(stage.value) if stage is not None
              else RunStatus.PROMOTED if registered.promoted else RunStatus.NOT_PROMOTED)
    return RunReport(
        run_id=run_id, promoted=registered.promoted, reason=registered.reason, status=status.value,
        candidate=scores.candidate.score() if scores.candidate else None,
        current=scores.current.score() if scores.current else None,
        baseline=scores.baseline.score() if scores.baseline else None, baseline_note=scores.baseline_note,
        model_id=registered.model.id, adapter=registered.model.adapter_path, snapshot=plan.snapshot.digest,
        checks=decision.checks, not_judged=decision.not_judged, bootstrap_macro_f1_difference=decision.intervals,
        holdout_sources=plan.snapshot.sources("holdout"), train_sources=plan.snapshot.sources("train"),
        known_mistakes=scored.known_mistakes, alternatives=scored.alternatives, baseline_cost=scored.baseline_cost,
        distillation=distillation, implicit_labels=implicit,
        training={**plan.training_set.describe(), "trained_on": trained.trained_on,
                  **_training_summary(trained.result),
                  "warm_start_model": plan.warm_start.id if plan.warm_start else None},
        calibration=trained.calibration.summary(),
        confusion_png=str(scored.confusion_png) if scored.confusion_png else None,
        duration_s=round((datetime.now(UTC) - started).total_seconds(), 1),
        shadow_window=rules.shadow_messages if stage == ModelStatus.SHADOW else None)


def _pending_reason(stage: ModelStatus, decision: Decision, rules: GateRules) -> str:
    passed = decision.reason.removeprefix("promoted: ")
    if stage == ModelStatus.SHADOW:
        return (f"in shadow: passed the gate ({passed}); it answers the next {rules.shadow_messages} live messages "
                "beside the active router, unseen, and is promoted then unless it did worse"
                + (" and an admin approves" if rules.approval else ""))
    return f"waiting for an admin's approval: passed the gate ({passed})"


def _infer_labels(deps: TrainerDeps) -> tuple[int, Distillation | None]:
    """Labels no person gave, for messages past the grace window that no one labelled: a route no agent
    corrected (store/implicit.py), then the baseline's answer, from its cache (free) or, within the
    run's budget, asked now. Both only ever train, at `SWITCHBOARD_IMPLICIT_WEIGHT`."""
    before = deps.clock() - timedelta(hours=deps.config.implicit_after_hours)
    with transaction(deps.sessions) as session:
        active = active_model(session)
        implicit = add_implicit_labels(session, routed_before=before, active_model_id=active.id if active else None,
                                       min_model_confidence=IMPLICIT_MIN_MODEL_CONFIDENCE)
    return implicit, _distil(deps, routed_before=before)


def _distil(deps: TrainerDeps, *, routed_before: datetime) -> Distillation | None:
    """The baseline labels unlabelled routed messages: its cached answers always, new ones within the budget."""
    with deps.sessions() as session:
        departments = take_snapshot(session).labels
    if not departments:
        return None
    config = deps.config
    client = deps.baseline if config.distil_budget_usd > 0 else None
    try:
        return distil(client, deps.sessions, model=config.baseline_model, departments=departments,
                      budget_usd=config.distil_budget_usd if client else 0.0, routed_before=routed_before,
                      backoff_s=deps.baseline_backoff_s, redact=config.redact)
    except BaselineUnavailable as exc:
        log.warning("distillation stopped: %s", exc)
        return Distillation(budget_usd=config.distil_budget_usd)


def _plan(deps: TrainerDeps, run_id: int) -> Plan:
    """All examples from the base model, or, warm-starting, the new labels plus a replay sample."""
    with deps.sessions() as session:
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
    warm_start = (current if current is not None and current.base_model == deps.config.base_model
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


def _finish(deps: TrainerDeps, run_id: int, status: RunStatus, reason: str, snapshot: Snapshot) -> RunReport:
    report = RunReport(run_id=run_id, promoted=False, reason=reason, status=status.value,
                       holdout_sources=snapshot.sources("holdout"), train_sources=snapshot.sources("train"))
    with transaction(deps.sessions) as session:
        finish_run(session, run_id=run_id, status=status, reason=reason, report=report.to_json(),
                   snapshot_hash=snapshot.digest)
    return report
