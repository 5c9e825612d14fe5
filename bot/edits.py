"""A customer's message deleted or edited in Slack.

Deleted (`message_deleted`, or a `message_changed` to a tombstone: a thread's parent deleted while
replies remain, which is how a routed message, with the bot's reply in its thread, usually goes):
the message is forgotten as `switchboard forget --message` would (bot/forgetting.py): every row about it
gone at once, a record kept, the bot's posts about it deleted; nothing is posted. A post Slack would
not delete now stays owed (store/slack_work.py): the outbox retries it, and the event is done.

Edited (`message_changed` with new text) before anyone labelled it: the old text is forgotten the same
way (its forward deleted), except the routing reply, and the new text is routed as a new message
would be; the reply is then edited to show the new verdict and the new text is forwarded to its
department. A retry of an edit resumes at its first step not done: the message it recorded carries
its event's id, and the reply and forward go through the post ledger. A message someone labelled
already keeps its label and route: the label is a person's judgement of the text they read, and the
edit is left to them. A change that keeps the text (a link's preview, attachments, blocks) is nothing.

While the message's own event is still pending, a deletion cancels it and an edit gives it the new
text, or they wait for it (bot/order.py).

Only top-level messages people wrote in support channels are acted on (`is_customer_edit`): the bot's
own edits and deletions (its replies, forwards, chat.delete), apps' posts, thread replies and
agents' talk in their channels are never claimed, so their text never reaches the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from bot.deps import BotDeps
from bot.forgetting import SlackSide, forget_message, forget_posts_at
from bot.order import MessagePending, cancel_if_pending, edit_if_pending
from bot.reactions import show_label_in_force
from bot.routing import has_words, reply_key, route_message
from store.posts import Holder, posted
from store.slack import find_message, standing_label
from store.split import normalise
from store.tables import Query

log = logging.getLogger(__name__)
EDITS = ("message_deleted", "message_changed")
TOMBSTONE = "tombstone"  # what Slack leaves of a thread's deleted parent: "This message was deleted."


def is_tombstone(event: dict[str, Any]) -> bool:
    return event.get("subtype") == "message_changed" and (event.get("message") or {}).get("subtype") == TOMBSTONE


def is_deletion(event: dict[str, Any]) -> bool:
    return event.get("type") == "message" and (event.get("subtype") == "message_deleted" or is_tombstone(event))


def is_customer_edit(event: dict[str, Any], *, routes: Callable[[str], bool]) -> bool:
    """A deletion or an edit of a top-level message a person wrote in a channel `routes` says is a support
    channel. An edit that keeps the text (a link's preview, attachments or blocks changed) is not one."""
    subtype = event.get("subtype")
    if subtype not in EDITS or event.get("channel_type") in ("im", "mpim"):
        return False
    before = event.get("previous_message")
    now = (event.get("message") or {}) if subtype == "message_changed" else (before or {})
    if any(_by_an_app(m) for m in (now, before or {})):
        return False  # the bot's own posts (replies, forwards, chat.delete), other apps' and workflows'
    if subtype == "message_changed" and now.get("subtype") != TOMBSTONE and before is not None and (
            (before.get("text") or "") == (now.get("text") or "")):
        return False
    if now.get("thread_ts") not in (None, now.get("ts")):
        return False  # a thread reply: never routed
    return routes(str(event.get("channel") or ""))


def _by_an_app(message: dict[str, Any]) -> bool:
    return bool(message.get("bot_id") or message.get("app_id")) or message.get("subtype") == "bot_message"


def on_message(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    subtype = event.get("subtype")
    if is_deletion(event):
        message_deleted(deps, client, event)
    elif subtype == "message_changed":
        message_changed(deps, client, event, holder)
    else:
        route_message(deps, client, event, holder)


def deleted_message(event: dict[str, Any]) -> tuple[str, str]:
    """(channel, ts) of the message a deletion or a tombstone speaks of."""
    if is_tombstone(event):
        ts = (event.get("message") or {}).get("ts")
    else:
        ts = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
    return str(event["channel"]), str(ts or "")


def message_deleted(deps: BotDeps, client: WebClient, event: dict[str, Any], *, last_try: bool = False) -> None:
    """Forgets the message and cancels its pending event. `last_try` (the hand-off): a pending event still in
    hand is left to finish."""
    channel, ts = deleted_message(event)
    try:
        cancelled = cancel_if_pending(deps.sessions, channel=channel, ts=ts)
    except MessagePending:
        if not last_try:
            raise
        log.error("message %s/%s was deleted in Slack while its event stayed in hand: forgetting what is "
                  "stored now; what that event stores after is not forgotten", channel, ts)
        cancelled = False
    with deps.sessions() as session:
        message = find_message(session, channel=channel, ts=ts)
    slack = SlackSide(client, alert_channel=deps.rules.alert_channel)
    if message is not None and message.ts == ts:
        forgotten = forget_message(deps.sessions, slack, ts=ts, channel=channel, requested_by="message_deleted",
                                   kind="message_deleted")
    else:
        forgotten = forget_posts_at(deps.sessions, slack, channel=channel, ts=ts, record=cancelled)
    if forgotten.posts_pending:
        log.warning("message %s/%s was deleted in Slack and forgotten; the bot's posts about it still to delete "
                    "(the outbox retries them): %s", channel, ts, ", ".join(forgotten.posts_pending))
    log.info("message %s/%s was deleted in Slack: forgot %s%s", channel, ts, forgotten.rows,
             " and cancelled its pending event" if cancelled else "")


def message_changed(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    channel, inner = event["channel"], event.get("message") or {}
    ts, text = inner.get("ts", ""), inner.get("text") or ""
    if edit_if_pending(deps.sessions, channel=channel, ts=ts, edited=deps.rules.stored_text.in_payload(inner)):
        log.info("message %s/%s was edited while its event waits for a retry: that retry routes the new text",
                 channel, ts)
    edited = {**inner, "channel": channel, "ts": ts, "text": text}
    if event.get("receiving_team"):
        edited["receiving_team"] = event["receiving_team"]
    with deps.sessions() as session:
        message = find_message(session, channel=channel, ts=ts)
        query = session.get(Query, message.query_id) if message is not None else None
        labelled = message is not None and standing_label(session, query_id=message.query_id) is not None
    if message is None:
        if has_words(text) and (reply := posted(deps.sessions, reply_key(channel, ts))) and reply.ts:
            _route_again(deps, client, edited, holder)  # an attempt of this edit forgot the old text, then stopped
        return  # else never routed (a thread reply, a message from before the bot)
    if message.ts != ts:
        return  # one of the bot's posts
    if holder.event_id is not None and message.event_id == holder.event_id:
        _route_again(deps, client, edited, holder)  # a retry of this edit: the steps not done yet
        return
    if (labelled or query is None or normalise(query.text) == normalise(deps.rules.stored_text.text(text))
            or not has_words(text)):  # the stored text is the redacted one (a card number, or baseline+store)
        return
    forget_message(deps.sessions, SlackSide(client, alert_channel=deps.rules.alert_channel), ts=ts, channel=channel,
                   requested_by="message_changed", kind="message_changed", keep_reply=True, keep_event=holder.event_id)
    _route_again(deps, client, edited, holder)
    log.info("message %s/%s was edited before anyone labelled it: routed again", channel, ts)


def _route_again(deps: BotDeps, client: WebClient, edited: dict[str, Any], holder: Holder) -> None:
    """Routes the edited text (the reply and forward through the post ledger), then edits the reply."""
    route_message(deps, client, edited, holder)
    with deps.sessions() as session:
        rerouted = find_message(session, channel=edited["channel"], ts=edited["ts"])
    if rerouted is not None:
        show_label_in_force(deps, client, holder, rerouted)
