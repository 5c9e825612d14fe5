"""What the Slack bot keeps: customer messages with their replies, and agents' labels (each written once
per Slack event, so a retried event never writes or withdraws twice). Event claims are in
store/deliveries.py, the posts' ledger in store/posts.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from store.examples import label_query
from store.posts import message_of_post
from store.retention import rehash_if_expired
from store.split import text_hash
from store.tables import (
    Department,
    EarlyRemoval,
    Label,
    LabelSource,
    Prediction,
    Query,
    SlackMessage,
    Split,
    utcnow,
)


def query_for_text(session: Session, *, text: str, channel: str, ts: str, user: str | None,
                   event_id: str | None) -> Query:
    """The stored query for this text, created (without a label or split) the first time it is seen."""
    digest = text_hash(text)
    query = session.exec(select(Query).where(Query.text_hash == digest)).first() or rehash_if_expired(session, text)
    if query is None:
        query = Query(text=text, text_hash=digest, slack_channel=channel, slack_ts=ts, slack_user=user,
                      slack_event_id=event_id)
        session.add(query)
        session.flush()
    return query


def find_message(session: Session, *, channel: str, ts: str) -> SlackMessage | None:
    """The customer message at (channel, ts), found by its own ts, by the ts of the bot's reply, or by
    the ts of the bot's copy of it in a department's (or the triage) channel."""
    return session.exec(select(SlackMessage).where(
        SlackMessage.channel == channel, or_(col(SlackMessage.ts) == ts, col(SlackMessage.reply_ts) == ts))
    ).first() or message_of_post(session, channel=channel, ts=ts)


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


def withdraw_labels(session: Session, *, query_id: int, author: str, department_id: int, source: LabelSource,
                    event_id: str | None = None) -> int:
    """Marks withdrawn every label in force that this agent gave this query for that department (one,
    unless an older release wrote it twice), recording the event that withdrew them; returns how many.
    The label in force before them stands again."""
    labels = list(session.exec(
        select(Label).where(Label.query_id == query_id, Label.author == author, Label.department_id == department_id,
                            Label.source == source, col(Label.withdrawn_at).is_(None))))
    now = utcnow()
    for label in labels:
        label.withdrawn_at, label.withdrawn_event_id = now, event_id
        session.add(label)
    session.flush()
    return len(labels)


def withdrawn_by(session: Session, event_id: str | None) -> bool:
    """Whether this event's withdrawal is done already (a retried `reaction_removed`)."""
    return event_id is not None and session.exec(
        select(Label.id).where(Label.withdrawn_event_id == event_id)).first() is not None


def label_given_by(session: Session, event_id: str | None) -> Label | None:
    """The label this event wrote, if it wrote one already (a retried `reaction_added`)."""
    return session.exec(select(Label).where(Label.event_id == event_id)).first() if event_id else None


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
    return standing_labels(session, [query_id]).get(query_id)


def standing_labels(session: Session, query_ids: Collection[int]) -> dict[int, StandingLabel]:
    """Each query's label in force (its newest not withdrawn), in one query: those with none are left out."""
    rows = session.exec(
        select(Label, Department).join(Department, col(Department.id) == Label.department_id)
        .where(col(Label.query_id).in_(list(query_ids)), col(Label.withdrawn_at).is_(None))
        .order_by(col(Label.id).desc())
    ).all() if query_ids else []
    standing: dict[int, StandingLabel] = {}
    for label, department in rows:
        standing.setdefault(label.query_id, StandingLabel(department.name, LabelSource(label.source), label.author))
    return standing


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
                  author: str, event_id: str | None = None) -> tuple[Label, bool]:
    """The message's query gets this label in force, once: (the label, whether it was written now).

    Written once per Slack event (`event_id`), and never again while the same agent's label of the
    same department is the one in force (an audit button clicked twice)."""
    if (given := label_given_by(session, event_id)) is not None:
        return given, False
    query = session.get(Query, message.query_id)
    assert query is not None and query.id is not None
    current = session.exec(select(Label).where(Label.query_id == query.id, col(Label.withdrawn_at).is_(None))
                           .order_by(col(Label.id).desc())).first()
    if current is not None and (current.author, current.department_id, current.source) == (
            author, department.id, source):
        return current, False
    return label_query(session, query=query, department=department, source=source, author=author,
                       event_id=event_id), True


def query_text(session: Session, message: SlackMessage) -> str:
    query = session.get(Query, message.query_id)
    assert query is not None
    return query.text
