"""Read-only summaries of the store: `switchboard status`, the slash command and the home tab show these."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlmodel import Session, col, select

from store.costs import Pricing, cost_measures, usd
from store.examples import count_labels_since, labelled_examples, list_departments
from store.forget import models_with_forgotten_data
from store.forgotten_models import models_trained_on_forgotten
from store.registry import active_model
from store.run_report import ModelScore, RunReport, verdict_line
from store.runs import TRAINING_LOCK, last_finished_run, last_trained_at, lock_held
from store.shadow import pending_summary
from store.tables import LabelSource, ModelVersion, RunStatus, Split, TrainingRun


def status(session: Session, *, pricing: Pricing | None) -> dict[str, Any]:
    """The contract's `status` object.

    SQLite reads outside a write transaction each see the latest commit, so the last run is read
    first: a finished run's promotion is committed with it, and the active model read after it
    cannot be older. `pricing` names the configured baseline (the store cannot see the settings) and
    prices what routes; None means no baseline is configured and no cost is given.
    """
    run = last_finished_run(session)
    active = active_model(session)
    examples = labelled_examples(session)
    return {
        "active_model": None if active is None else {
            "id": active.id, "macro_f1": active.metrics.get("macro_f1"), "adapter": active.adapter_path,
            "base_model": active.base_model, "promoted_at": active.promoted_at,
            "baseline_macro_f1": _baseline_f1_for(session, active.id)},
        "examples": {"train": sum(e.split == Split.TRAIN for e in examples),
                     "holdout": sum(e.split == Split.HOLDOUT for e in examples),
                     "pending": count_labels_since(session, last_trained_at(session), by_people=True),
                     "inferred": {source.value: sum(e.source == source for e in examples)
                                  for source in (LabelSource.IMPLICIT, LabelSource.BASELINE)}},
        "training": lock_held(session, name=TRAINING_LOCK),
        "candidate": pending_summary(session),
        "last_run": None if run is None else {"run_id": run.id, "status": run.status.value,
                                              "finished_at": run.finished_at, **(run.report or {})},
        "routing": routing(session, active_id=None if active is None else active.id, pricing=pricing),
        "forgotten_data_in_active_model": active is not None and active.id in models_with_forgotten_data(session),
        "models_trained_on_forgotten_data": models_trained_on_forgotten(session),
    }


def routing(session: Session, *, active_id: int | None, pricing: Pricing | None) -> dict[str, Any]:
    """Who routes a new message now: the active model, else the baseline (cold start), else triage."""
    baseline_model = pricing.baseline_model if pricing else None
    if active_id is None and baseline_model is None:
        return {"kind": "triage", "cost_per_1000_usd": None}
    which: dict[str, Any] = {"kind": "model", "id": active_id} if active_id is not None else {
        "kind": "baseline", "model": baseline_model}
    cost, note = (None, "no prices given") if pricing is None else pricing.routing_cost(
        cost_measures(session), baseline=which["kind"] == "baseline")
    return {**which, "cost_per_1000_usd": cost, **({"cost_note": note} if cost is None else {})}


def status_lines(payload: dict[str, Any]) -> list[str]:
    model, run = payload["active_model"], payload["last_run"]
    baseline = model and model.get("baseline_macro_f1")
    return [
        "active model: " + ("none (run `switchboard train`)" if model is None else
                            f"{model['id']} (holdout macro-F1 " + f1_text(model["macro_f1"])
                            + (f", baseline {baseline:.3f})" if baseline is not None else ")")),
        "examples: train {train} ({inferred[implicit]} implicit, {inferred[baseline]} distilled), holdout {holdout}, "
        "labelled by people since last run {pending}".format(**payload["examples"]),
        f"training now: {'yes' if payload['training'] else 'no'}",
        "last run: " + ("none" if run is None
                        else f"{run['run_id']} " + verdict_line(run["status"], run.get("reason", ""))),
        "routing: " + routing_text(payload["routing"]),
        *([candidate_text(payload["candidate"])] if payload.get("candidate") else []),
        *(["the active model was trained on data since forgotten: the next run trains from the base model "
           "without it"] if payload.get("forgotten_data_in_active_model") else []),
        *([forgotten_text(payload["models_trained_on_forgotten_data"])]
          if payload.get("forgotten_data_in_active_model") and payload.get("models_trained_on_forgotten_data")
          else []),
    ]


def forgotten_text(models: list[int]) -> str:
    return ("models trained on data since forgotten: " + ", ".join(map(str, models))
            + " (their banks and snapshots no longer hold it; their LoRA weights were fitted on it)")


def f1_text(value: float | None) -> str:
    """A macro-F1 as people read it; a model promoted by hand may never have been measured."""
    return "unmeasured" if value is None else f"{value:.3f}"


def candidate_text(candidate: dict[str, Any]) -> str:
    """`candidate: model 7 in shadow, 120 of 200 live messages, 96% agreement …` or `… waiting for approval`."""
    head = f"candidate: model {candidate['id']}"
    if candidate["stage"] != "shadow":
        return f"{head} waits for an admin's approval (`/switchboard approve {candidate['id']}` or `reject`)"
    window = f" of {candidate['window']}" if candidate.get("window") else ""
    return (f"{head} in shadow, {candidate['shadow_messages']}{window} live messages, "
            f"{candidate['agreement']:.0%} agreement with the active router; of the disagreements people labelled, "
            f"the candidate alone was right on {candidate['only_candidate_right']}, the active router alone on "
            f"{candidate['only_live_right']}")


def routing_text(routing: dict[str, Any]) -> str:
    """One line: `model 3 ($0.04 per 1,000 queries)`; the baseline's says it routes until a model beats it."""
    cost = routing.get("cost_per_1000_usd")
    per_1000 = (f"{usd(cost)} per 1,000 queries" if cost is not None
                else f"cost unknown: {routing.get('cost_note') or 'not measured'}")
    if routing["kind"] == "model":
        return f"model {routing['id']} ({per_1000})"
    if routing["kind"] == "baseline":
        return f"baseline {routing['model']} ({per_1000}) until a fine-tuned model beats it"
    return "triage (no model is active and no baseline is configured)"


def _baseline_f1_for(session: Session, model_id: int | None) -> float | None:
    run = session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model_id)).first()
    baseline = RunReport.from_json(run.report).baseline if run and run.report else None
    return baseline.macro_f1 if isinstance(baseline, ModelScore) else None


def promotion_history(session: Session) -> list[dict[str, Any]]:
    """Every model that was ever active, in the order it was promoted, with its and the baseline's F1."""
    models = session.exec(select(ModelVersion).where(col(ModelVersion.promoted_at).is_not(None))
                          .order_by(col(ModelVersion.promoted_at))).all()
    return [{"model_id": m.id, "promoted_at": m.promoted_at, "macro_f1": m.metrics.get("macro_f1"),
             "baseline_macro_f1": _baseline_f1_for(session, m.id)} for m in models]


def recent_runs(session: Session, *, limit: int = 5) -> list[TrainingRun]:
    return list(session.exec(select(TrainingRun).where(TrainingRun.status != RunStatus.RUNNING)
                             .order_by(col(TrainingRun.id).desc()).limit(limit)))


def labels_per_department(session: Session) -> dict[str, Counter[str]]:
    """Department -> label source -> count of standing labels; every department appears."""
    counts: dict[str, Counter[str]] = {d.name: Counter() for d in list_departments(session)}
    for example in labelled_examples(session):
        counts.setdefault(example.label, Counter())[example.source.value] += 1
    return counts
