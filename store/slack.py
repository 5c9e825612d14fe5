"""What the Slack bot keeps: event claims, customer messages with their replies, and agents' labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.examples import label_query
from store.split import text_hash
from store.tables import (
    Department,
    EarlyRemoval,
    Label,
    LabelSource,
    Prediction,
    Query,
    SlackEvent,
    SlackMessage,
    Split,
    utcnow,
)

CLAIM_EXPIRES = timedelta(minutes=2)
KEEP_FINISHED = timedelta(days=1)  # Slack retries an event for about an hour at most


def claim_event(sessions: SessionFactory, *, event_id: str, payload: dict[str, Any] | None = None) -> bool:
    """True if this process should handle the event now.

    False when it was handled already, or when another delivery claimed it moments ago and is
    still working. A claim that never finished (the process died) expires, so Slack's later
    retry is handled after all. `payload` (the event) is kept for the outbox (store/outbox.py).
    """
    now = utcnow()
    try:
        with transaction(sessions) as session:
            session.exec(delete(SlackEvent).where(  # type: ignore[call-overload]
                col(SlackEvent.event_id) == event_id, col(SlackEvent.done_at).is_(None),
                col(SlackEvent.claimed_at) < now - CLAIM_EXPIRES))
            session.add(SlackEvent(event_id=event_id, claimed_at=now, payload=payload))
    except IntegrityError:
        return False
    return True


def finish_event(sessions: SessionFactory, *, event_id: str) -> None:
    """Marks the event handled, and forgets events handled longer ago than Slack could still retry them."""
    now = utcnow()
    with transaction(sessions) as session:
        session.exec(update(SlackEvent).where(col(SlackEvent.event_id) == event_id)  # type: ignore[call-overload]
                     .values(done_at=now))
        session.exec(delete(SlackEvent).where(col(SlackEvent.done_at) < now - KEEP_FINISHED))  # type: ignore[call-overload]


def query_for_text(session: Session, *, text: str, channel: str, ts: str, user: str | None,
                   event_id: str | None) -> Query:
    """The stored query for this text, created (without a label or split) the first time it is seen."""
    digest = text_hash(text)
    query = session.exec(select(Query).where(Query.text_hash == digest)).first()
    if query is None:
        query = Query(text=text, text_hash=digest, slack_channel=channel, slack_ts=ts, slack_user=user,
                      slack_event_id=event_id)
        session.add(query)
        session.flush()
    return query


def find_message(session: Session, *, channel: str, ts: str) -> SlackMessage | None:
    """The customer message at (channel, ts), found by its own ts or by the ts of the bot's reply."""
    return session.exec(select(SlackMessage).where(
        SlackMessage.channel == channel, or_(col(SlackMessage.ts) == ts, col(SlackMessage.reply_ts) == ts))
    ).first()


def holdout_counts(session: Session) -> Counter[str]:
    """Department -> holdout examples whose label in force is that department; every department is named."""
    current = (select(func.max(Label.id).label("label_id")).where(col(Label.withdrawn_at).is_(None))
               .group_by(col(Label.query_id)).subquery())
    rows = session.exec(
        select(Department.name, func.count(col(Label.id)))
        .select_from(Label)
        .join(current, current.c.label_id == Label.id)
        .join(Query, col(Query.id) == Label.query_id)
        .join(Department, col(Department.id) == Label.department_id)
        .where(Query.split == Split.HOLDOUT)
        .group_by(col(Department.name)))
    counts = Counter({name: 0 for name in session.exec(select(Department.name))})
    counts.update(dict(rows.all()))
    return counts


def department_for_emoji(session: Session, *, emoji: str) -> Department | None:
    return session.exec(select(Department).where(Department.emoji == emoji)).first()


def withdraw_label(session: Session, *, query_id: int, author: str, department_id: int,
                   source: LabelSource) -> Label | None:
    """Marks this agent's newest standing label of that department withdrawn; the earlier one stands."""
    label = session.exec(
        select(Label).where(Label.query_id == query_id, Label.author == author, Label.department_id == department_id,
                            Label.source == source, col(Label.withdrawn_at).is_(None))
        .order_by(col(Label.id).desc())
    ).first()
    if label is not None:
        label.withdrawn_at = utcnow()
        session.add(label)
        session.flush()
    return label


def note_early_removal(session: Session, *, query_id: int, author: str, department_id: int, removed_ts: str) -> None:
    """A removal found no label to withdraw: its addition has not been handled yet."""
    session.add(EarlyRemoval(query_id=query_id, author=author, department_id=department_id, removed_ts=removed_ts))
    session.flush()


def removed_before_added(session: Session, *, query_id: int, author: str, department_id: int, added_ts: str) -> bool:
    """True when a removal of this reaction, newer than this addition (`added_ts`), was handled first;
    the note is used up either way, so a later re-adding counts."""
    notes = list(session.exec(select(EarlyRemoval).where(
        EarlyRemoval.query_id == query_id, EarlyRemoval.author == author,
        EarlyRemoval.department_id == department_id)))
    newer = any(_ts(n.removed_ts) > _ts(added_ts) for n in notes)
    for note in notes:
        session.delete(note)
    session.flush()
    return newer


def _ts(event_ts: str) -> float:
    try:
        return float(event_ts)
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class StandingLabel:
    department: str
    source: LabelSource
    author: str | None


def standing_label(session: Session, *, query_id: int) -> StandingLabel | None:
    row = session.exec(
        select(Label, Department).join(Department, col(Department.id) == Label.department_id)
        .where(Label.query_id == query_id, col(Label.withdrawn_at).is_(None))
        .order_by(col(Label.id).desc())
    ).first()
    if row is None:
        return None
    label, department = row
    return StandingLabel(department.name, LabelSource(label.source), label.author)


def prediction_of(session: Session, message: SlackMessage) -> Prediction | None:
    """The verdict the message was routed by (None for one answered before any model)."""
    return session.get(Prediction, message.prediction_id) if message.prediction_id is not None else None


def message_in_channel(session: Session, *, message_id: int, channel: str, reply_ts: str) -> SlackMessage | None:
    """The message with this id if it is in `channel`; its reply's ts recorded now if it was lost."""
    message = session.get(SlackMessage, message_id)
    if message is None or message.channel != channel:
        return None
    if message.reply_ts is None:
        message.reply_ts = reply_ts
        session.add(message)
    return message


def label_message(session: Session, message: SlackMessage, *, department: Department, source: LabelSource,
                  author: str) -> str:
    """Gives the message's query a new label in force; returns the query's text."""
    query = session.get(Query, message.query_id)
    assert query is not None
    label_query(session, query=query, department=department, source=source, author=author)
    return query.text
