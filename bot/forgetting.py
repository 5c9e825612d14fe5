"""Forgetting a customer, or one message: every row (store/forget.py) at once, and, in the same transaction,
the bot's posts about it queued for deletion in Slack (store/slack_work.py), which are then tried once at
once; what Slack does not take now the bot's outbox retries (bot/slack_work.py). Erasure never waits on
Slack answering.

`chat.delete` can only remove the bot's own messages: the forwards to departments, the routing
reply, reroutes and hand-offs, and an approval request that quotes a forgotten text. The customer's
own message is theirs (or a workspace admin's) to delete. The outcome names the posts still owed
(channel and ts, no content).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot.model_forgetting import forget_in_models
from bot.slack_work import SLACK_WORK_RETRY, do_slack_work
from store.db import SessionFactory, transaction
from store.deliveries import RetryPolicy
from store.forget import forget, forget_place, messages_at, messages_of_user, posts_about, posts_at, queries_to_forget
from store.slack_work import forget_quotes, pending_work, queue_deletions
from store.tables import SlackMessage, SlackPost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forgotten:
    rows: dict[str, int]
    trained_models: list[int]
    posts_deleted: int
    posts_pending: list[str] = field(default_factory=list)  # "C123/1700000000.000100: why", the bot retries them

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "trained_models": self.trained_models, "slack_posts_deleted": self.posts_deleted,
                "slack_posts_pending": self.posts_pending}


@dataclass(frozen=True)
class SlackSide:
    """How the Slack deletions are tried at once: the bot's client (None: all left to the bot), its retry
    policy and lease, the alert channel it gives up to; `stop_when_unreachable` (the CLI) tries no more once
    Slack did not answer at all."""

    client: WebClient | None
    policy: RetryPolicy = SLACK_WORK_RETRY
    lease: timedelta = timedelta(seconds=30)
    alert_channel: str | None = None
    stop_when_unreachable: bool = False


def _slack(client: WebClient | SlackSide | None) -> SlackSide:
    return client if isinstance(client, SlackSide) else SlackSide(client)


def forget_user(sessions: SessionFactory, client: WebClient | SlackSide | None, user: str, *,
                requested_by: str) -> Forgotten:
    return _forget(sessions, client, lambda s: messages_of_user(s, user), user=user, kind="user",
                   requested_by=requested_by)


def forget_message(sessions: SessionFactory, client: WebClient | SlackSide | None, *, ts: str,
                   channel: str | None, requested_by: str, kind: str = "message", keep_reply: bool = False,
                   keep_event: str | None = None) -> Forgotten:
    """`keep_reply`: the routing reply stays (an edited message is routed again and its reply edited), as
    does `keep_event`'s payload (that edit's)."""
    return _forget(sessions, client, lambda s: messages_at(s, ts=ts, channel=channel), user=None, kind=kind,
                   requested_by=requested_by, keep_reply=keep_reply, keep_event=keep_event)


def forget_posts_at(sessions: SessionFactory, client: WebClient | SlackSide | None, *, channel: str, ts: str,
                    record: bool = False) -> Forgotten:
    """A message deleted in Slack that was never stored: the bot's posts about it (an apology while its
    routing waited for a retry, say) and the events that carry its text. A content-free record is kept
    when there was something (`record`: its routing was cancelled)."""
    with transaction(sessions) as session:
        work = queue_deletions(session, _to_delete(posts_at(session, channel=channel, ts=ts), keep_reply=False))
        rows = forget_place(session, channel=channel, ts=ts, kind="message_deleted", requested_by="message_deleted",
                            record=record)
    deleted, pending = _try_now(sessions, _slack(client), work)
    return Forgotten(dict(rows), [], deleted, pending)


def _forget(sessions: SessionFactory, client: WebClient | SlackSide | None,
            find: Callable[[Session], list[SlackMessage]], *, user: str | None, kind: str, requested_by: str,
            keep_reply: bool = False, keep_event: str | None = None) -> Forgotten:
    with transaction(sessions) as session:
        messages = find(session)
        owed = _to_delete(posts_about(session, messages), keep_reply=keep_reply)
        owed += forget_quotes(session, [q.id for q in queries_to_forget(session, messages, user=user)
                                        if q.id is not None])
        work = queue_deletions(session, owed)
        record = forget(session, messages, user=user, kind=kind, requested_by=requested_by,
                        keep_posts=("reply:",) if keep_reply else (), keep_event=keep_event)
        rows, trained = dict(record.rows), list(record.trained_models)
    forget_in_models(sessions)  # every registered model's bank and snapshot, the served one swapped hot
    deleted, pending = _try_now(sessions, _slack(client), work)  # last: Slack may be slow or away
    outcome = Forgotten(rows, trained, deleted, pending)
    log.info("forgot a %s's data on %s's request: %s; %d Slack posts still to delete", kind, requested_by,
             outcome.rows, len(pending))
    return outcome


def _to_delete(posts: list[SlackPost], *, keep_reply: bool) -> list[tuple[str, str, str]]:
    """(channel, ts, what it is) of each post to delete in Slack: those whose ts is known, but the reply kept."""
    return [(p.channel, p.ts, p.key.split(":", 1)[0]) for p in posts
            if p.ts is not None and not (keep_reply and p.key.startswith("reply:"))]


def _try_now(sessions: SessionFactory, slack: SlackSide, work: list[int]) -> tuple[int, list[str]]:
    """Tries the deletions just queued once; (how many went, "channel/ts: why" of each still owed)."""
    if not work:
        return 0, []
    done = do_slack_work(sessions, slack.client, policy=slack.policy, lease=slack.lease,
                         alert_channel=slack.alert_channel, ids=work, stop_when_unreachable=slack.stop_when_unreachable)
    with sessions() as session:
        pending = [f"{w.channel}/{w.ts}: {w.last_error or 'not tried yet'}" for w in pending_work(session, work)]
    return done.deleted, pending
