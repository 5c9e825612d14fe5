"""Runs on a copy of the loop's store, never on the store itself: sabotaged candidates and lever ablations.

A sabotaged candidate is trained on corrupted training labels and judged by the same gate on the
loop's real holdout (its labels are left true). The gate must refuse each one:

- `shuffled_labels`: every training label shuffled across departments;
- `two_departments_swapped`: the two largest departments' training labels swapped;
- `biased_baseline`: the baseline is systematically wrong on one department (it answers another)
  and agents correct only half of its mistakes: half of that department's training labels move
  to the wrong one.

An ablation retrains from the base model on the store as it is, with one lever off, beside a retrain
with every lever on: no implicit labels, no distilled labels, no asked answers (their labels
dropped), no best checkpoint (the last step's adapter kept). Each returns the candidate's accuracy
on the bench's test queries.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bench.loop_world import EPOCH, open_store
from store.db import SessionFactory, transaction
from store.examples import get_department, label_query, labelled_examples
from store.tables import Label, LabelSource, Query, Registry, Split
from trainer.pipeline import run_training

SABOTAGE = ("shuffled_labels", "two_departments_swapped", "biased_baseline")
LEVERS = ("all_on", "no_implicit", "no_distillation", "no_asks", "no_best_checkpoint")


def store_copy(home: Path, kind: str) -> tuple[Path, SessionFactory]:
    copy = Path(tempfile.mkdtemp(prefix=f"switchboard-loop-{kind}-"))
    shutil.copytree(home, copy, dirs_exist_ok=True, symlinks=True)
    return copy, open_store(copy)


def sabotaged_run(world: Any, home: Path, kind: str, rng: random.Random) -> dict[str, Any]:
    copy, sessions = store_copy(home, kind)
    began = time.perf_counter()
    with transaction(sessions) as session:
        train = labelled_examples(session, split=Split.TRAIN)
        labels = corrupted([e.label for e in train], kind, rng)
        changed = 0
        for example, label in zip(train, labels, strict=True):
            if label == example.label:
                continue
            query, department = session.get(Query, example.query_id), get_department(session, name=label)
            assert query is not None and department is not None
            label_query(session, query=query, department=department, source=LabelSource.ADMIN, author="saboteur")
            changed += 1
    settings = world.settings.model_copy(update={"home": copy})
    report = run_training(world.trainer_deps(settings, sessions), world.options)
    candidate = world.candidate_accuracy(settings, report)
    shutil.rmtree(copy, ignore_errors=True)
    routing = report.current or report.baseline
    return {"promoted": report.promoted, "reason": report.reason, "training_labels_changed": changed,
            "candidate_macro_f1": report.candidate.macro_f1 if report.candidate else None,
            "routing_model_macro_f1": routing.macro_f1 if routing else None,
            "candidate_test_accuracy": candidate, "wall_seconds": round(time.perf_counter() - began, 1)}


def corrupted(labels: list[str], kind: str, rng: random.Random) -> list[str]:
    if kind == "shuffled_labels":
        shuffled = list(labels)
        rng.shuffle(shuffled)
        return shuffled
    counts = Counter(labels).most_common()
    if kind == "two_departments_swapped":
        a, b = counts[0][0], counts[1][0]
        return [b if label == a else a if label == b else label for label in labels]
    if kind == "biased_baseline":
        wrong_on, answers = counts[0][0], counts[-1][0]
        return [answers if label == wrong_on and rng.random() < 0.5 else label for label in labels]
    raise ValueError(f"unknown sabotage {kind!r}")


def ablation_run(world: Any, home: Path, lever: str) -> dict[str, Any]:
    """A retrain from the base model on the store's labels, with `lever` off ("all_on": none off)."""
    copy, sessions = store_copy(home, lever)
    began = time.perf_counter()
    dropped = {"no_implicit": LabelSource.IMPLICIT, "no_distillation": LabelSource.BASELINE,
               "no_asks": LabelSource.ASKED}.get(lever)
    with transaction(sessions) as session:
        if dropped is not None:
            for label in session.exec(select(Label).where(Label.source == dropped, col(Label.withdrawn_at).is_(None))):
                label.withdrawn_at = datetime.now(UTC)
                session.add(label)
        pointer = session.get(Registry, 1)
        if pointer is not None:  # from the base model, so every arm trains on everything it keeps
            pointer.active_model_id = None
            session.add(pointer)
    options = world.options
    if lever == "no_best_checkpoint":
        options = replace(options, config=replace(options.config, best_on_fold=False))
    settings = world.settings.model_copy(update={"home": copy})
    # clock=EPOCH: no arm infers new labels, so that they differ only by the lever
    report = run_training(world.trainer_deps(settings, sessions, clock=lambda: EPOCH), options)
    result = {"candidate_test_accuracy": world.candidate_accuracy(settings, report),
              "candidate_macro_f1": report.candidate.macro_f1 if report.candidate else None,
              "train_sources": report.train_sources, "training": {k: (report.training or {}).get(k) for k in (
                  "examples", "steps", "best_step", "seconds")},
              "wall_seconds": round(time.perf_counter() - began, 1)}
    shutil.rmtree(copy, ignore_errors=True)
    return result


CONFIDENCE_BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.01)


def inferred_label_quality(sessions: SessionFactory, truth: dict[str, str]) -> dict[str, Any]:
    """How often the labels no person gave were right, by who gave them; and, for the fine-tuned models'
    routes no one labelled, how often they were right at each confidence: what the implicit labels'
    confidence floor for a model's own routes keeps out."""
    from store.tables import Department, Prediction, SlackMessage

    with sessions() as session:
        names = {d.id: d.name for d in session.exec(select(Department))}
        labels = session.exec(select(Label, Query).join(Query, col(Query.id) == Label.query_id).where(
            col(Label.source).in_([LabelSource.IMPLICIT, LabelSource.BASELINE]))).all()
        routes = session.exec(select(SlackMessage, Prediction, Query)
                              .join(Prediction, col(Prediction.id) == SlackMessage.prediction_id)
                              .join(Query, col(Query.id) == SlackMessage.query_id)
                              .where(col(SlackMessage.routed_to).is_not(None),
                                     col(Prediction.model_version_id).is_not(None))).all()
    by_author: dict[str, Counter[str]] = {}
    for label, query in labels:
        who = f"{label.source.value}: {'baseline' if (label.author or '').startswith('baseline') else 'a model'}"
        tally = by_author.setdefault(who, Counter())
        tally["right" if names[label.department_id] == truth.get(query.text) else "wrong"] += 1
        tally["superseded_later"] += label.superseded_by is not None
    bins: dict[str, Counter[str]] = {}
    for message, prediction, query in routes:
        low = max(b for b in CONFIDENCE_BINS if b <= prediction.confidence)
        tally = bins.setdefault(f">={low:.2f}", Counter())
        tally["right" if message.routed_to == truth.get(query.text) else "wrong"] += 1
    return {"inferred_labels": {k: {**v, "accuracy": round(v["right"] / max(1, v["right"] + v["wrong"]), 4)}
                                for k, v in by_author.items()},
            "model_routes_by_confidence": {k: {**v, "accuracy": round(v["right"] / max(1, v["right"] + v["wrong"]), 4)}
                                           for k, v in sorted(bins.items())}}
