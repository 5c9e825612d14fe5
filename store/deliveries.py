"""Slack events as durable work: claimed by one owner under a lease, renewed while it works, retried
after a failure, handed to people when the retries run out.

Slack has its acknowledgement before the work starts, so the store must remember the event (its
payload) until it is done. A delivery claims it with an owner (one process) and a lease; the owner
renews the lease while it works (bot/delivery.py's heartbeat) and re-checks it before every Slack
call, so a slow step is never taken over and a step is never done by two owners at once. A failure
releases the event with a retry time; an owner that died simply stops renewing, and its event is
due again when the lease runs out. Any process takes a due event by compare-and-set on its attempt
count, so two replicas never take one twice. Which steps of the work are done lives with the work
(messages, labels, the post ledger in store/posts.py), so a retry resumes where the last one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.tables import SlackEvent, utcnow

KEEP_FINISHED = timedelta(days=1)  # Slack retries an event for about an hour at most


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed event is tried again (10 s, 20 s, 40 s ... by default)."""

    max_attempts: int = 6
    first_delay: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int) -> timedelta:
        return min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))


class Outcome(StrEnum):
    """What a failed attempt leads to."""

    RETRY = "retry"
    HAND_OFF = "hand_off"  # retries ran out: hand the event to people
    ABANDONED = "abandoned"  # even the hand-off kept failing: an operator must look
    LOST = "lost"  # this owner no longer held the event: whoever holds it decides


@dataclass(frozen=True)
class DueEvent:
    event_id: str
    payload: dict[str, Any]
    attempts: int
    handing_off: bool


def _due(now: datetime) -> ColumnElement[bool]:
    """Unfinished, and either released for a retry that has come or held under a lease that ran out."""
    return and_(col(SlackEvent.done_at).is_(None), col(SlackEvent.gave_up_at).is_(None),
                col(SlackEvent.payload).is_not(None),
                or_(and_(col(SlackEvent.owner).is_(None), col(SlackEvent.retry_at) <= now),
                    and_(col(SlackEvent.owner).is_not(None), col(SlackEvent.lease_until) < now)))


def claim(sessions: SessionFactory, *, event_id: str, payload: dict[str, Any], owner: str,
          lease: timedelta) -> bool:
    """True if `owner` handles this delivery now: the event is new, or its last owner died.

    False when it is done, held by a live owner, or waiting for the outbox's retry (the outbox has
    it). Raises whatever the database raises: then nothing is claimed, and the caller must not
    acknowledge the delivery, so that Slack sends it again.
    """
    now = utcnow()
    try:
        with transaction(sessions) as session:
            session.add(SlackEvent(event_id=event_id, claimed_at=now, payload=payload, owner=owner,
                                   lease_until=now + lease, attempts=1))
        return True
    except IntegrityError:
        pass
    with sessions() as session:
        event = session.get(SlackEvent, event_id)
    if event is None or event.owner is None or event.done_at or event.gave_up_at:
        return False
    if event.lease_until is not None and event.lease_until >= now:
        return False
    return take(sessions, DueEvent(event_id, event.payload or payload, event.attempts, event.handing_off),
                owner=owner, lease=lease)


def due_events(sessions: SessionFactory, *, limit: int = 20) -> list[DueEvent]:
    with sessions() as session:
        rows = session.exec(select(SlackEvent).where(_due(utcnow())).order_by(col(SlackEvent.claimed_at)).limit(limit))
        return [DueEvent(e.event_id, e.payload or {}, e.attempts, e.handing_off) for e in rows]


def take(sessions: SessionFactory, due: DueEvent, *, owner: str, lease: timedelta) -> bool:
    """Compare-and-set on the attempt count: `owner` holds `due` only if nobody took it since it was read."""
    now = utcnow()
    with transaction(sessions) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(SlackEvent)
            .where(col(SlackEvent.event_id) == due.event_id, col(SlackEvent.attempts) == due.attempts, _due(now))
            .values(owner=owner, lease_until=now + lease, attempts=due.attempts + 1, retry_at=None))
        return bool(moved.rowcount)


def hold(session: Session, *, event_id: str, owner: str, lease: timedelta) -> bool:
    """Whether `owner` still holds the event, extending its lease if so: checked before each Slack call."""
    moved = session.exec(  # type: ignore[call-overload]
        update(SlackEvent)
        .where(col(SlackEvent.event_id) == event_id, col(SlackEvent.owner) == owner,
               col(SlackEvent.done_at).is_(None))
        .values(lease_until=utcnow() + lease))
    return bool(moved.rowcount)


def renew(sessions: SessionFactory, *, event_ids: list[str], owner: str, lease: timedelta) -> None:
    """The heartbeat: extends the leases `owner` still holds among `event_ids`."""
    if not event_ids:
        return
    with transaction(sessions) as session:
        session.exec(update(SlackEvent)  # type: ignore[call-overload]
                     .where(col(SlackEvent.event_id).in_(event_ids), col(SlackEvent.owner) == owner,
                            col(SlackEvent.done_at).is_(None))
                     .values(lease_until=utcnow() + lease))


def finish(sessions: SessionFactory, *, event_id: str, handed_off: bool = False) -> None:
    """Every step is done (or, `handed_off`, people have it): nothing is left to retry. The payload (the
    customer's text, an edit's old and new text) goes now: a redelivery is known by the event's id
    alone. Also forgets events finished longer ago than Slack could still redeliver them."""
    now = utcnow()
    with transaction(sessions) as session:
        values: dict[str, Any] = {"done_at": now, "owner": None, "lease_until": None, "retry_at": None,
                                  "payload": None}
        if handed_off:
            values["gave_up_at"] = now
        session.exec(update(SlackEvent)  # type: ignore[call-overload]
                     .where(col(SlackEvent.event_id) == event_id, col(SlackEvent.done_at).is_(None))
                     .values(**values))
        session.exec(delete(SlackEvent).where(col(SlackEvent.done_at) < now - KEEP_FINISHED))  # type: ignore[call-overload]


def release(sessions: SessionFactory, *, event_id: str, owner: str, error: str, policy: RetryPolicy) -> Outcome:
    """An attempt by `owner` failed: retry later, hand off once the attempts run out, or (a hand-off
    that keeps failing) give up and leave it for an operator."""
    now = utcnow()
    with transaction(sessions) as session:
        event = session.get(SlackEvent, event_id)
        if event is None or event.owner != owner or event.done_at is not None:
            return Outcome.LOST
        event.owner, event.lease_until, event.last_error = None, None, error[:300]
        if event.handing_off and event.attempts >= 2 * policy.max_attempts:
            event.gave_up_at, outcome = now, Outcome.ABANDONED
        elif not event.handing_off and event.attempts >= policy.max_attempts:
            event.handing_off, event.retry_at, outcome = True, now, Outcome.HAND_OFF
        else:
            event.retry_at, outcome = now + policy.delay(event.attempts), Outcome.RETRY
        session.add(event)
    return outcome


def event_state(sessions: SessionFactory, event_id: str) -> SlackEvent | None:
    with sessions() as session:
        return session.get(SlackEvent, event_id)
