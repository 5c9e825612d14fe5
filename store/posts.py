"""The post ledger: each message the bot sends is posted at most once, by key.

`begin_post` records the intent before the call (checking, in the same transaction, that the
caller still holds its event), `record_post` the message's ts after it. A later attempt that finds
the ts skips the post; one that finds only the intent knows an earlier attempt may have posted it
and asks Slack first (bot/posting.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.deliveries import hold
from store.tables import SlackEvent, SlackMessage, SlackPost


@dataclass(frozen=True)
class Holder:
    """Who is posting: the owner of a held event (checked before each post), or nobody's event
    (an audit click, acknowledged and handled in one request)."""

    owner: str
    event_id: str | None = None
    lease: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class PostState:
    ts: str | None  # posted and recorded
    intent_at: datetime | None  # an earlier attempt meant to post it: it may be in Slack already


class NotHeld(Exception):
    """The event is no longer this owner's (its lease ran out and another process took it)."""


def begin_post(sessions: SessionFactory, *, key: str, channel: str, thread_ts: str | None,
               holder: Holder, message_id: int | None = None) -> PostState:
    """The post's state; when it is new, its intent is recorded (with the customer's message it is about,
    if any). Raises NotHeld if the holder lost its event."""
    try:
        with transaction(sessions) as session:
            if holder.event_id is not None and not hold(session, event_id=holder.event_id, owner=holder.owner,
                                                        lease=holder.lease):
                raise NotHeld(holder.event_id)
            post = session.get(SlackPost, key)
            if post is not None:
                return PostState(post.ts, post.intent_at)
            session.add(SlackPost(key=key, channel=channel, thread_ts=thread_ts, message_id=message_id))
            return PostState(None, None)
    except IntegrityError:  # another event's handler recorded the same intent a moment ago
        with sessions() as session:
            post = session.get(SlackPost, key)
        assert post is not None
        return PostState(post.ts, post.intent_at)


def record_post(sessions: SessionFactory, *, key: str, ts: str, reply_to: SlackMessage | None = None) -> None:
    """The post's ts; for the routing reply (`reply_to`), the message's reply_ts in the same transaction."""
    with transaction(sessions) as session:
        values = {"ts": ts} | ({"message_id": reply_to.id} if reply_to is not None else {})
        session.exec(update(SlackPost).where(col(SlackPost.key) == key).values(**values))  # type: ignore[call-overload]
        if reply_to is not None:
            session.exec(update(SlackMessage)  # type: ignore[call-overload]
                         .where(col(SlackMessage.id) == reply_to.id).values(reply_ts=ts))
            reply_to.reply_ts = ts


def forget_intent(sessions: SessionFactory, *, key: str) -> None:
    """Slack answered that the post failed: it is certainly not there, so no later attempt need look for it."""
    with transaction(sessions) as session:
        session.exec(delete(SlackPost).where(col(SlackPost.key) == key, col(SlackPost.ts).is_(None)))  # type: ignore[call-overload]


def posted(sessions: SessionFactory, key: str) -> PostState | None:
    with sessions() as session:
        post = session.get(SlackPost, key)
        return PostState(post.ts, post.intent_at) if post is not None else None


COPY_KINDS = ("forward:", "reroute:", "handoff:")  # the posts in department and triage channels


def copies_of(session: Session, message_id: int) -> list[SlackPost]:
    """The bot's posted copies of a customer's message in department and triage channels, oldest first."""
    posts = session.exec(select(SlackPost).where(col(SlackPost.message_id) == message_id,
                                                 col(SlackPost.ts).is_not(None)).order_by(col(SlackPost.intent_at)))
    return [p for p in posts if p.key.startswith(COPY_KINDS)]


def message_of_post(session: Session, *, channel: str, ts: str) -> SlackMessage | None:
    """The customer's message that the bot's post at (channel, ts) is about: its reply or one of its copies.
    A reply's ts the message lost (a crash between the post and its record) is recorded again here."""
    post = session.exec(select(SlackPost).where(col(SlackPost.ts) == ts, SlackPost.channel == channel,
                                                col(SlackPost.message_id).is_not(None))).first()
    message = session.get(SlackMessage, post.message_id) if post is not None else None
    if post is not None and message is not None and message.reply_ts is None and post.key.startswith("reply:"):
        message.reply_ts = ts
        session.add(message)
    return message


def check_held(sessions: SessionFactory, holder: Holder) -> None:
    """Raises NotHeld unless the holder still owns its event: before a Slack call that the ledger does not
    guard (an edit, a permalink). A read, not a write: ownership changes only when another process takes
    the event over, and the heartbeat keeps the lease."""
    if holder.event_id is None:
        return
    with sessions() as session:
        event = session.get(SlackEvent, holder.event_id)
        if event is None or event.owner != holder.owner or event.done_at is not None:
            raise NotHeld(holder.event_id)
