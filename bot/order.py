"""The order between a message's events: what a reaction, an edit or a deletion does when the message's
own event is still pending (its first attempt failed and waits for a retry, or it is in hand now).

- a reaction waits: it is released for a retry (`MessagePending`), and applies once the message is
  stored; otherwise the retry would route the message elsewhere and the agent's choice be lost;
- a deletion cancels the pending event, unless someone works on it right now: then it waits, and
  forgets what that attempt stored once it is done;
- an edit gives the pending event its new text, so the retry routes what the customer wrote last;
  while someone works on the event it waits too.

Waiting is bounded by the retry policy (bot/delivery.py): an event still waiting when its attempts
run out is handed off like any other.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from store.db import SessionFactory
from store.pending import cancel_pending, edit_pending, pending_message


class MessagePending(Exception):
    """This event must wait for the message's own event: released for a retry, with no apology."""

    def __init__(self, channel: str, ts: str) -> None:
        super().__init__(f"the event of message {channel}/{ts} is still pending")


def wait_for_message(session: Session, *, channel: str, ts: str) -> None:
    """Raises MessagePending when the message at (channel, ts), not stored, has its own event pending."""
    if pending_message(session, channel=channel, ts=ts) is not None:
        raise MessagePending(channel, ts)


def cancel_if_pending(sessions: SessionFactory, *, channel: str, ts: str) -> bool:
    """A deletion: whether a pending event of the message was cancelled. Raises MessagePending while the
    event is in hand (or was taken a moment ago)."""
    with sessions() as session:
        pending = pending_message(session, channel=channel, ts=ts)
    if pending is None:
        return False
    if pending.held or not cancel_pending(sessions, pending):
        raise MessagePending(channel, ts)
    return True


def edit_if_pending(sessions: SessionFactory, *, channel: str, ts: str, edited: dict[str, Any]) -> bool:
    """An edit (`edited`: the message as it now stands): whether a pending event of the message was given
    its new text. Raises MessagePending while the event is in hand (or was taken a moment ago)."""
    with sessions() as session:
        pending = pending_message(session, channel=channel, ts=ts)
    if pending is None:
        return False
    changes: dict[str, Any] = {k: edited[k] for k in ("text", "files", "edited") if k in edited}
    if pending.held or not edit_pending(sessions, pending, changes):
        raise MessagePending(channel, ts)
    return True
