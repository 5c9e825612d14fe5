"""Admins decide a candidate: the Approve and Reject buttons of the approval request (trainer/approval.py)
and `/switchboard approve [ID]` / `reject [ID]`. Anyone else is told so and nothing changes.

Approve takes a candidate waiting for approval; Reject also stops one in shadow. The store's
compare-and-set makes a double click, or a click racing the slash command, decide once.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot.deps import BotDeps
from classifier.model.lora_merge import AdapterError
from classifier.routing.adapters import check_adapter_path
from store.db import transaction
from store.examples import StoreError
from store.shadow import decide_by_admin

log = logging.getLogger(__name__)

NOT_AN_ADMIN = "Only Switchboard admins can approve or reject a candidate model; nothing changed."


def decide_candidate(deps: BotDeps, *, user: str | None, model_id: int | None, approve: bool) -> tuple[bool, str]:
    """(whether the candidate was decided now, the answer: what happened, or why nothing did)."""
    if not deps.is_admin(user):
        return False, NOT_AN_ADMIN
    try:
        with transaction(deps.sessions) as session:
            decided = decide_by_admin(session, model_id=model_id, approve=approve, by=f"admin {user}",
                                      check=check_adapter_path if approve else None)
            model_id, promoted = decided.model.id, decided.promoted
    except (StoreError, AdapterError) as exc:
        return False, f"Nothing changed: {exc}."
    log.info("admin %s %s model %s", user, "approved" if approve else "rejected", model_id)
    if approve and not promoted:
        return True, f"<@{user}> approved model {model_id}, but the active model changed since its run: not promoted."
    return True, (f"<@{user}> approved model {model_id}: it is active now, and the bot switches to it within seconds."
                  if approve else f"<@{user}> rejected model {model_id}: the active model stays.")


def on_button(deps: BotDeps, client: WebClient, body: dict[str, Any], action: dict[str, Any], *,
              approve: bool) -> None:
    """A click on the approval request: the answer replaces the buttons for everyone, or, for someone who
    may not decide, goes to them alone."""
    user, container = body["user"]["id"], body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    try:
        model_id: int | None = int(action.get("value") or "")
    except ValueError:
        model_id = None
    decided, answer = decide_candidate(deps, user=user, model_id=model_id, approve=approve)
    if not channel:
        log.warning("an approval click by %s came without a channel: %s", user, answer)
    elif not decided or not ts:
        client.chat_postEphemeral(channel=channel, user=user, text=answer)
    else:
        message = body.get("message") or {}
        kept = [b for b in message.get("blocks", []) if b.get("type") != "actions"]
        client.chat_update(channel=channel, ts=ts, text=answer,
                           blocks=[*kept, {"type": "section", "text": {"type": "mrkdwn", "text": answer}}])
