"""One retraining run, top to bottom: lock, snapshot, train, evaluate, gate, promote.

`switchboard train` calls `run_training`. A crash anywhere leaves the active model and every
label as they were: the adapter is published to a new folder and registered only at the end,
and promotion is one transaction.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router.adapters import AdapterMeta, discard, new_adapter_dir, publish
from router.base_model import LoadOptions, load_base_model
from router.classifier import LoraRouter, Router
from router.metrics import classification_metrics, write_confusion_png
from router.prompt import PromptFormat
from router.settings import Settings
from store.db import SessionFactory, transaction
from store.registry import active_model, promote, register_model
from store.runs import TRAINING_LOCK, finish_run, release_lock, renew_lock, start_run, try_acquire_lock
from store.tables import ModelStatus, RunStatus, TrainingRun
from trainer.config import TrainConfig
from trainer.gate import Scores, decide
from trainer.lora import TrainingFailed, train_lora
from trainer.snapshot import Snapshot, take_snapshot

LOCK_TTL = timedelta(minutes=5)


class TrainingBusy(RuntimeError):
    """Another run holds the training lock."""


@dataclass
class RunOptions:
    config: TrainConfig = field(default_factory=TrainConfig)
    trigger: str = "cli"
    progress: bool = True


def run_training(settings: Settings, sessions: SessionFactory, options: RunOptions | None = None) -> dict[str, Any]:
    """Runs one retraining under the cross-process lock and returns the run's report."""
    options = options or RunOptions()
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    if not try_acquire_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL):
        raise TrainingBusy("a training run is already in progress")
    heartbeat = _Heartbeat(sessions, owner)
    try:
        with transaction(sessions) as session:
            _fail_abandoned_runs(session)
            run_id = start_run(session, trigger=options.trigger).id
        assert run_id is not None
        return _run(settings, sessions, options, run_id)
    finally:
        heartbeat.stop()
        release_lock(sessions, name=TRAINING_LOCK, owner=owner)


def _run(settings: Settings, sessions: SessionFactory, options: RunOptions, run_id: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    with sessions() as session:
        snapshot = take_snapshot(session)
        current = active_model(session)
    if not snapshot.train:
        return _finish(sessions, run_id, RunStatus.SKIPPED, "no labelled training examples", snapshot, None)
    scratch, final = new_adapter_dir(settings.adapters_dir, name=f"run{run_id:04d}-{started:%Y%m%d%H%M%S}")
    try:
        prompt = PromptFormat(max_text_tokens=options.config.max_text_tokens)
        model, tokenizer = load_base_model(settings.base_model, cache_dir=settings.cache_dir,
                                           options=LoadOptions(precision=_load_precision(options.config)))
        result = train_lora(model=model, tokenizer=tokenizer, examples=[(e.text, e.label) for e in snapshot.train],
                            prompt=prompt, config=options.config, progress=options.progress)
        result.model.save_pretrained(str(scratch))
        snapshot.write(scratch / "snapshot.json")
        publish(scratch, final, AdapterMeta(labels=snapshot.labels, prompt=prompt, base_model=settings.base_model,
                                            hyperparameters=result.config.to_dict()))
    except TrainingFailed as exc:
        discard(scratch)
        return _finish(sessions, run_id, RunStatus.FAILED, str(exc), snapshot, None)
    except BaseException as exc:
        discard(scratch)
        with transaction(sessions) as session:
            finish_run(session, run_id=run_id, status=RunStatus.FAILED, reason=f"crashed: {exc!r}"[:500],
                       snapshot_hash=snapshot.digest)
        raise

    candidate = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer, labels=snapshot.labels,
                           prompt=prompt, name=final.name)
    scores = Scores(candidate=_evaluate(candidate, snapshot))
    if current is not None:
        scores.current = _evaluate(_load_router(settings, current.adapter_path, current.base_model,
                                                f"model {current.id}"), snapshot)
    decision = decide(scores)
    png = write_confusion_png(scores.candidate["confusion"], final.parent / f"{final.name}.confusion.png",
                              title=f"candidate {final.name} on the holdout")
    training = {"examples": len(snapshot.train), "holdout": len(snapshot.holdout), "steps": result.steps,
                "seconds": round(result.seconds, 1), "examples_per_second": round(result.examples_per_second, 2),
                "final_loss": round(result.final_loss, 4), "trainable_parameters": result.trainable_parameters}
    with transaction(sessions) as session:
        registered = register_model(session, adapter_path=str(final), base_model=settings.base_model,
                               labels=snapshot.labels, hyperparameters=result.config.to_dict(),
                               metrics=_summary(scores.candidate), parent_id=current.id if current else None)
        assert registered.id is not None
        if decision.promote:
            promote(session, model_id=registered.id, by=f"trainer ({options.trigger})")
        else:
            registered.status = ModelStatus.REJECTED
        report = {
            "model_id": registered.id, "adapter": str(final), "snapshot": snapshot.digest,
            **scores.report(), "promoted": decision.promote, "reason": decision.reason,
            "training": training, "confusion_png": str(png),
            "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        }
        run = finish_run(session, run_id=run_id, reason=decision.reason, report=report,
                         status=RunStatus.PROMOTED if decision.promote else RunStatus.NOT_PROMOTED,
                         snapshot_hash=snapshot.digest, candidate_id=registered.id)
        return {"run_id": run.id, **report}


def _evaluate(router: Router, snapshot: Snapshot) -> dict[str, Any]:
    if not snapshot.holdout:
        return {}
    out = router.classify_batch([e.text for e in snapshot.holdout])
    return classification_metrics([e.label for e in snapshot.holdout], [c.department for c in out],
                                  labels=snapshot.labels, confidences=[c.confidence for c in out])


def _load_router(settings: Settings, adapter_path: str, base_model: str, name: str) -> LoraRouter:
    from router.loading import load_router

    return load_router(settings, adapter_dir=Path(adapter_path), name=name, base_model=base_model)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("macro_f1", "weighted_f1", "accuracy", "n", "ece") if k in metrics}


def _load_precision(config: TrainConfig) -> str:
    return "4bit" if config.precision == "4bit" else "auto"


def _finish(sessions: SessionFactory, run_id: int, status: RunStatus, reason: str, snapshot: Snapshot,
            report: dict[str, Any] | None) -> dict[str, Any]:
    body = report or {"candidate": None, "current": None, "baseline": None, "promoted": False}
    body = {**body, "reason": reason}
    with transaction(sessions) as session:
        finish_run(session, run_id=run_id, status=status, reason=reason, report=body,
                   snapshot_hash=snapshot.digest)
    return {"run_id": run_id, **body}


def _fail_abandoned_runs(session: Any) -> None:
    """Runs still marked running while we hold the lock were killed mid-way: say so."""
    from sqlmodel import select

    for run in session.exec(select(TrainingRun).where(TrainingRun.status == RunStatus.RUNNING)):
        finish_run(session, run_id=run.id, status=RunStatus.FAILED, reason="interrupted (process ended mid-run)")


class _Heartbeat:
    """Renews the training lock while a run is alive, so a killed run's lock expires on its own."""

    def __init__(self, sessions: SessionFactory, owner: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(sessions, owner), daemon=True)
        self._thread.start()

    def _beat(self, sessions: SessionFactory, owner: str) -> None:
        while not self._stop.wait(LOCK_TTL.total_seconds() / 5):
            renew_lock(sessions, name=TRAINING_LOCK, owner=owner, ttl=LOCK_TTL)

    def stop(self) -> None:
        self._stop.set()
