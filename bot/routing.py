"""A customer's message: decide whether it is one, classify and record it, reply in its thread, forward it.

Three steps, each recorded when done, so a retry resumes at the first one not done and never
repeats one: the verdict is recorded with the message (a retry reuses it and never classifies
again), the reply is posted once (bot/posting.py), the forward is posted once.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from bot import blocks
from bot.asks import should_ask
from bot.audits import should_audit
from bot.channels import routes
from bot.copies import copy_view
from bot.deps import BotDeps
from bot.posting import post_once
from bot.replies import Reply, customers_view, is_external, thread_reply
from classifier.baseline_client import INVALID
from classifier.routing.outcomes import sent_to_triage
from classifier.routing.router import Classification
from classifier.serving.active_router import NoActiveModel
from core.margins import top_two_margin
from core.vocabulary import FILE_ONLY_TEXT
from store.posts import Holder, check_held, posted
from store.routed import RoutingContext, Verdict, record_routed_message, routing_context, shown_verdict
from store.tables import SlackMessage

log = logging.getLogger(__name__)

MAX_MODEL_CHARS = 2000  # the prompt keeps 96 tokens anyway; this only bounds tokenising a 40k-char post
ROUTED_SUBTYPES = (None, "file_share")  # a plain message, or one with a file attached (routed by its text)
NO_TEXT = "a file with no question to route"
_SHORTCODE = re.compile(r":[a-z0-9_+'\-]+:(:skin-tone-\d:)?", re.IGNORECASE)


def is_customer_message(event: dict[str, Any]) -> bool:
    """A new top-level message a person typed or shared a file with: nothing else is routed.

    Other subtypes (edits, deletions, joins, topics, pins, huddles, thread broadcasts, bot and
    workflow posts), posts by apps (`bot_id`, `app_id`) or Slackbot, thread replies, direct messages
    and text made only of emoji are ignored here, without reading the store; which channels are
    routed is bot/channels.py's to say. A file shared without words still counts: it goes to
    triage, since a person must look at it. docs/slack-events.md lists every shape.
    """
    subtype = event.get("subtype")
    if subtype not in ROUTED_SUBTYPES or event.get("bot_id") or event.get("app_id"):
        return False
    if event.get("user") in (None, "", "USLACKBOT"):
        return False
    if event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
        return False
    if event.get("channel_type") in ("im", "mpim"):
        return False
    return subtype == "file_share" or has_words(event.get("text") or "")


def has_words(text: str) -> bool:
    """False for text made only of whitespace, :shortcodes: and emoji characters."""
    rest = _SHORTCODE.sub("", text)
    return any(not ch.isspace() and unicodedata.category(ch) not in ("So", "Sk", "Mn", "Cf", "Me")
               for ch in rest)


def reply_key(channel: str, ts: str) -> str:
    return f"reply:{channel}:{ts}"


def route_message(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder) -> None:
    channel, ts, user, text = event["channel"], event["ts"], event.get("user"), event.get("text") or ""
    with deps.sessions() as session:
        context = routing_context(session, channel=channel, ts=ts)
    if not routes(deps.rules, channel, context.department_channels()):
        return  # a department's, the triage or the alert channel, or not a support channel
    if not has_words(text):
        _triage_without_text(deps, client, holder, event)
        return
    message = context.earlier or _classify_and_record(deps, context, event, holder.event_id)
    with deps.sessions() as session:
        prediction, departments = shown_verdict(session, message)
    shown = thread_reply(deps.rules, message, prediction, None, departments)
    if shown is not None:
        post_once(client, deps.sessions, holder, key=reply_key(channel, ts), channel=channel, thread_ts=ts,
                  text=shown.text, blocks=shown.blocks, reply_to=message)
    target = context.department(message.routed_to)
    forward_to = target.channel if target else deps.rules.triage_channel if message.routed_to is None else None
    if forward_to:
        confidence = prediction.confidence if prediction is not None and message.routed_to else None
        forward(client, deps, holder, key=f"forward:{channel}:{ts}", to_channel=forward_to,
                department=message.routed_to or "triage", user=user, channel=channel, ts=ts, text=text,
                confidence=confidence, about=message,
                view=copy_view(deps, message, prediction, None, departments))
    log.info("routed %s/%s to %s", channel, ts, message.routed_to or "triage")
    deps.shadow.add(deps.sessions, message, deps.rules.stored_text.text(text)[:MAX_MODEL_CHARS])


def _classify_and_record(deps: BotDeps, context: RoutingContext, event: dict[str, Any],
                         event_id: str | None) -> SlackMessage:
    """The first attempt's step: classify, decide, record. Counted in /metrics once, here. With
    `SWITCHBOARD_REDACT=baseline+store` the model reads and the store keeps the redacted text, as training did."""
    channel, ts = event["channel"], event["ts"]
    text = deps.rules.stored_text.text(event["text"])
    try:
        result: Classification | None = deps.router.classify(text[:MAX_MODEL_CHARS])
    except NoActiveModel:
        result = None  # before the first model: every query goes to triage, and agents' labels train it
    triage = result is None or sent_to_triage(result, threshold=deps.rules.confidence_threshold,
                                              margin=deps.rules.confidence_margin)
    routed_to = None if triage or result is None else result.department
    audit = _audit(deps, context, result)
    ask = not audit and routed_to is not None and result is not None and _ask(deps, context, result)
    try:
        message = record_routed_message(
            deps.sessions, text=text, channel=channel, ts=ts, user=event.get("user"), event_id=event_id,
            verdict=verdict_of(result) if result else None, routed_to=routed_to, audit=audit, ask=ask,
            cache_answer=result is not None and result.department != INVALID, external=is_external(event))
    except IntegrityError:  # another delivery of the same message recorded it a moment ago: use that one
        with deps.sessions() as session:
            earlier = routing_context(session, channel=channel, ts=ts).earlier
        if earlier is None:
            raise
        return earlier
    _count(deps, result, routed_to)
    return message


def _triage_without_text(deps: BotDeps, client: WebClient, holder: Holder, event: dict[str, Any]) -> None:
    """A file shared without a question: triage, said so. The message is stored, with its author and a fixed
    text (FILE_ONLY_TEXT: not the file's name, which can be personal), so that forgetting its author finds
    the reply and the triage copy; it is never trained on."""
    channel, ts = event["channel"], event["ts"]
    with deps.sessions() as session:
        context = routing_context(session, channel=channel, ts=ts)
    departments = context.departments
    message = context.earlier or _record_file_only(deps, event, holder.event_id)
    if deps.rules.reply_style == "internal" and not is_external(event):
        shown: Reply | None = Reply(blocks.triage({}, departments, None, why=NO_TEXT), "Needs triage")
    else:
        shown = customers_view(deps.rules, None, departments)
    if shown is not None:
        post_once(client, deps.sessions, holder, key=reply_key(channel, ts), channel=channel, thread_ts=ts,
                  text=shown.text, blocks=shown.blocks, reply_to=message)
    if deps.rules.triage_channel:
        forward(client, deps, holder, key=f"forward:{channel}:{ts}", to_channel=deps.rules.triage_channel,
                department="triage", user=event.get("user"), channel=channel, ts=ts,
                text=", ".join(f.get("name") or "a file" for f in event.get("files") or []) or "(a file)",
                why=NO_TEXT, about=message)
    if context.earlier is None:
        deps.metrics.messages.labels(outcome="triaged").inc()


def _record_file_only(deps: BotDeps, event: dict[str, Any], event_id: str | None) -> SlackMessage:
    channel, ts = event["channel"], event["ts"]
    try:
        return record_routed_message(deps.sessions, text=FILE_ONLY_TEXT, channel=channel, ts=ts,
                                     user=event.get("user"), event_id=event_id, verdict=None, routed_to=None,
                                     audit=False, external=is_external(event))
    except IntegrityError:  # another delivery of the same message recorded it a moment ago
        with deps.sessions() as session:
            earlier = routing_context(session, channel=channel, ts=ts).earlier
        if earlier is None:
            raise
        return earlier


def _count(deps: BotDeps, result: Classification | None, routed_to: str | None) -> None:
    if result is not None:
        deps.metrics.latency.observe(result.latency_ms / 1000)
    outcome = "out_of_scope" if result is not None and result.none_of_these else "routed" if routed_to else "triaged"
    deps.metrics.messages.labels(outcome=outcome).inc()
    if routed_to:
        deps.metrics.routed.labels(department=routed_to).inc()


def _audit(deps: BotDeps, context: RoutingContext, result: Classification | None) -> bool:
    """Whether agents are asked to audit this message, by the department it went or most likely goes to
    and by who routed it (the baseline's routes are sampled more: see bot/audits.py)."""
    rate = deps.rules.audit_rate
    return rate > 0 and should_audit(deps.audit_rng, result, context.holdout, rate,
                                     cold_start_rate=deps.rules.cold_start_audit_rate)


def _ask(deps: BotDeps, context: RoutingContext, result: Classification) -> bool:
    """Whether agents are asked about this routed message: it is among those the model was least sure of."""
    return should_ask(top_two_margin(result.scores), context.margins, context.asked, deps.rules.ask_rate)


def forward(client: WebClient, deps: BotDeps, holder: Holder, *, key: str, to_channel: str, department: str,
            user: str | None, channel: str, ts: str, text: str, confidence: float | None = None,
            by_agent: str | None = None, why: str | None = None, about: SlackMessage | None = None,
            view: blocks.Blocks | None = None) -> None:
    """Posts the query in a department's (or the triage) channel with a link back, once. Without a
    permalink (Slack would not give one) the post still names the channel the message is in.
    `about`: the stored message it copies (reactions and buttons on the copy then act on it); `view`: the
    agents' view under the quote (bot/copies.py), which then says what the head would."""
    done = posted(deps.sessions, key)
    if done is not None and done.ts is not None:
        return
    check_held(deps.sessions, holder)
    try:
        permalink = client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except SlackApiError as exc:
        log.warning("no permalink for %s/%s (%s): forwarding without it", channel, ts, exc.response.get("error"))
        permalink = None
    head, body = blocks.forwarded(department, user=user, channel=channel, text=text, permalink=permalink,
                                  by_agent=by_agent, confidence=confidence, why="" if view else why)
    post_once(client, deps.sessions, holder, key=key, channel=to_channel, text=head, blocks=body + (view or []),
              unfurl_links=False, about=about)


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
