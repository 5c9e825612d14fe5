"""The outbox: Slack events whose handling failed after Slack had its acknowledgement.

Bolt acknowledges an event before its listener runs, so Slack never retries one whose reply then
failed (a Slack 5xx, a busy database) or whose process died mid-way. The claim row
(`slack_events`) therefore keeps the event itself; a failure schedules a retry with backoff, and
a claim left unfinished by a dead process becomes due once it expires. The bot's outbox worker
takes due events one at a time with a compare-and-set, so two replicas never handle one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from store.db import SessionFactory, transaction
from store.slack import CLAIM_EXPIRES
from store.tables import SlackEvent, utcnow

MAX_ATTEMPTS = 6
FIRST_DELAY = timedelta(seconds=10)  # then 20 s, 40 s, ... about 10 minutes in all


@dataclass(frozen=True)
class DueEvent:
    event_id: str
    payload: dict[str, Any]
    attempts: int
    claimed_at: datetime
    retry_at: datetime | None


def defer_event(sessions: SessionFactory, *, event_id: str, error: str) -> bool:
    """Handling failed: try again later (the claim stays, so Slack's own retries are ignored).
    False when the event has now failed `MAX_ATTEMPTS` times and is given up."""
    now = utcnow()
    with transaction(sessions) as session:
        event = session.get(SlackEvent, event_id)
        if event is None:
            return False
        event.attempts += 1
        event.last_error = error[:300]
        if event.attempts >= MAX_ATTEMPTS or event.payload is None:
            event.gave_up_at, event.retry_at = now, None
        else:
            event.retry_at = now + FIRST_DELAY * 2 ** (event.attempts - 1)
        session.add(event)
        return event.gave_up_at is None


def due_events(sessions: SessionFactory, *, limit: int = 20) -> list[DueEvent]:
    """Unfinished events whose retry time has come, or whose claim expired without a failure
    recorded (the process handling them died)."""
    now = utcnow()
    with sessions() as session:
        rows = session.exec(
            select(SlackEvent).where(
                col(SlackEvent.done_at).is_(None), col(SlackEvent.gave_up_at).is_(None),
                col(SlackEvent.payload).is_not(None),
                or_(col(SlackEvent.retry_at) <= now,
                    and_(col(SlackEvent.retry_at).is_(None), col(SlackEvent.claimed_at) < now - CLAIM_EXPIRES)))
            .order_by(col(SlackEvent.claimed_at)).limit(limit))
        return [DueEvent(e.event_id, e.payload or {}, e.attempts, e.claimed_at, e.retry_at) for e in rows]


def take(sessions: SessionFactory, due: DueEvent) -> bool:
    """Compare-and-set: this process handles `due` only if nobody took or finished it since it was read.
    Taking it pushes its retry time a claim's length ahead, so a taker that dies is retried again."""
    with transaction(sessions) as session:
        same_retry = (col(SlackEvent.retry_at).is_(None) if due.retry_at is None
                      else col(SlackEvent.retry_at) == due.retry_at)
        moved = session.exec(  # type: ignore[call-overload]
            update(SlackEvent)
            .where(col(SlackEvent.event_id) == due.event_id, col(SlackEvent.claimed_at) == due.claimed_at,
                   col(SlackEvent.done_at).is_(None), same_retry)
            .values(retry_at=utcnow() + CLAIM_EXPIRES))
        return bool(moved.rowcount)
