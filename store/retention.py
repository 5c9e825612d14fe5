"""Retention: the texts of routed messages no one labelled are deleted after `SWITCHBOARD_RETENTION_DAYS`.

What stays of such a message is what the metrics read: the department it went to, the verdict's
confidence and scores, whether it was routed or triaged, the times, what the baseline's answer cost,
and its text's hash, keyed with the store's own salt (`store_salt`), so the same words sent again are
still found as the same query (`rehash_if_expired`) while the hash cannot be looked up in a table of
common texts. The event as Slack sent it goes too, and the Slack user is kept only salted the same
way (store/salted.py), so `forget --user` still finds the message and the bot's posts about it.

Texts a person labelled are training data: they stay until forgotten (store/forget.py). Every other
text expires, labelled or not: an implicit label (a route no one corrected) or a distilled one (the
baseline's) is inferred, not a person's judgement, and goes with its text: a label row of an empty
text would train on nothing. The text's split stays as it was (such labels only ever train), so the
same words sent again never reach the holdout a model trained on them could be judged by.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlmodel import Session, col, select

from store.forget import events_about
from store.salted import user_hash
from store.split import normalise, text_hash
from store.tables import Label, LabelSource, Query, SlackMessage, StoreSalt, utcnow

EXPIRED = ""  # an expired query's text


def salted_hash(session: Session, text: str) -> str:
    salt = session.get(StoreSalt, 1)
    assert salt is not None, "migration 12 creates the store's salt"
    return "salted:" + hmac.new(salt.value.encode(), normalise(text).encode(), hashlib.sha256).hexdigest()


def expire_texts(session: Session, *, received_before: datetime) -> int:
    """Deletes the text of every query no person labelled older than `received_before`, and its inferred
    labels; returns how many."""
    people = [source for source in LabelSource if source.by_a_person]
    kept = select(Label.query_id).where(col(Label.source).in_(people), col(Label.withdrawn_at).is_(None))
    stale = list(session.exec(select(Query).where(Query.received_at < received_before, Query.text != EXPIRED,
                                                  col(Query.id).not_in(kept))))
    messages: list[SlackMessage] = []
    for query in stale:
        query.text_hash = salted_hash(session, query.text)
        query.text, query.slack_user, query.slack_event_id = EXPIRED, None, None
        session.add(query)
        _delete_labels(session, query)
        for message in session.exec(select(SlackMessage).where(SlackMessage.query_id == query.id)):
            if message.user is not None:
                message.user_hash, message.user = user_hash(session, message.user), None
            session.add(message)
            messages.append(message)
    for event in events_about(session, messages, user=None):
        if event.done_at is not None:  # one still being handled needs its text
            event.payload = None
            session.add(event)
    session.flush()
    return len(stale)


def _delete_labels(session: Session, query: Query) -> None:
    """The expired text's labels: inferred ones, and people's that were withdrawn (they point at each other,
    so the links go first)."""
    labels = list(session.exec(select(Label).where(Label.query_id == query.id)))
    for label in labels:
        label.superseded_by = None
        session.add(label)
    session.flush()
    for label in labels:
        session.delete(label)


def rehash_if_expired(session: Session, text: str) -> Query | None:
    """The expired query these words were once, given its text back (someone sent them again), or None."""
    query = session.exec(select(Query).where(Query.text_hash == salted_hash(session, text))).first()
    if query is not None:
        query.text, query.text_hash, query.received_at = text, text_hash(text), utcnow()  # received again
        session.add(query)
        session.flush()
    return query
