"""Retention: the texts of routed messages no one labelled are deleted after `SWITCHBOARD_RETENTION_DAYS`.

What stays of such a message is what the metrics read: the department it went to, the verdict's
confidence and scores, whether it was routed or triaged, the times, what the baseline's answer cost,
and its text's hash, keyed with the store's own salt (`store_salt`), so the same words sent again are
still found as the same query (`rehash_if_expired`) while the hash cannot be looked up in a table of
common texts. The Slack user and the event as Slack sent it go too. Labelled texts are training data:
they stay until forgotten (store/forget.py).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlmodel import Session, col, select

from store.forget import events_about
from store.split import normalise, text_hash
from store.tables import Query, SlackMessage, StoreSalt, utcnow

EXPIRED = ""  # an expired query's text


def salted_hash(session: Session, text: str) -> str:
    salt = session.get(StoreSalt, 1)
    assert salt is not None, "migration 12 creates the store's salt"
    return "salted:" + hmac.new(salt.value.encode(), normalise(text).encode(), hashlib.sha256).hexdigest()


def expire_texts(session: Session, *, received_before: datetime) -> int:
    """Deletes the text of every unlabelled query older than `received_before`; returns how many."""
    stale = list(session.exec(select(Query).where(col(Query.split).is_(None), Query.received_at < received_before,
                                                  Query.text != EXPIRED)))
    messages: list[SlackMessage] = []
    for query in stale:
        query.text_hash = salted_hash(session, query.text)
        query.text, query.slack_user, query.slack_event_id = EXPIRED, None, None
        session.add(query)
        for message in session.exec(select(SlackMessage).where(SlackMessage.query_id == query.id)):
            message.user = None
            session.add(message)
            messages.append(message)
    for event in events_about(session, messages, user=None):
        if event.done_at is not None:  # one still being handled needs its text
            event.payload = None
            session.add(event)
    session.flush()
    return len(stale)


def rehash_if_expired(session: Session, text: str) -> Query | None:
    """The expired query these words were once, given its text back (someone sent them again), or None."""
    query = session.exec(select(Query).where(Query.text_hash == salted_hash(session, text))).first()
    if query is not None:
        query.text, query.text_hash, query.received_at = text, text_hash(text), utcnow()  # received again
        session.add(query)
        session.flush()
    return query
