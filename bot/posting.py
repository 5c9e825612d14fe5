"""Posting a message at most once, whatever fails between the post and the store.

Each post has a key (`reply:C1:1700.1`, `forward:…`, `handoff:…`). Its intent is written to the
store's ledger before the call, checking that the caller still holds its event (store/posts.py);
the call carries the key as the first block's id; the message's ts is written after it. An attempt
that finds an intent without a ts (the process died, or the store failed, just after posting)
looks for the key in the thread (`conversations.replies`) or the channel since the intent
(`conversations.history`) before posting again. Those reads need the `channels:history` and
`groups:history` scopes the bot already has to receive messages, and membership of the channel:
where Slack refuses them (`not_in_channel`), the bot cannot know, and posts again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from store.db import SessionFactory, retrying
from store.posts import Holder, PostState, begin_post, forget_intent, record_post
from store.tables import SlackMessage

log = logging.getLogger(__name__)

Blocks = list[dict[str, Any]]
MAX_PAGES = 5  # of 200 messages each: a busy department channel in the minutes since the intent
UNREADABLE = ("not_in_channel", "channel_not_found", "missing_scope", "thread_not_found")


def marker(key: str) -> str:
    return "sb." + hashlib.sha1(key.encode()).hexdigest()[:20]


def marked(key: str, text: str, blocks: Blocks | None) -> Blocks:
    """The blocks with the key's marker as the first block's id (a text-only post becomes one section)."""
    blocks = [dict(b) for b in blocks] if blocks else [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    blocks[0]["block_id"] = marker(key)
    return blocks


def post_once(client: WebClient, sessions: SessionFactory, holder: Holder, *, key: str, channel: str, text: str,
              blocks: Blocks | None = None, thread_ts: str | None = None, reply_to: SlackMessage | None = None,
              verify: bool = True, ephemeral_user: str | None = None, about: SlackMessage | None = None,
              **options: Any) -> str | None:
    """Posts unless the ledger says it was posted; returns the message's ts (None when an unverifiable
    earlier attempt is taken as done: `verify=False`, for courtesy notes a repeat of which is worse
    than a miss). `ephemeral_user`: a note only that person sees (never verifiable, so never repeated).
    `about`: the customer's message a copy is about (the routing reply, `reply_to`, is about its message),
    so that reactions and buttons on the post find that message.
    Raises store.posts.NotHeld when the holder lost its event: it must stop."""
    subject = about or reply_to
    state = begin_post(sessions, key=key, channel=channel, thread_ts=thread_ts, holder=holder,
                       message_id=subject.id if subject is not None else None)
    if state.ts is not None:
        if reply_to is not None and reply_to.reply_ts is None:  # a message recorded anew (an edit routed again)
            _record(sessions, key, state.ts, reply_to)
        return state.ts
    if state.intent_at is not None:
        if not verify or ephemeral_user:
            return None
        found = find_post(client, key=key, channel=channel, thread_ts=thread_ts, state=state)
        if found is not None:
            log.info("%s was posted by an earlier attempt (ts %s): not posting it again", key, found)
            _record(sessions, key, found, reply_to)
            return found
    try:
        if ephemeral_user:
            answer = client.chat_postEphemeral(channel=channel, user=ephemeral_user, text=text, blocks=blocks,
                                               thread_ts=thread_ts)
            ts = str(answer["message_ts"])
        else:
            answer = client.chat_postMessage(channel=channel, text=text, blocks=marked(key, text, blocks),
                                             thread_ts=thread_ts, **options)
            ts = str(answer["ts"])
    except SlackApiError:  # Slack's own answer that nothing was posted (a dropped connection is no answer)
        _quietly(lambda: forget_intent(sessions, key=key))
        raise
    _record(sessions, key, ts, reply_to)
    return ts


def _record(sessions: SessionFactory, key: str, ts: str, reply_to: SlackMessage | None) -> None:
    """Stores the ts, trying a moment longer than once: a post whose ts is lost is found again only by
    reading Slack. A failure that lasts is raised; the next attempt finds the post by its marker."""
    retrying(lambda: record_post(sessions, key=key, ts=ts, reply_to=reply_to), attempts=3)


def _quietly(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # the intent stays: a later attempt looks in Slack before posting
        log.warning("could not clear a failed post's intent", exc_info=True)


def find_post(client: WebClient, *, key: str, channel: str, thread_ts: str | None, state: PostState) -> str | None:
    """The ts of the message carrying `key`'s marker, if an earlier attempt posted it; None if Slack
    shows none or cannot be read here (logged: the caller then posts again)."""
    wanted = marker(key)
    pages: Callable[[str | None], Any]
    if thread_ts is not None:
        pages = lambda cursor: client.conversations_replies(  # noqa: E731
            channel=channel, ts=thread_ts, limit=200, cursor=cursor)
    else:
        oldest = f"{state.intent_at.timestamp() - 60:.6f}" if state.intent_at else None
        pages = lambda cursor: client.conversations_history(  # noqa: E731
            channel=channel, oldest=oldest, limit=200, cursor=cursor)
    cursor: str | None = None
    try:
        for _ in range(MAX_PAGES):
            answer = pages(cursor)
            for message in answer.get("messages") or []:
                if any(b.get("block_id") == wanted for b in message.get("blocks") or []):
                    return str(message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return None
    except SlackApiError as exc:
        if exc.response.get("error") not in UNREADABLE:
            raise
        log.warning("cannot read %s to see whether %s was posted (%s): posting it again",
                    channel, key, exc.response.get("error"))
    return None
