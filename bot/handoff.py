"""When the bot cannot do an event's work after its last attempt, people get it.

A customer's new message goes to the triage channel (or, without one, the alert channel) with its
text and a link, once; the customer is told in the thread that a person will answer, unless the
bot's reply already went out. An agent's reaction that could not be recorded is said to that agent,
privately. The message is stored as sent to triage where the store allows, so that agents'
reactions on it still find it and teach the model.

A deletion in Slack is carried out once more with what can be done: the message forgotten (the bot's
posts about it owed to the outbox, store/slack_work.py), even with its own event still in hand. An
edit that could not be applied leaves the message with its earlier route, said in the log: its reply
went out already, and agents can still relabel it; nothing is posted where the edit event's ts would
show nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from bot.edits import is_deletion, message_deleted
from bot.posting import post_once
from bot.replies import silent_thread
from bot.routing import forward, has_words, reply_key
from store.posts import Holder, posted
from store.routed import record_routed_message, routing_context
from store.slack import label_given_by, withdrawn_by

log = logging.getLogger(__name__)

HANDED_OFF = "could not be routed automatically"
CUSTOMER_NOTICE = ("I couldn't route this message automatically, so I've passed it to the team: "
                   "a person will answer here.")


def hand_off(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    kind = event.get("type")
    if kind == "message" and is_deletion(event):
        message_deleted(deps, client, event, last_try=True)
    elif kind == "message" and event.get("subtype") == "message_changed":
        log.error("the edit of message %s/%s could not be applied after several tries: it keeps its earlier "
                  "route", event.get("channel"), (event.get("message") or {}).get("ts"))
    elif kind == "message":
        _hand_off_message(deps, client, event, holder)
    elif kind in ("reaction_added", "reaction_removed"):
        _tell_agent(deps, client, event, holder)
    else:
        log.error("handing off a %r event: nobody to hand it to", kind)


def _hand_off_message(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    channel, ts, text = event["channel"], event["ts"], event.get("text") or ""
    _store_as_triaged(deps, event, holder)
    to = deps.rules.triage_channel or deps.rules.alert_channel
    if to is None:
        log.error("message %s/%s could not be routed and no SWITCHBOARD_TRIAGE_CHANNEL or "
                  "SWITCHBOARD_ALERT_CHANNEL is set: nobody can be told", channel, ts)
    else:
        forward(client, deps, holder, key=f"handoff:{channel}:{ts}", to_channel=to, department="triage",
                user=event.get("user"), channel=channel, ts=ts, text=text, why=HANDED_OFF)
    replied = posted(deps.sessions, reply_key(channel, ts))
    if replied is not None and replied.intent_at is not None:
        return  # the customer has the bot's reply (or may have): no second word
    if silent_thread(deps.rules, event):
        return  # SWITCHBOARD_CUSTOMER_REPLY=off: the bot says nothing in the customer's thread
    try:
        post_once(client, deps.sessions, holder, key=f"notice:{channel}:{ts}", channel=channel, thread_ts=ts,
                  text=CUSTOMER_NOTICE)
    except SlackApiError as exc:  # the thread itself is what failed: the triage post is what counts
        log.warning("could not tell the customer in %s/%s that a person will answer: %s",
                    channel, ts, exc.response.get("error"))


def _store_as_triaged(deps: BotDeps, event: dict[str, Any], holder: Holder) -> None:
    """Best effort: the store may be what kept failing."""
    channel, ts, text = event["channel"], event["ts"], event.get("text") or ""
    if not has_words(text):
        return
    try:
        with deps.sessions() as session:
            if routing_context(session, channel=channel, ts=ts).earlier is not None:
                return
        record_routed_message(deps.sessions, text=deps.rules.stored_text.text(text), channel=channel, ts=ts,
                              user=event.get("user"),
                              event_id=holder.event_id, verdict=None, routed_to=None, audit=False)
    except Exception:
        log.exception("could not store message %s/%s while handing it off", channel, ts)


def _tell_agent(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    """The agent hears whether their label counts: recorded (only the bot's reply could not show it), or not."""
    item, user = event.get("item") or {}, event.get("user")
    if not item.get("channel") or not user or not deps.is_agent(user):
        return
    emoji, added = event.get("reaction"), event.get("type") == "reaction_added"
    with deps.sessions() as session:
        recorded = (label_given_by(session, holder.event_id) if added else withdrawn_by(session, holder.event_id))
    if recorded:
        text = (f"Your :{emoji}: was recorded{'' if added else ' as taken back'}, but I could not update my "
                "reply to show it.")
    else:
        again = "remove it and add it again" if added else "add it and remove it again"
        text = f"Sorry, your :{emoji}: could not be recorded after several tries. Please {again} in a few minutes."
    post_once(client, deps.sessions, holder, key=f"told:{holder.event_id}", channel=item["channel"],
              ephemeral_user=user, verify=False, text=text)
