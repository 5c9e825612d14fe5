"""A customer's message: decide whether it is one, classify it, reply in its thread, forward it."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.audits import should_audit
from bot.deps import BotDeps
from classifier.fewshot import INVALID
from classifier.lora_router import Classification
from classifier.outcomes import sent_to_triage
from classifier.serving import NoActiveModel
from store.routed import RoutingContext, Verdict, note_reply, record_routed_message, routing_context

log = logging.getLogger(__name__)

MAX_MODEL_CHARS = 2000  # the prompt keeps 96 tokens anyway; this only bounds tokenising a 40k-char post
_SHORTCODE = re.compile(r":[a-z0-9_+'\-]+:(:skin-tone-\d:)?", re.IGNORECASE)


def is_customer_message(event: dict[str, Any]) -> bool:
    """A new top-level message a person typed: nothing else is routed.

    Any subtype (edits, deletions, joins, bot posts, file shares' bookkeeping), thread replies,
    direct messages and text that is empty or only emoji are ignored here, without reading the
    store; messages in the channels the bot forwards to are ignored once `route_message` has read
    the departments.
    """
    if event.get("subtype") or event.get("bot_id") or not event.get("user"):
        return False
    if event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
        return False
    return event.get("channel_type") not in ("im", "mpim") and has_words(event.get("text") or "")


def has_words(text: str) -> bool:
    """False for text made only of whitespace, :shortcodes: and emoji characters."""
    rest = _SHORTCODE.sub("", text)
    return any(not ch.isspace() and unicodedata.category(ch) not in ("So", "Sk", "Mn", "Cf", "Me")
               for ch in rest)


def route_message(deps: BotDeps, client: WebClient, event: dict[str, Any], *, event_id: str | None) -> None:
    """One read of the store before the model, one write after it, then the reply (and its ts)."""
    channel, ts, user, text = event["channel"], event["ts"], event.get("user"), event["text"]
    with deps.sessions() as session:
        context = routing_context(session, channel=channel, ts=ts)
    if channel in context.destinations(deps.settings.triage_channel):
        return  # a department's or the triage channel: the bot posts there, it does not route
    earlier = context.earlier
    if earlier is not None and earlier.reply_ts:
        return  # answered already (the same message under another event id)
    try:
        result: Classification | None = deps.router.classify(text[:MAX_MODEL_CHARS])
    except NoActiveModel:
        result = None  # before the first model: every query goes to triage, and agents' labels train it
    triage = result is None or sent_to_triage(result, threshold=deps.settings.confidence_threshold,
                                              margin=deps.settings.confidence_margin)
    routed_to = None if triage or result is None else result.department
    _count(deps, result, routed_to)
    audit = earlier.audit_requested if earlier else _audit(deps, context, result.department if result else None)
    message = earlier or record_routed_message(
        deps.sessions, text=text, channel=channel, ts=ts, user=user, event_id=event_id,
        verdict=verdict_of(result) if result else None, routed_to=routed_to, audit=audit,
        cache_answer=result is not None and result.department != INVALID)
    departments, target = context.departments, context.department(routed_to)
    if result is None:
        body = blocks.triage({}, departments, None)
    elif result.none_of_these:
        body = blocks.out_of_scope(result.out_of_scope, departments, _model_shown(result),
                                   emoji=deps.settings.out_of_scope_emoji)
    elif triage:
        body = blocks.triage(result.scores, departments, _model_shown(result))
    else:
        body = blocks.routed(result.department, result.confidence, departments, _model_shown(result))
    if message.audit_requested:
        assert message.id is not None
        body += blocks.audit_request(message.id, departments, right=routed_to)
    reply = client.chat_postMessage(channel=channel, thread_ts=ts, blocks=body,
                                    text=f"Routed to {routed_to}" if routed_to else "Needs triage")
    note_reply(deps.sessions, message, reply["ts"])
    forward_to = target.channel if target else deps.settings.triage_channel if triage else None
    if forward_to:
        forward(client, forward_to, department=routed_to or "triage", user=user, channel=channel, ts=ts, text=text,
                confidence=result.confidence if result and not triage else None)
    log.info("routed %s/%s to %s (model %s)", channel, ts, routed_to or "triage", result and result.model_name)


def _model_shown(result: Classification) -> str:
    """How the reply names the model: "Model 3" for a registered one, "Model baseline gpt-4o" for the baseline."""
    return str(result.model_id) if result.model_id is not None else result.model_name


def _count(deps: BotDeps, result: Classification | None, routed_to: str | None) -> None:
    if result is not None:
        deps.metrics.latency.observe(result.latency_ms / 1000)
    outcome = "out_of_scope" if result is not None and result.none_of_these else "routed" if routed_to else "triaged"
    deps.metrics.messages.labels(outcome=outcome).inc()
    if routed_to:
        deps.metrics.routed.labels(department=routed_to).inc()


def _audit(deps: BotDeps, context: RoutingContext, guess: str | None) -> bool:
    """Whether agents are asked to audit this message, `guess` being the department it went or most likely goes to."""
    rate = deps.settings.audit_rate
    return rate > 0 and should_audit(deps.audit_rng, guess, context.holdout, rate)


def forward(client: WebClient, to_channel: str, *, department: str, user: str | None, channel: str, ts: str,
            text: str, confidence: float | None = None, by_agent: str | None = None) -> None:
    """Posts the query in a department's channel with a link back; a failure there is logged, not raised."""
    try:
        permalink = client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        head, body = blocks.forwarded(department, user=user, channel=channel, text=text, permalink=permalink,
                                      by_agent=by_agent, confidence=confidence)
        client.chat_postMessage(channel=to_channel, text=head, blocks=body, unfurl_links=False)
    except SlackApiError as exc:
        log.warning("could not post to %s's channel %s: %s", department, to_channel, exc.response.get("error"))


def verdict_of(result: Classification) -> Verdict:
    """The model's answer as the store keeps it."""
    usage = result.usage
    return Verdict(department=result.answer, confidence=result.confidence, scores=result.scores,
                   latency_ms=result.latency_ms, out_of_scope=result.out_of_scope, model_id=result.model_id,
                   baseline_model=usage.model if usage else None,
                   prompt_version=usage.prompt_version if usage else None,
                   prompt_tokens=usage.prompt_tokens if usage else None,
                   completion_tokens=usage.completion_tokens if usage else None,
                   cost_usd=usage.cost_usd if usage else None)
