"""What the bot says when handling failed: the user is told, politely and in place, never left waiting.

Customers and agents hear plain words and nothing of the machinery (no error text, no addresses:
those go to the log). Admins, who operate the bot, hear a `SwitchboardError`'s own message, which
is written for whoever must act; anything else is a bug, and they hear that it was on our side.
A customer hears it once per new message, in its thread, and only before the bot's reply went out:
after that there is nothing to apologise for. An edit or a deletion gets no apology: its message has
its reply already (or had), and its retry finishes the work. An agent whose label was recorded, but
whose reply edit or reroute failed, hears that the label counts.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.posting import post_once
from bot.routing import ROUTED_SUBTYPES, reply_key
from core.errors import SwitchboardError
from store.db import SessionFactory
from store.posts import Holder, posted
from store.slack import label_given_by, withdrawn_by

log = logging.getLogger(__name__)

CUSTOMER_APOLOGY = "Sorry, I could not route this message just now. I'll try again in a minute."


def reason(error: BaseException) -> str:
    return error.user_message() if isinstance(error, SwitchboardError) else "something went wrong on our side"


def apologise_for_event(client: WebClient, sessions: SessionFactory, holder: Holder, event: dict[str, Any], *,
                        silent_thread: bool = False) -> None:
    """A customer's new message: a note in its thread, unless the reply is (or may be) out, or the bot
    says nothing in threads (`silent_thread`: SWITCHBOARD_CUSTOMER_REPLY=off). An agent's reaction: a
    note only they see. Each once per event; a failure to say it is only logged."""
    try:
        if event.get("type") == "message" and event.get("subtype") in ROUTED_SUBTYPES:
            if silent_thread:
                return
            earlier = posted(sessions, reply_key(event["channel"], event["ts"]))
            if earlier is not None and earlier.intent_at is not None:
                return
            post_once(client, sessions, holder, key=f"apology:{event['channel']}:{event['ts']}",
                      channel=event["channel"], thread_ts=event["ts"], text=CUSTOMER_APOLOGY, verify=False)
        elif event.get("type") in ("reaction_added", "reaction_removed"):
            item = event.get("item") or {}
            post_once(client, sessions, holder, key=f"apology:{holder.event_id}", channel=item.get("channel", ""),
                      ephemeral_user=event.get("user", ""), text=_to_agent(sessions, holder, event))
    except Exception as exc:
        log.warning("could not tell the user that handling failed: %s", exc)


def _to_agent(sessions: SessionFactory, holder: Holder, event: dict[str, Any]) -> str:
    """Whether the agent's label counts already (only the bot's messages lag behind), or not yet."""
    emoji, added = event.get("reaction"), event.get("type") == "reaction_added"
    with sessions() as session:
        recorded = label_given_by(session, holder.event_id) if added else withdrawn_by(session, holder.event_id)
    if recorded:
        return (f"Your :{emoji}: was recorded{'' if added else ' as taken back'}, but I could not update my "
                "messages to show it yet. I'll try again in a minute.")
    return f"Sorry, your :{emoji}: could not be recorded just now. It will be retried in a minute."


def apologise_for_command(client: WebClient, body: dict[str, Any], error: BaseException) -> None:
    try:
        client.chat_postEphemeral(channel=body.get("channel_id", ""), user=body.get("user_id", ""),
                                  text=f"Sorry, `/switchboard {body.get('text', '')}` failed ({reason(error)}).")
    except SlackApiError as exc:
        log.warning("could not tell the admin that the command failed: %s", exc)
