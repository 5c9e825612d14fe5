"""Agents relabel with reactions: a department's emoji reroutes, the check mark confirms, removing undoes.

The reaction event carries no text, only (channel, ts) of the message reacted to; the query is
found in the store by that ts, the customer's message or the bot's reply alike.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot import blocks
from bot.deps import BotDeps
from bot.routing import forward
from store.db import transaction
from store.examples import get_department, label_query, list_departments
from store.slack import department_for_emoji, find_message, standing_label, withdraw_label
from store.tables import Department, LabelSource, Prediction, Query, SlackMessage

log = logging.getLogger(__name__)

CONFIRM = "white_check_mark"


def _target(deps: BotDeps, session: Any, event: dict[str, Any]) -> tuple[SlackMessage, Department, LabelSource] | None:
    """The message and the department a reaction speaks of, or None when it changes nothing."""
    item = event.get("item") or {}
    if not deps.is_agent(event.get("user")) or item.get("type") != "message":
        return None
    message = find_message(session, channel=item.get("channel", ""), ts=item.get("ts", ""))
    if message is None:
        return None
    emoji = (event.get("reaction") or "").split("::")[0]
    if emoji == CONFIRM:
        prediction = session.get(Prediction, message.prediction_id)
        department = get_department(session, name=prediction.department) if prediction else None
        source = LabelSource.CONFIRM
    else:
        department, source = department_for_emoji(session, emoji=emoji), LabelSource.AGENT
    return (message, department, source) if department is not None else None


def reaction_added(deps: BotDeps, client: WebClient, event: dict[str, Any]) -> None:
    agent = event["user"]
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        message, department, source = target
        query = session.get(Query, message.query_id)
        assert query is not None
        label_query(session, query=query, department=department, source=source, author=agent)
        departments = list_departments(session)
    log.info("agent %s labelled query %s as %s (%s)", agent, message.query_id, department.name, source.value)
    confirmed = source == LabelSource.CONFIRM
    _edit_reply(client, message, blocks.relabelled(department.name, agent, confirmed=confirmed,
                                                   departments=departments), department.name)
    if not confirmed and department.channel and department.name != message.routed_to:
        forward(client, department.channel, department=department.name, user=message.user,
                channel=message.channel, ts=message.ts, text=query.text, by_agent=agent)


def reaction_removed(deps: BotDeps, client: WebClient, event: dict[str, Any]) -> None:
    agent = event["user"]
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        message, department, source = target
        withdrawn = withdraw_label(session, query_id=message.query_id, author=agent,
                                   department_id=department.id, source=source)  # type: ignore[arg-type]
        if withdrawn is None:
            return
        standing = standing_label(session, query_id=message.query_id)
        prediction = session.get(Prediction, message.prediction_id)
        departments = list_departments(session)
    log.info("agent %s withdrew label %s from query %s", agent, department.name, message.query_id)
    if standing is not None and standing.source in (LabelSource.AGENT, LabelSource.CONFIRM) and standing.author:
        body = blocks.relabelled(standing.department, standing.author, departments=departments,
                                 confirmed=standing.source == LabelSource.CONFIRM)
        _edit_reply(client, message, body, standing.department)
    elif prediction is not None:
        model = str(prediction.model_version_id)
        body = (blocks.routed(prediction.department, prediction.confidence, departments, model)
                if message.routed_to else blocks.triage(prediction.scores, departments, model))
        _edit_reply(client, message, body, message.routed_to or "triage")


def _edit_reply(client: WebClient, message: SlackMessage, body: blocks.Blocks, department: str) -> None:
    if message.reply_ts:
        client.chat_update(channel=message.channel, ts=message.reply_ts, blocks=body, text=f"Routed to {department}")
