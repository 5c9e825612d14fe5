"""The Slack deletions owed after forgetting (store/slack_work.py), carried out: `chat.delete` of each due post,
retried with backoff by the bot's outbox, handed to the alert channel (channel and ts, no content) when
the retries run out. A post Slack no longer has (`message_not_found`, `channel_not_found`) is done.

`switchboard forget` tries its own deletions once, at once, and leaves what Slack did not take to the bot;
while Slack cannot be reached at all it stops at the first such failure instead of waiting on each post.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from store.db import SessionFactory
from store.deliveries import RetryPolicy
from store.slack_work import Failed, Work, due_work, fail_work, finish_work, take_work

log = logging.getLogger(__name__)

GONE = ("message_not_found", "channel_not_found")  # nothing left to delete
SLACK_WORK_RETRY = RetryPolicy(max_attempts=12, first_delay=timedelta(seconds=10), max_delay=timedelta(hours=1))
"""10 s, 20 s, … then hourly: a Slack outage of a few hours delays a deletion, never drops it."""


@dataclass
class WorkDone:
    deleted: int = 0
    left: list[str] = field(default_factory=list)  # "C1/1700000000.000100: why", still owed


class Unreachable(Exception):
    """Slack could not be reached (no answer at all): the other deletions would fail the same way."""


def do_slack_work(sessions: SessionFactory, client: WebClient | None, *, policy: RetryPolicy = SLACK_WORK_RETRY,
                  lease: timedelta = timedelta(seconds=30), alert_channel: str | None = None,
                  ids: Sequence[int] | None = None, stop_when_unreachable: bool = False) -> WorkDone:
    """Deletes every due post (among `ids` when given) this caller can take; what it did and what is left."""
    done = WorkDone()
    if client is None:
        return done
    for work in due_work(sessions, ids=ids):
        if not take_work(sessions, work, lease=lease):
            continue  # another process has it
        try:
            error = _delete(client, work)
        except Unreachable as exc:
            error, unreachable = str(exc), True
        else:
            unreachable = False
        if error is None:
            finish_work(sessions, work.id)
            done.deleted += 1
            continue
        done.left.append(f"{work.channel}/{work.ts}: {error}")
        if fail_work(sessions, work, error=error, policy=policy) == Failed.GAVE_UP:
            _give_up(client, work, error, alert_channel)
        if unreachable and stop_when_unreachable:
            break
    return done


def _delete(client: WebClient, work: Work) -> str | None:
    """None once the post is gone, else why it is not; raises Unreachable when Slack did not answer."""
    try:
        client.chat_delete(channel=work.channel, ts=work.ts)
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        return None if error in GONE else error
    except OSError as exc:  # refused, reset, timed out (urllib's URLError is one)
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    return None


def _give_up(client: WebClient, work: Work, error: str, alert_channel: str | None) -> None:
    line = (f"I could not delete my {work.reason} at {work.channel}/{work.ts} after {work.attempts + 1} tries "
            f"({error}): its customer asked to be forgotten, so please delete it by hand.")
    log.error("gave up deleting the %s at %s/%s: %s", work.reason, work.channel, work.ts, error)
    if alert_channel is None:
        return
    try:
        client.chat_postMessage(channel=alert_channel, text=line)
    except (SlackApiError, OSError) as exc:
        log.warning("could not tell the alert channel about %s/%s: %s", work.channel, work.ts, exc)
