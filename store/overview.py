"""Read-only summaries of the store: `switchboard status`, the slash command and the home tab show these."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlmodel import Session, col, select

from store.examples import count_labels_since, labelled_examples, list_departments
from store.registry import active_model
from store.runs import TRAINING_LOCK, last_finished_run, last_trained_at, lock_held
from store.tables import ModelVersion, RunStatus, Split, TrainingRun


def status(session: Session) -> dict[str, Any]:
    """The contract's `status` object.

    SQLite reads outside a write transaction each see the latest commit, so the last run is read
    first: a finished run's promotion is committed with it, and the active model read after it
    cannot be older.
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
                     "pending": count_labels_since(session, last_trained_at(session))},
        "training": lock_held(session, name=TRAINING_LOCK),
        "last_run": None if run is None else {"run_id": run.id, "status": run.status.value,
                                              "finished_at": run.finished_at, **(run.report or {})},
    }


def status_lines(payload: dict[str, Any]) -> list[str]:
    model, run = payload["active_model"], payload["last_run"]
    baseline = model and model.get("baseline_macro_f1")
    return [
        "active model: " + ("none (run `switchboard train`)" if model is None else
                            f"{model['id']} (holdout macro-F1 {model['macro_f1']:.3f}"
                            + (f", baseline {baseline:.3f})" if baseline is not None else ")")),
        "examples: train {train}, holdout {holdout}, labelled since last run {pending}".format(**payload["examples"]),
        f"training now: {'yes' if payload['training'] else 'no'}",
        "last run: " + ("none" if run is None else f"{run['run_id']} {run['status']}: {run.get('reason', '')}"),
    ]


def _baseline_f1_for(session: Session, model_id: int | None) -> float | None:
    run = session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model_id)).first()
    baseline = (run.report or {}).get("baseline") if run else None
    return baseline.get("macro_f1") if isinstance(baseline, dict) else None


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
