"""A customer's message deleted or edited in Slack.

Deleted (`message_deleted`): the message is forgotten as `switchboard forget --message` would
(bot/forgetting.py): the bot's posts about it deleted, every row about it gone, a record kept.

Edited (`message_changed`) before anyone labelled it: the old text is forgotten the same way (its
forward deleted), except the routing reply, and the new text is routed as a new message would be;
the reply is then edited to show the new verdict and the new text is forwarded to its department.
A message someone labelled already keeps its label and route: the label is a person's judgement of
the text they read, and the edit is left to them.

The bot's own edits and deletions (its replies, forwards, chat.delete) come back as these events too;
only a customer's message found in the store at its own ts is acted on.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot.deps import BotDeps
from bot.forgetting import forget_message
from bot.reactions import show_label_in_force
from bot.routing import has_words, route_message
from store.posts import Holder
from store.slack import find_message, standing_label
from store.split import normalise
from store.tables import Query

log = logging.getLogger(__name__)
EDITS = ("message_deleted", "message_changed")


def is_customer_edit(event: dict[str, Any]) -> bool:
    """A deletion or an edit of a top-level message a person wrote (the bot's own are never acted on)."""
    if event.get("subtype") not in EDITS or event.get("channel_type") in ("im", "mpim"):
        return False
    inner = event.get("message") if event["subtype"] == "message_changed" else event.get("previous_message")
    inner = inner or {}
    return not inner.get("bot_id") and inner.get("subtype") != "bot_message"


def on_message(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    subtype = event.get("subtype")
    if subtype == "message_deleted":
        message_deleted(deps, client, event)
    elif subtype == "message_changed":
        message_changed(deps, client, event, holder)
    else:
        route_message(deps, client, event, holder)


def message_deleted(deps: BotDeps, client: WebClient, event: dict[str, Any]) -> None:
    channel, ts = event["channel"], event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
    with deps.sessions() as session:
        message = find_message(session, channel=channel, ts=ts or "")
    if message is None or message.ts != ts:
        return
    forgotten = forget_message(deps.sessions, client, ts=ts, channel=channel, requested_by="message_deleted",
                               kind="message_deleted")
    log.info("message %s/%s was deleted in Slack: forgot %s", channel, ts, forgotten.rows)


def message_changed(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    channel, inner = event["channel"], event.get("message") or {}
    ts, text = inner.get("ts", ""), inner.get("text") or ""
    with deps.sessions() as session:
        message = find_message(session, channel=channel, ts=ts)
        if message is None or message.ts != ts:
            return  # never routed (a thread reply, a message from before the bot), or one of the bot's posts
        query = session.get(Query, message.query_id)
        labelled = standing_label(session, query_id=message.query_id) is not None
    if labelled or query is None or normalise(query.text) == normalise(text) or not has_words(text):
        return
    forget_message(deps.sessions, client, ts=ts, channel=channel, requested_by="message_changed",
                   kind="message_changed", keep_reply=True)
    route_message(deps, client, {**inner, "channel": channel, "ts": ts, "text": text}, holder)
    with deps.sessions() as session:
        rerouted = find_message(session, channel=channel, ts=ts)
    if rerouted is not None:
        show_label_in_force(deps, client, holder, rerouted)
    log.info("message %s/%s was edited before anyone labelled it: routed again", channel, ts)
