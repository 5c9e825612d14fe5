"""Admins' retrain requests: the bot records them, the trainer service takes and answers them.

The bot never trains. `/switchboard retrain` writes a row here; whichever trainer service polls
first takes it with a compare-and-set on `started_at`, so two trainers never run one request. A
request that was taken by a trainer that then died (its run no longer holds the training lock
a while after it started) is offered again, so an admin's request is never silently lost.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.runs import TRAINING_LOCK, lock_held
from store.tables import Lock, TrainingRequest, utcnow

TRAINER_LEASE_PREFIX = "trainer-service:"  # one lease per running trainer service, renewed as it polls
ORPHANED_AFTER = timedelta(minutes=2)  # a taken request whose run holds no lock this long is offered again


def request_training(sessions: SessionFactory, *, by: str, channel: str | None) -> tuple[TrainingRequest, bool]:
    """The open request (created now, or the one already waiting) and whether this call created it.

    At most one request is open: `open_slot` is unique, so of two admins asking at the same instant
    (on two replicas) one insert fails, and that call answers with the other's request."""
    with sessions() as session:
        waiting = open_request(session)
    if waiting is not None:
        return waiting, False
    request = TrainingRequest(requested_by=by, channel=channel, open_slot=1)
    try:
        with transaction(sessions) as session:
            session.add(request)
    except IntegrityError:
        with sessions() as session:
            waiting = open_request(session)
        if waiting is None:  # answered in the meantime: ask again
            return request_training(sessions, by=by, channel=channel)
        return waiting, False
    return request, True


def open_request(session: Session) -> TrainingRequest | None:
    return session.exec(
        select(TrainingRequest).where(col(TrainingRequest.finished_at).is_(None)).order_by(col(TrainingRequest.id))
    ).first()


def take_request(sessions: SessionFactory, *, worker: str) -> TrainingRequest | None:
    """Marks the oldest unanswered request as this worker's and returns it; None when there is none
    or another worker took it first."""
    now = utcnow()
    with transaction(sessions) as session:
        request = open_request(session)
        if request is None:
            return None
        taken_by_a_live_run = request.started_at is not None and (
            now - request.started_at < ORPHANED_AFTER or lock_held(session, name=TRAINING_LOCK))
        if taken_by_a_live_run:
            return None
        taken = session.exec(  # type: ignore[call-overload]
            update(TrainingRequest)
            .where(col(TrainingRequest.id) == request.id, _same_start(request))
            .values(started_at=now, started_by=worker)
        )
        if not taken.rowcount:
            return None
    request.started_at, request.started_by = now, worker
    return request


def _same_start(request: TrainingRequest):  # type: ignore[no-untyped-def]
    column = col(TrainingRequest.started_at)
    return column.is_(None) if request.started_at is None else column == request.started_at


def answer_request(sessions: SessionFactory, request_id: int, *, run_id: int | None, outcome: str) -> None:
    with transaction(sessions) as session:
        session.exec(  # type: ignore[call-overload]
            update(TrainingRequest)
            .where(col(TrainingRequest.id) == request_id, col(TrainingRequest.finished_at).is_(None))
            .values(finished_at=utcnow(), run_id=run_id, outcome=outcome[:4000], open_slot=None)
        )


def release_request(sessions: SessionFactory, request_id: int, *, worker: str) -> None:
    """Gives a taken request back (its run could not start), for the next poll to take again."""
    with transaction(sessions) as session:
        session.exec(  # type: ignore[call-overload]
            update(TrainingRequest)
            .where(col(TrainingRequest.id) == request_id, col(TrainingRequest.started_by) == worker,
                   col(TrainingRequest.finished_at).is_(None))
            .values(started_at=None, started_by=None)
        )


def note_trainer_alive(sessions: SessionFactory, *, worker: str, ttl: timedelta) -> None:
    """Renews this trainer service's lease, which the bot reads to tell an admin whether anyone will
    take their request; leases of services that died are cleared on the way."""
    now = utcnow()
    with transaction(sessions) as session:
        session.exec(delete(Lock).where(col(Lock.name).startswith(TRAINER_LEASE_PREFIX),  # type: ignore[call-overload]
                                        col(Lock.expires_at) < now))
        session.merge(Lock(name=TRAINER_LEASE_PREFIX + worker, owner=worker, expires_at=now + ttl))


def note_trainer_stopped(sessions: SessionFactory, *, worker: str) -> None:
    with transaction(sessions) as session:
        session.exec(delete(Lock).where(col(Lock.name) == TRAINER_LEASE_PREFIX + worker))  # type: ignore[call-overload]


def trainer_running(session: Session) -> bool:
    """Whether a trainer service is alive to take requests."""
    lease = select(Lock).where(col(Lock.name).startswith(TRAINER_LEASE_PREFIX), col(Lock.expires_at) >= utcnow())
    return session.exec(lease).first() is not None
