"""What the bot says when handling failed: the user is told, politely and in place, never left waiting.

A `SwitchboardError` says what happened in words meant for people; anything else is a bug, and
the user hears only that it was on our side (the log has the traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from core.errors import SwitchboardError

log = logging.getLogger(__name__)


def reason(error: BaseException) -> str:
    return error.user_message() if isinstance(error, SwitchboardError) else "something went wrong on our side"


def apologise_for_event(client: WebClient, event: dict[str, Any], error: BaseException, *, will_retry: bool) -> None:
    """A customer's message: a reply in its thread. An agent's reaction: a note only they see."""
    later = "I'll try again in a minute." if will_retry else "An agent will pick it up."
    try:
        if event.get("type") == "message":
            client.chat_postMessage(channel=event["channel"], thread_ts=event["ts"],
                                    text=f"Sorry, I could not route this message just now ({reason(error)}). {later}")
        elif event.get("type") in ("reaction_added", "reaction_removed"):
            item = event.get("item") or {}
            client.chat_postEphemeral(channel=item.get("channel", ""), user=event.get("user", ""),
                                      text=f"Sorry, your :{event.get('reaction')}: could not be recorded just now "
                                           f"({reason(error)}). " + ("It will be retried." if will_retry else
                                                                      "Please add it again."))
    except (SlackApiError, KeyError) as exc:
        log.warning("could not tell the user that handling failed: %s", exc)


def apologise_for_command(client: WebClient, body: dict[str, Any], error: BaseException) -> None:
    try:
        client.chat_postEphemeral(channel=body.get("channel_id", ""), user=body.get("user_id", ""),
                                  text=f"Sorry, `/switchboard {body.get('text', '')}` failed ({reason(error)}).")
    except SlackApiError as exc:
        log.warning("could not tell the admin that the command failed: %s", exc)
