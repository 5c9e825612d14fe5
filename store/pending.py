"""A customer's message whose own event is still pending (claimed, not done, not given up): found by the
message's place, and cancelled or given its edited text by compare-and-set.

The reactions, edits and deletions of a message can reach the bot before the message's own event is
done: its first attempt failed and waits for its retry, or it is being worked on now. They then wait
for it, or change it (bot/order.py). Both writes here compare the attempt count and require that
nobody holds the event, in one statement, so an outbox that takes the event at the same moment
either takes it first (the write changes nothing and says so) or finds it done or changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.tables import SlackEvent, utcnow

NEW_MESSAGE_SUBTYPES = (None, "file_share")  # the events that carry a new message (bot/routing.py routes them)


@dataclass(frozen=True)
class PendingMessage:
    event_id: str
    attempts: int
    held: bool  # an owner works on it now, under a lease that has not run out
    payload: dict[str, Any]


def pending_message(session: Session, *, channel: str, ts: str) -> PendingMessage | None:
    """The pending event that carries the new message at (channel, ts), if any.

    Unfinished events are few (those in hand and those waiting for a retry): they are read and
    matched here rather than by a JSON query the two stores write differently."""
    now = utcnow()
    rows = session.exec(select(SlackEvent).where(
        col(SlackEvent.done_at).is_(None), col(SlackEvent.gave_up_at).is_(None), col(SlackEvent.payload).is_not(None)))
    for event in rows:
        payload = event.payload or {}
        if (payload.get("type") == "message" and payload.get("subtype") in NEW_MESSAGE_SUBTYPES
                and payload.get("channel") == channel and payload.get("ts") == ts):
            held = event.owner is not None and event.lease_until is not None and event.lease_until >= now
            return PendingMessage(event.event_id, event.attempts, held, payload)
    return None


def _untouched(pending: PendingMessage, now: datetime) -> ColumnElement[bool]:
    """Still as read: not taken since (same attempt count), not finished, and nobody holds it."""
    return and_(col(SlackEvent.event_id) == pending.event_id, col(SlackEvent.attempts) == pending.attempts,
                col(SlackEvent.done_at).is_(None), col(SlackEvent.gave_up_at).is_(None),
                or_(col(SlackEvent.owner).is_(None), col(SlackEvent.lease_until) < now))


def cancel_pending(sessions: SessionFactory, pending: PendingMessage) -> bool:
    """The message was deleted: its event is done with nothing left to do, and its text goes. False when
    someone took the event since it was read (it must then be waited for)."""
    now = utcnow()
    with transaction(sessions) as session:
        moved = session.exec(update(SlackEvent).where(_untouched(pending, now)).values(  # type: ignore[call-overload]
            done_at=now, payload=None, owner=None, lease_until=None, retry_at=None, last_error="deleted in Slack"))
        return bool(moved.rowcount)


def edit_pending(sessions: SessionFactory, pending: PendingMessage, changes: dict[str, Any]) -> bool:
    """The message was edited: its pending event routes the new text when it runs. False when someone took
    the event since it was read."""
    with transaction(sessions) as session:
        moved = session.exec(update(SlackEvent).where(_untouched(pending, utcnow())).values(  # type: ignore[call-overload]
            payload={**pending.payload, **changes}))
        return bool(moved.rowcount)
