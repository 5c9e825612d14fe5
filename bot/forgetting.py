"""Forgetting a customer, or one message: the bot's posts about it deleted in Slack, then every row
(store/forget.py), in that order, so a forget cut short in between is finished by running it again.

`chat.delete` can only remove the bot's own messages: the forwards to departments, the routing
reply, reroutes and hand-offs. The customer's own message is theirs (or a workspace admin's) to
delete. A post that cannot be deleted is named in the outcome (channel and ts, no content) for an
admin to remove by hand; its row goes with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from store.db import SessionFactory, transaction
from store.forget import forget, forget_place, messages_at, messages_of_user, posts_about, posts_at
from store.tables import SlackMessage

log = logging.getLogger(__name__)
GONE = ("message_not_found", "channel_not_found")  # nothing left to delete


@dataclass(frozen=True)
class Forgotten:
    rows: dict[str, int]
    trained_models: list[int]
    posts_deleted: int
    posts_left: list[str] = field(default_factory=list)  # "C123/1700000000.000100: cant_delete_message"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "trained_models": self.trained_models, "slack_posts_deleted": self.posts_deleted,
                "slack_posts_left": self.posts_left}


class PostsLeft(Exception):
    """Some of the bot's posts could not be deleted in Slack: nothing was forgotten from the store yet,
    so that the next attempt tries them again (a deletion in Slack, retried by the outbox)."""

    def __init__(self, left: list[str]) -> None:
        super().__init__(", ".join(left))
        self.left = left


def forget_user(sessions: SessionFactory, client: WebClient | None, user: str, *, requested_by: str) -> Forgotten:
    return _forget(sessions, client, lambda s: messages_of_user(s, user), user=user, kind="user",
                   requested_by=requested_by)


def forget_message(sessions: SessionFactory, client: WebClient | None, *, ts: str, channel: str | None,
                   requested_by: str, kind: str = "message", keep_reply: bool = False,
                   keep_event: str | None = None, all_posts: bool = False) -> Forgotten:
    """`keep_reply`: the routing reply stays (an edited message is routed again and its reply edited), as
    does `keep_event`'s payload (that edit's). `all_posts`: raise PostsLeft, forgetting no row, unless
    every post could be deleted."""
    return _forget(sessions, client, lambda s: messages_at(s, ts=ts, channel=channel), user=None, kind=kind,
                   requested_by=requested_by, keep_reply=keep_reply, keep_event=keep_event, all_posts=all_posts)


def forget_posts_at(sessions: SessionFactory, client: WebClient | None, *, channel: str, ts: str,
                    record: bool = False, all_posts: bool = False) -> Forgotten:
    """A message deleted in Slack that was never stored: the bot's posts about it (an apology while its
    routing waited for a retry, say) and the events that carry its text. A content-free record is kept
    when there was something (`record`: its routing was cancelled)."""
    with sessions() as session:
        posts = [(p.key, p.channel, p.ts) for p in posts_at(session, channel=channel, ts=ts)]
    deleted, left = _delete_posts(client, posts, keep_reply=False, all_posts=all_posts)
    with transaction(sessions) as session:
        rows = forget_place(session, channel=channel, ts=ts, kind="message_deleted", requested_by="message_deleted",
                            record=record)
    return Forgotten(dict(rows), [], deleted, left)


def _forget(sessions: SessionFactory, client: WebClient | None, find: Callable[[Session], list[SlackMessage]], *,
            user: str | None, kind: str, requested_by: str, keep_reply: bool = False, keep_event: str | None = None,
            all_posts: bool = False) -> Forgotten:
    with sessions() as session:
        posts = [(p.key, p.channel, p.ts) for p in posts_about(session, find(session))]
    deleted, left = _delete_posts(client, posts, keep_reply=keep_reply, all_posts=all_posts)
    with transaction(sessions) as session:
        record = forget(session, find(session), user=user, kind=kind, requested_by=requested_by,
                        keep_posts=("reply:",) if keep_reply else (), keep_event=keep_event)
        outcome = Forgotten(dict(record.rows), list(record.trained_models), deleted, left)
    log.info("forgot a %s's data on %s's request: %s", kind, requested_by, outcome.rows)
    return outcome


def _delete_posts(client: WebClient | None, posts: list[tuple[str, str, str | None]], *, keep_reply: bool,
                  all_posts: bool) -> tuple[int, list[str]]:
    """Deletes the posts in Slack: (how many, "channel/ts: why" of each left); raises PostsLeft for any
    left with `all_posts`."""
    deleted, left = 0, []
    for key, channel, ts in posts:
        if ts is None or (keep_reply and key.startswith("reply:")):
            continue
        error = _delete(client, channel, ts)
        if error is None:
            deleted += 1
        else:
            left.append(f"{channel}/{ts}: {error}")
    if left and all_posts:
        raise PostsLeft(left)
    return deleted, left


def _delete(client: WebClient | None, channel: str, ts: str) -> str | None:
    """None once the post is gone, else why it is not."""
    if client is None:
        return "no SLACK_BOT_TOKEN to delete it with"
    try:
        client.chat_delete(channel=channel, ts=ts)
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        return None if error in GONE else error
    return None
