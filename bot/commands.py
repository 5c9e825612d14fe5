"""`/switchboard status | retrain | rollback | departments [add NAME :emoji: #channel]`.

Every answer goes back in the acknowledgement itself (well inside Slack's 3 seconds); a retrain
is acknowledged at once, runs in a background thread and posts its report when it ends.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from bot.reactions import CONFIRM
from router.costs import Pricing
from store.db import transaction
from store.examples import StoreError, list_departments, upsert_department
from store.overview import status, status_lines
from store.runs import TRAINING_LOCK, lock_held

log = logging.getLogger(__name__)

USAGE = ("Usage: `/switchboard status` · `retrain` · `rollback` · `departments` · "
         "`departments add NAME :emoji: #channel`")
ADMIN_ONLY = {"retrain", "rollback", "departments"}
_EMOJI = re.compile(r"^:([^:\s]+):$")
_CHANNEL = re.compile(r"^<#([A-Z0-9]+)(\|[^>]*)?>$")

Ack = Callable[..., None]


def handle(deps: BotDeps, client: WebClient, command: dict[str, Any], ack: Ack) -> None:
    words = (command.get("text") or "").split()
    action = words[0].lower() if words else "status"
    user = command.get("user_id")
    if action in ADMIN_ONLY and not deps.is_admin(user):
        ack(text=f"Sorry, `{action}` is for Switchboard admins only. `/switchboard status` is open to everyone.")
        return
    if action == "status":
        with deps.sessions() as session:
            ack(text="\n".join(status_lines(status(session, pricing=Pricing.of(deps.settings)))))
    elif action == "retrain":
        start_retrain(deps, client, channel=command.get("channel_id"), user=user, ack=ack)
    elif action == "rollback":
        rollback(deps, user=user, ack=ack)
    elif action == "departments":
        departments(deps, words[1:], user=user, ack=ack)
    else:
        ack(text=f"Unknown command `{action}`. {USAGE}")


def start_retrain(deps: BotDeps, client: WebClient, *, channel: str | None, user: str | None, ack: Ack) -> None:
    with deps.sessions() as session:
        busy = lock_held(session, name=TRAINING_LOCK)
    if busy:
        ack(text="A retraining run is already in progress; `/switchboard status` shows when it ends.")
        return
    ack(text="Retraining started. I'll post the report here when it finishes.")
    threading.Thread(target=_retrain, args=(deps, client, channel, user), name="slack-retrain", daemon=True).start()


def _retrain(deps: BotDeps, client: WebClient, channel: str | None, user: str | None) -> None:
    from trainer.pipeline import TrainingBusy
    from trainer.report_text import report_lines

    try:
        report = deps.run_now("slack")
        text = "\n".join(report_lines(report))
    except TrainingBusy:
        text = "Another retraining run started first; nothing was started twice."
    except Exception as exc:
        log.exception("retrain from Slack failed")
        text = f"The retraining run failed ({type(exc).__name__}: {str(exc)[:200]}); the active model is unchanged."
    _post(client, channel, user, f"<@{user}> asked for a retrain:\n```{text}```")


def _post(client: WebClient, channel: str | None, user: str | None, text: str) -> None:
    """To the channel the command came from; to the admin directly when the bot is not in it."""
    for target in (channel, user):
        if not target:
            continue
        try:
            client.chat_postMessage(channel=target, text=text)
            return
        except SlackApiError as exc:
            log.warning("could not post the report to %s: %s", target, exc.response.get("error"))


def rollback(deps: BotDeps, *, user: str | None, ack: Ack) -> None:
    from router.adapters import AdapterError
    from trainer.promotion import rollback_checked

    try:
        model = rollback_checked(deps.sessions, by=f"admin (slack {user})")
    except (StoreError, AdapterError) as exc:
        ack(text=f"Rollback refused: {exc}")
        return
    ack(response_type="in_channel", text=f"<@{user}> rolled back: model {model.id} is active again "
        f"(holdout macro-F1 {model.metrics.get('macro_f1', 0):.3f}). The bot switches to it within seconds.")


def departments(deps: BotDeps, words: list[str], *, user: str | None, ack: Ack) -> None:
    if words and words[0].lower() == "add":
        name_words, emoji, channel = [], None, None
        for word in words[1:]:
            if match := _EMOJI.match(word):
                emoji = match.group(1)
            elif match := _CHANNEL.match(word):
                channel = match.group(1)
            else:
                name_words.append(word)
        if not name_words:
            ack(text="Usage: `/switchboard departments add NAME :emoji: #channel`")
            return
        try:
            with transaction(deps.sessions) as session:
                dept = upsert_department(session, name=" ".join(name_words), emoji=emoji, channel=channel,
                                         reserved_emoji=(CONFIRM, deps.settings.out_of_scope_emoji))
        except StoreError as exc:
            ack(text=f"Not added: {exc}")
            return
        log.info("admin %s set department %s (emoji %s, channel %s)", user, dept.name, dept.emoji, dept.channel)
        ack(text=f"Department *{dept.name}* saved: " + _describe(dept)
            + ". The model learns it from agents' reactions and the next retrain.")
        return
    with deps.sessions() as session:
        rows = [f"• *{d.name}*: {_describe(d)}" for d in list_departments(session)]
    ack(text="\n".join(rows) or "No departments yet: `/switchboard departments add NAME :emoji: #channel`.")


def _describe(dept: Any) -> str:
    emoji = f":{dept.emoji}:" if dept.emoji else "no emoji"
    channel = f"<#{dept.channel}>" if dept.channel else "no channel"
    return f"{emoji}, {channel}"
