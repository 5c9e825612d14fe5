"""Agents relabel: a department's emoji reroutes, the check mark confirms, removing undoes; audits are answered too.

The reaction event carries no text, only (channel, ts) of the message reacted to; the query is
found in the store by that ts, the customer's message or the bot's reply alike. On a message
picked for audit (`audit_requested`), an agent's reaction is its audit answer, as is a click on the
reply's ✅ Right or department menu: those labels are stored as audits, which may judge models,
since the message was chosen at random rather than by the agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot import blocks
from bot.deps import BotDeps
from bot.drift import check_drift
from bot.routing import forward
from store.db import transaction
from store.examples import get_department, list_departments, out_of_scope_class
from store.slack import (
    department_for_emoji,
    find_message,
    label_message,
    message_in_channel,
    note_early_removal,
    prediction_of,
    removed_before_added,
    standing_label,
    withdraw_label,
)
from store.tables import OUT_OF_SCOPE, Department, LabelSource, SlackMessage

log = logging.getLogger(__name__)

CONFIRM = "white_check_mark"
NOT_AN_AGENT = "Only agents answer audits; your answer was not recorded."


@dataclass(frozen=True)
class Target:
    """A label an agent gives: which message, which department, of what source."""

    message: SlackMessage
    department: Department
    source: LabelSource
    confirms: bool  # the department the message was already sent to: nothing to forward


def _target(deps: BotDeps, session: Session, event: dict[str, Any]) -> Target | None:
    """The message and the department a reaction speaks of, or None when it changes nothing."""
    item = event.get("item") or {}
    if not deps.is_agent(event.get("user")) or item.get("type") != "message":
        return None
    message = find_message(session, channel=item.get("channel", ""), ts=item.get("ts", ""))
    if message is None:
        return None
    emoji = (event.get("reaction") or "").split("::")[0]
    confirms = emoji == CONFIRM
    if confirms:
        prediction = prediction_of(session, message)
        department = get_department(session, name=prediction.department) if prediction else None
    elif emoji == deps.settings.out_of_scope_emoji:
        department = out_of_scope_class(session)
    else:
        department = department_for_emoji(session, emoji=emoji)
    source = (LabelSource.AUDIT if message.audit_requested else LabelSource.CONFIRM if confirms
              else LabelSource.AGENT)
    return Target(message, department, source, confirms) if department is not None else None


def reaction_added(deps: BotDeps, client: WebClient, event: dict[str, Any]) -> None:
    agent = event["user"]
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        if removed_before_added(session, query_id=target.message.query_id, author=agent,
                                department_id=target.department.id,  # type: ignore[arg-type]
                                added_ts=str(event.get("event_ts", ""))):
            log.info("agent %s's %s on query %s was removed before it was handled: no label",
                     agent, target.department.name, target.message.query_id)
            return
        text, departments = _label(session, target, agent)
    _show_label(client, target, agent, text, departments)
    _after_correction(deps, client, target)


def _after_correction(deps: BotDeps, client: WebClient, target: Target) -> None:
    """A label that names another department than the one the message was routed to is a correction:
    counted in /metrics, and the routed-to department checked for drift."""
    routed_to = target.message.routed_to
    if routed_to is None or target.department.name == routed_to:
        return
    deps.metrics.corrections.labels(department=routed_to).inc()
    try:
        check_drift(deps, client, routed_to)
    except Exception:  # the label is stored; a failed check is retried by the next correction
        log.exception("the drift check for %s failed", routed_to)


def audit_answered(deps: BotDeps, client: WebClient, body: dict[str, Any], action: dict[str, Any]) -> None:
    """A click on the reply's ✅ Right (its value: the department routed to) or a choice in its department menu.

    The message is found by the reply's ts, or by the id in the block's id should the reply's ts
    never have been stored. Only agents' answers count; anyone else is told so, privately.
    """
    agent, container = body["user"]["id"], body.get("container") or {}
    channel = container.get("channel_id") or body["channel"]["id"]
    reply_ts = container.get("message_ts") or body["message"]["ts"]
    if not deps.is_agent(agent):
        client.chat_postEphemeral(channel=channel, user=agent, text=NOT_AN_AGENT,
                                  thread_ts=(body.get("message") or {}).get("thread_ts"))
        return
    name = action.get("value") or (action.get("selected_option") or {}).get("value")
    with transaction(deps.sessions) as session:
        message = (find_message(session, channel=channel, ts=reply_ts)
                   or _by_block(session, action, channel, reply_ts))
        department = get_department(session, name=name) if name else None
        if message is None or department is None:
            log.warning("audit answer by %s on %s/%s names no stored message or department (%r)",
                        agent, channel, reply_ts, name)
            return
        target = Target(message, department, LabelSource.AUDIT, confirms=department.name == message.routed_to)
        text, departments = _label(session, target, agent)
    _show_label(client, target, agent, text, departments)
    _after_correction(deps, client, target)


def _by_block(session: Session, action: dict[str, Any], channel: str, reply_ts: str) -> SlackMessage | None:
    """The message named in the audit block's id, its reply's ts recorded now if it was lost."""
    message_id = blocks.audited_message_id(action.get("block_id"))
    if message_id is None:
        return None
    return message_in_channel(session, message_id=message_id, channel=channel, reply_ts=reply_ts)


def _label(session: Session, target: Target, agent: str) -> tuple[str, list[Department]]:
    """Stores the label (superseding the one in force); returns the query's text and the departments."""
    text = label_message(session, target.message, department=target.department, source=target.source, author=agent)
    return text, list_departments(session)


def _show_label(client: WebClient, target: Target, agent: str, text: str, departments: list[Department]) -> None:
    message, department = target.message, target.department
    log.info("agent %s labelled query %s as %s (%s)", agent, message.query_id, department.name, target.source.value)
    head = (blocks.audited(department.name, agent, departments) if target.source == LabelSource.AUDIT
            else blocks.relabelled(department.name, agent, confirmed=target.confirms, departments=departments))
    _edit_reply(client, message, head, department.name, departments)
    if not target.confirms and department.channel and department.name != message.routed_to:
        forward(client, department.channel, department=department.name, user=message.user,
                channel=message.channel, ts=message.ts, text=text, by_agent=agent)


def reaction_removed(deps: BotDeps, client: WebClient, event: dict[str, Any]) -> None:
    agent = event["user"]
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        message, department = target.message, target.department
        withdrawn = withdraw_label(session, query_id=message.query_id, author=agent,
                                   department_id=department.id, source=target.source)  # type: ignore[arg-type]
        if withdrawn is None:
            note_early_removal(session, query_id=message.query_id, author=agent,
                               department_id=department.id,  # type: ignore[arg-type]
                               removed_ts=str(event.get("event_ts", "")))
            return
        standing = standing_label(session, query_id=message.query_id)
        prediction = prediction_of(session, message)
        departments = list_departments(session)
    log.info("agent %s withdrew label %s from query %s", agent, department.name, message.query_id)
    if standing is not None and standing.author and standing.source in (
            LabelSource.AGENT, LabelSource.CONFIRM, LabelSource.AUDIT):
        body = (blocks.audited(standing.department, standing.author, departments)
                if standing.source == LabelSource.AUDIT else
                blocks.relabelled(standing.department, standing.author, departments=departments,
                                  confirmed=standing.source == LabelSource.CONFIRM))
        _edit_reply(client, message, body, standing.department, departments)
    elif prediction is not None:
        model = (f"baseline {prediction.baseline_model}" if prediction.baseline_model
                 else str(prediction.model_version_id))
        body = (blocks.routed(prediction.department, prediction.confidence, departments, model)
                if message.routed_to else
                blocks.out_of_scope(prediction.out_of_scope, departments, model, emoji=deps.settings.out_of_scope_emoji)
                if prediction.department == OUT_OF_SCOPE else blocks.triage(prediction.scores, departments, model))
        _edit_reply(client, message, body, message.routed_to or "triage", departments, answered=False)


def _edit_reply(client: WebClient, message: SlackMessage, body: blocks.Blocks, department: str,
                departments: list[Department], *, answered: bool = True) -> None:
    """Rewrites the bot's reply; an audited message keeps its question, the menu showing the label in force."""
    if not message.reply_ts:
        return
    if message.audit_requested:
        assert message.id is not None
        body = body + blocks.audit_request(message.id, departments, right=message.routed_to,
                                           chosen=department if answered else None)
    client.chat_update(channel=message.channel, ts=message.reply_ts, blocks=body, text=f"Routed to {department}")
