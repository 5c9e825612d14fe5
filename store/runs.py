"""Training runs and the cross-process lock that keeps two of them from running at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.tables import Lock, ModelVersion, RunStatus, TrainingRun, utcnow

TRAINING_LOCK = "training"


def try_acquire_lock(sessions: SessionFactory, *, name: str, owner: str, ttl: timedelta) -> bool:
    """Takes the lease `name` if it is free or expired. Safe across processes: one winner."""
    now = utcnow()
    try:
        with transaction(sessions) as session:
            session.exec(delete(Lock).where(col(Lock.name) == name, col(Lock.expires_at) < now))  # type: ignore[call-overload]
            session.add(Lock(name=name, owner=owner, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def renew_lock(sessions: SessionFactory, *, name: str, owner: str, ttl: timedelta) -> bool:
    with transaction(sessions) as session:
        result = session.exec(  # type: ignore[call-overload]
            update(Lock)
            .where(col(Lock.name) == name, col(Lock.owner) == owner)
            .values(expires_at=utcnow() + ttl)
        )
        return bool(result.rowcount)


def release_lock(sessions: SessionFactory, *, name: str, owner: str) -> None:
    with transaction(sessions) as session:
        session.exec(delete(Lock).where(col(Lock.name) == name, col(Lock.owner) == owner))  # type: ignore[call-overload]


def owns_lock(session: Session, *, name: str, owner: str) -> bool:
    """Whether `owner` still holds the unexpired lease `name`, read inside the caller's transaction."""
    lock = session.get(Lock, name)
    return lock is not None and lock.owner == owner and lock.expires_at >= utcnow()


def lock_owner(session: Session, *, name: str) -> str | None:
    lock = session.get(Lock, name)
    return lock.owner if lock is not None else None


def lock_held(session: Session, *, name: str) -> bool:
    lock = session.get(Lock, name)
    return lock is not None and lock.expires_at >= utcnow()


def start_run(session: Session, *, trigger: str) -> TrainingRun:
    run = TrainingRun(trigger=trigger)
    session.add(run)
    session.flush()
    return run


def finish_run(
    session: Session,
    *,
    run_id: int,
    status: RunStatus,
    reason: str,
    report: dict[str, Any] | None = None,
    snapshot_hash: str | None = None,
    candidate_id: int | None = None,
) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    assert run is not None
    run.status = status
    run.reason = reason
    run.report = report
    run.snapshot_hash = snapshot_hash or run.snapshot_hash
    run.candidate_id = candidate_id or run.candidate_id
    run.finished_at = utcnow()
    session.add(run)
    session.flush()
    return run


def last_finished_run(session: Session) -> TrainingRun | None:
    return session.exec(
        select(TrainingRun)
        .where(TrainingRun.status != RunStatus.RUNNING)
        .order_by(col(TrainingRun.id).desc())
    ).first()


def last_trained_at(session: Session) -> datetime | None:
    """When the last run that trained a model started: labels after it are pending. A run whose candidate
    went to shadow or waits for approval trained one too."""
    run = session.exec(
        select(TrainingRun)
        .where(col(TrainingRun.status).in_([RunStatus.PROMOTED, RunStatus.NOT_PROMOTED, RunStatus.SHADOW,
                                            RunStatus.AWAITING_APPROVAL]))
        .order_by(col(TrainingRun.id).desc())
    ).first()
    return run.started_at if run else None


def snapshot_time_of(session: Session, model: ModelVersion | None) -> datetime | None:
    """When the data that trained `model` was snapshotted: labels after it are new to it."""
    if model is None:
        return None
    run = session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model.id)).first()
    return run.started_at if run else model.created_at


def fail_abandoned_runs(session: Session) -> None:
    """Runs still marked running while the caller holds the training lock were killed mid-way: say so."""
    for run in session.exec(select(TrainingRun).where(TrainingRun.status == RunStatus.RUNNING)):
        assert run.id is not None
        finish_run(session, run_id=run.id, status=RunStatus.FAILED, reason="interrupted (process ended mid-run)")
