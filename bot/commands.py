"""`/switchboard status | retrain | rollback | approve [ID] | reject [ID] | departments [add NAME :emoji: #channel]`.

Every answer goes back in the acknowledgement itself (well inside Slack's 3 seconds). A retrain is
only recorded here: the trainer service (trainer/service.py) runs it and posts the report.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from bot.approvals import decide_candidate
from bot.deps import BotDeps
from bot.reactions import CONFIRM
from classifier.model.lora_merge import AdapterError
from classifier.routing.adapters import check_adapter_path
from store.db import transaction
from store.examples import StoreError, list_departments, upsert_department
from store.overview import status, status_lines
from store.registry import rollback_checked
from store.runs import TRAINING_LOCK, lock_held
from store.training_requests import request_training, trainer_running

log = logging.getLogger(__name__)

USAGE = ("Usage: `/switchboard status` · `retrain` · `rollback` · `approve [ID]` · `reject [ID]` · "
         "`departments` · `departments add NAME :emoji: #channel`")
ADMIN_ONLY = {"retrain", "rollback", "departments", "approve", "reject"}
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
            ack(text="\n".join(status_lines(status(session, pricing=deps.rules.pricing))))
    elif action == "retrain":
        start_retrain(deps, channel=command.get("channel_id"), user=user, ack=ack)
    elif action == "rollback":
        rollback(deps, user=user, ack=ack)
    elif action in ("approve", "reject"):
        candidate = words[1] if len(words) > 1 else None
        if candidate is not None and not candidate.isdigit():
            ack(text=f"`{action}` takes a model id (see `switchboard models`), not `{candidate}`.")
            return
        decided, answer = decide_candidate(deps, user=user, model_id=int(candidate) if candidate else None,
                                           approve=action == "approve")
        ack(response_type="in_channel" if decided else "ephemeral", text=answer)
    elif action == "departments":
        departments(deps, words[1:], user=user, ack=ack)
    else:
        ack(text=f"Unknown command `{action}`. {USAGE}")


def start_retrain(deps: BotDeps, *, channel: str | None, user: str | None, ack: Ack) -> None:
    """Records the request for the trainer service; the report comes to this channel when it ends."""
    with deps.sessions() as session:
        busy = lock_held(session, name=TRAINING_LOCK)
    if not busy:
        request, created = request_training(deps.sessions, by=user or "unknown", channel=channel)
    with deps.sessions() as session:
        alive = trainer_running(session)
    if busy:
        ack(text="A retraining run is already in progress; `/switchboard status` shows when it ends.")
    elif not created:
        ack(text=f"A retrain asked for by <@{request.requested_by}> is already waiting; its report comes "
                 f"to {'<#' + request.channel + '>' if request.channel else 'them'}. Nothing was started twice.")
    elif not alive:
        ack(text="Retraining requested, but no trainer service is running: it starts when one does "
                 "(`switchboard trainer`, or `switchboard serve --with-trainer`).")
    else:
        ack(text="Retraining requested: the trainer starts it within seconds and I'll post the report here.")


def rollback(deps: BotDeps, *, user: str | None, ack: Ack) -> None:
    try:
        model = rollback_checked(deps.sessions, by=f"admin (slack {user})", check=check_adapter_path)
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
                                         reserved_emoji=(CONFIRM, deps.rules.out_of_scope_emoji))
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
