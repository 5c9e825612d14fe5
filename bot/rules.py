"""The slice of the settings the bot decides by, built once in `cli/compose.py` (`BotRules.of`): who may
act, where messages go, when a message goes to triage, is audited or asked about, what is stored, and the
prices the status shows."""

from __future__ import annotations

from dataclasses import dataclass

from core.redact import Redactor, stored_text
from core.reply_template import DEFAULT_CUSTOMER_REPLY
from core.settings import Settings
from reports.costs import Pricing


@dataclass(frozen=True)
class BotRules:
    agents: frozenset[str]
    admins: frozenset[str]
    triage_channel: str | None  # where a message no department takes goes; None: the reply alone says so
    alert_channel: str | None  # drift alarms and hand-offs
    support_channels: frozenset[str]  # whose top-level messages are routed; empty: every channel (bot/channels.py)
    out_of_scope_emoji: str
    confidence_threshold: float  # a top department less likely than this goes to triage
    confidence_margin: float  # so does one this close to the second
    audit_rate: float
    cold_start_audit_rate: float  # while the baseline routes
    ask_rate: float
    stored_text: Redactor  # what is stored and classified of a customer's text
    pricing: Pricing
    reply_style: str = "customer"  # `internal`: the agents' view in the customer's thread (colleagues' help desks)
    customer_reply: str = DEFAULT_CUSTOMER_REPLY  # the template naming the team, or `off`

    @classmethod
    def of(cls, settings: Settings) -> BotRules:
        return cls(agents=settings.agents, admins=settings.admins, triage_channel=settings.triage_channel,
                   alert_channel=settings.alert_channel, support_channels=settings.support_channels,
                   out_of_scope_emoji=settings.out_of_scope_emoji,
                   confidence_threshold=settings.confidence_threshold, confidence_margin=settings.confidence_margin,
                   audit_rate=settings.audit_rate, cold_start_audit_rate=settings.cold_start_audit_rate,
                   ask_rate=settings.ask_rate, stored_text=stored_text(settings), pricing=Pricing.of(settings),
                   reply_style=settings.reply_style, customer_reply=settings.customer_reply)
