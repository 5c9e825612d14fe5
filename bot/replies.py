"""What the bot shows about a customer's message, to each audience, built from what the store holds: the
verdict it was routed by and the label in force.

Two audiences. The customer's thread gets a short acknowledgement naming the team that has the question
(`SWITCHBOARD_CUSTOMER_REPLY`, or the department's own), never a confidence, a model, scores, the emoji
legend or buttons. The agents' view (the verdict, its confidence and model, the relabel legend, the
audit and ask buttons) goes where agents work: the department's and the triage channel's copies. Under
`SWITCHBOARD_REPLY_STYLE=internal` (help desks whose customers are colleagues) the agents' view is the
thread reply instead, as it always was, except for a Slack Connect author of another organisation.

The first post and every later edit (a reroute, a confirmation, an audit answer, a withdrawal) are the
same function of the store, so a retried step shows the state as it is now, never a stale one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot import blocks
from bot.rules import BotRules
from core.reply_template import OFF, TRIAGE_TEAM, fill
from store.slack import StandingLabel
from store.tables import OUT_OF_SCOPE, Department, LabelSource, Prediction, SlackMessage

# a person's label on this message
SHOWN_SOURCES = (LabelSource.AGENT, LabelSource.CONFIRM, LabelSource.AUDIT, LabelSource.ASKED)


@dataclass(frozen=True)
class Reply:
    blocks: blocks.Blocks
    text: str  # the notification's fallback


def model_shown(prediction: Prediction) -> str:
    """How the reply names the model: "3" for a registered one, "baseline gpt-4o" for the baseline."""
    return f"baseline {prediction.baseline_model}" if prediction.baseline_model else str(prediction.model_version_id)


def is_external(event: dict[str, Any]) -> bool:
    """Whether the author is of another organisation than the workspace that received the event (a
    Slack Connect channel shared with customers)."""
    team, home = event.get("user_team") or event.get("source_team"), event.get("receiving_team")
    return bool(team and home and team != home)


def silent_thread(rules: BotRules, event: dict[str, Any]) -> bool:
    """Whether the bot says nothing in this message's thread (`off`): no reply, apology or notice."""
    return rules.customer_reply == OFF and not (rules.reply_style == "internal" and not is_external(event))


def agents_in_thread(rules: BotRules, message: SlackMessage) -> bool:
    """Whether the customer's thread shows the agents' view (`internal` style, a colleague's message)."""
    return rules.reply_style == "internal" and not message.external


def thread_reply(rules: BotRules, message: SlackMessage, prediction: Prediction | None,
                 standing: StandingLabel | None, departments: Sequence[Department]) -> Reply | None:
    """The bot's reply in the customer's thread; None when it posts nothing there (`off`)."""
    if agents_in_thread(rules, message):
        return agents_view(message, prediction, standing, departments, out_of_scope_emoji=rules.out_of_scope_emoji)
    return customers_view(rules, team_in_force(message, standing), departments)


def team_in_force(message: SlackMessage, standing: StandingLabel | None) -> str | None:
    """The department that has the question now: a person's label, else the route; None: triage or none."""
    if standing is not None and standing.author and standing.source in SHOWN_SOURCES:
        return None if standing.department == OUT_OF_SCOPE else standing.department
    return message.routed_to


def customers_view(rules: BotRules, team: str | None, departments: Sequence[Department], *,
                   template: str | None = None) -> Reply | None:
    """The acknowledgement naming `team` (None: the triage team), in the department's own words if it has
    them; `template` overrides the setting (a file without words, a hand-off). None when it is `off`."""
    department = next((d for d in departments if d.name == team), None) if team else None
    own = department.customer_reply if department is not None and department.customer_reply else None
    chosen = template or own or rules.customer_reply
    text = None if chosen == OFF else fill(chosen, team or TRIAGE_TEAM)
    return None if text is None else Reply([blocks.section(text)], text.replace("*", ""))


def agents_view(message: SlackMessage, prediction: Prediction | None, standing: StandingLabel | None,
                departments: Sequence[Department], *, out_of_scope_emoji: str) -> Reply:
    shown = standing if standing is not None and standing.author and standing.source in SHOWN_SOURCES else None
    if shown is not None:
        assert shown.author is not None
        body = (blocks.audited(shown.department, shown.author, departments) if shown.source == LabelSource.AUDIT
                else blocks.audited(shown.department, shown.author, departments, verb="Answered")
                if shown.source == LabelSource.ASKED
                else blocks.relabelled(shown.department, shown.author, departments=departments,
                                       confirmed=shown.source == LabelSource.CONFIRM))
        text = f"Routed to {shown.department}"
    else:
        body = _verdict(message, prediction, departments, out_of_scope_emoji)
        text = f"Routed to {message.routed_to}" if message.routed_to else "Needs triage"
    if message.audit_requested or message.ask_requested:
        assert message.id is not None
        body = body + blocks.audit_request(message.id, departments, right=message.routed_to,
                                           chosen=shown.department if shown else None,
                                           asking=not message.audit_requested)
    return Reply(body, text)


def _verdict(message: SlackMessage, prediction: Prediction | None, departments: Sequence[Department],
             emoji: str) -> blocks.Blocks:
    if prediction is None:
        return blocks.triage({}, departments, None)
    model = model_shown(prediction)
    if message.routed_to:
        return blocks.routed(message.routed_to, prediction.confidence, departments, model)
    if prediction.department == OUT_OF_SCOPE:
        return blocks.out_of_scope(prediction.out_of_scope, departments, model, emoji=emoji)
    return blocks.triage(prediction.scores, departments, model)
