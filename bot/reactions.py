"""Agents relabel: a department's emoji reroutes, the check mark confirms, removing undoes; audits are answered too.

The reaction event carries no text, only (channel, ts) of the message reacted to; the query is
found in the store by that ts, the customer's message or the bot's reply alike. On a message
picked for audit (`audit_requested`), an agent's reaction is its audit answer, as is a click on the
reply's ✅ Right or department menu: those labels are stored as audits, which may judge models,
since the message was chosen at random rather than by the agent. On a message the bot asked about
(`ask_requested`: it was among the least sure), the answer is stored as `asked`: it trains only,
since the model's doubt chose the message.

Each reaction's steps are recorded when done: the label is written (or withdrawn) once per event,
a reroute is forwarded once, and the reply is edited to show the label in force as the store holds
it now. A retried event resumes at the step that failed and repeats none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot import blocks
from bot.copies import copy_view_now, update_copies
from bot.deps import BotDeps
from bot.drift import check_drift
from bot.order import wait_for_message
from bot.posting import marked
from bot.replies import agents_in_thread, thread_reply
from bot.routing import forward, reply_key
from bot.who_can_relabel import tell_who_can_relabel
from store.db import transaction
from store.examples import get_department, list_departments, out_of_scope_class
from store.posts import Holder, check_held
from store.slack import (
    department_for_emoji,
    find_message,
    label_given_by,
    label_message,
    message_in_channel,
    note_early_removal,
    prediction_of,
    query_text,
    removed_before_added,
    standing_label,
    withdraw_labels,
    withdrawn_by,
)
from store.tables import Department, LabelSource, SlackMessage

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
    if message is None:  # a message whose own event is still pending is waited for (bot/order.py)
        wait_for_message(session, channel=item.get("channel", ""), ts=item.get("ts", ""))
        return None
    emoji = (event.get("reaction") or "").split("::")[0]
    confirms = emoji == CONFIRM
    if confirms:
        prediction = prediction_of(session, message)
        department = get_department(session, name=prediction.department) if prediction else None
    elif emoji == deps.rules.out_of_scope_emoji:
        department = out_of_scope_class(session)
    else:
        department = department_for_emoji(session, emoji=emoji)
    source = (LabelSource.AUDIT if message.audit_requested else LabelSource.ASKED if message.ask_requested
              else LabelSource.CONFIRM if confirms else LabelSource.AGENT)
    return Target(message, department, source, confirms) if department is not None else None


def reaction_added(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    agent = event["user"]
    if not deps.is_agent(agent):
        tell_who_can_relabel(deps, client, event, holder, reserved_emoji=(CONFIRM, deps.rules.out_of_scope_emoji))
        return
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        if label_given_by(session, holder.event_id) is None and removed_before_added(
                session, query_id=target.message.query_id, author=agent,
                department_id=target.department.id,  # type: ignore[arg-type]
                added_ts=str(event.get("event_ts", ""))):
            log.info("agent %s's %s on query %s was removed before it was handled: no label",
                     agent, target.department.name, target.message.query_id)
            return
        text, written = _label(session, target, agent, holder.event_id)
    _after_label(deps, client, holder, target, agent, text, written,
                 key=f"reroute:{holder.event_id or agent}:{target.message.id}")


def _after_label(deps: BotDeps, client: WebClient, holder: Holder, target: Target, agent: str, text: str,
                 written: bool, *, key: str) -> None:
    """A correction is counted (once: when its label is written), a reroute forwarded once (the department
    needs it more than the reply needs its edit), then the reply shows the label in force."""
    if written:
        _after_correction(deps, client, target)
    if not target.confirms and target.department.channel and target.department.name != target.message.routed_to:
        message = target.message
        forward(client, deps, holder, key=key, to_channel=target.department.channel,
                department=target.department.name, user=message.user, channel=message.channel, ts=message.ts,
                text=text, by_agent=agent, about=message, view=copy_view_now(deps, message))
    show_label_in_force(deps, client, holder, target.message)


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


def audit_answered(deps: BotDeps, client: WebClient, body: dict[str, Any], action: dict[str, Any],
                   holder: Holder) -> None:
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
        source = LabelSource.AUDIT if message.audit_requested else LabelSource.ASKED
        target = Target(message, department, source, confirms=department.name == message.routed_to)
        text, written = _label(session, target, agent, None)
    _after_label(deps, client, holder, target, agent, text, written,
                 key=f"reroute:audit:{message.id}:{department.name}")


def _by_block(session: Session, action: dict[str, Any], channel: str, reply_ts: str) -> SlackMessage | None:
    """The message named in the audit block's id, its reply's ts recorded now if it was lost."""
    message_id = blocks.audited_message_id(action.get("block_id"))
    if message_id is None:
        return None
    return message_in_channel(session, message_id=message_id, channel=channel, reply_ts=reply_ts)


def _label(session: Session, target: Target, agent: str, event_id: str | None) -> tuple[str, bool]:
    """Stores the label once (superseding the one in force); (the query's text, whether it was written now)."""
    _, written = label_message(session, target.message, department=target.department, source=target.source,
                                   author=agent, event_id=event_id)
    if written:
        log.info("agent %s labelled query %s as %s (%s)", agent, target.message.query_id, target.department.name,
                 target.source.value)
    return query_text(session, target.message), written


def reaction_removed(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    agent = event["user"]
    with transaction(deps.sessions) as session:
        target = _target(deps, session, event)
        if target is None:
            return
        message, department = target.message, target.department
        if not withdrawn_by(session, holder.event_id):
            if not withdraw_labels(session, query_id=message.query_id, author=agent,
                                   department_id=department.id,  # type: ignore[arg-type]
                                   source=target.source, event_id=holder.event_id):
                note_early_removal(session, query_id=message.query_id, author=agent,
                                   department_id=department.id,  # type: ignore[arg-type]
                                   removed_ts=str(event.get("event_ts", "")))
                return
            log.info("agent %s withdrew label %s from query %s", agent, department.name, message.query_id)
    show_label_in_force(deps, client, holder, message)


def show_label_in_force(deps: BotDeps, client: WebClient, holder: Holder, message: SlackMessage) -> None:
    """Edits the bot's reply, then its copies in department channels, to show what the store holds now:
    the label in force, or the verdict (bot/replies.py, bot/copies.py)."""
    with deps.sessions() as session:
        standing = standing_label(session, query_id=message.query_id)
        prediction = prediction_of(session, message)
        departments = list_departments(session)
        fresh = session.get(SlackMessage, message.id)
        text = query_text(session, fresh) if fresh is not None else ""
    if fresh is None:
        return
    shown = thread_reply(deps.rules, fresh, prediction, standing, departments)
    if fresh.reply_ts and shown is not None:
        check_held(deps.sessions, holder)
        client.chat_update(channel=fresh.channel, ts=fresh.reply_ts, text=shown.text,
                           blocks=marked(reply_key(fresh.channel, fresh.ts), shown.text, shown.blocks))
    if not agents_in_thread(deps.rules, fresh):
        update_copies(deps, client, holder, fresh, text=text, prediction=prediction, standing=standing,
                      departments=departments)
