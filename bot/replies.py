"""The bot's reply to a customer's message, built from what the store holds: the verdict it was routed
by and the label in force. The first reply and every later edit (a reroute, a confirmation, an
audit answer, a withdrawal) are the same function of the store, so a retried step shows the state
as it is now, never a stale one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot import blocks
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


def reply(message: SlackMessage, prediction: Prediction | None, standing: StandingLabel | None,
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
