"""The Bolt app: listeners wired to the handlers, each event handled once whatever Slack redelivers.

Bolt acknowledges events before the listener runs (`process_before_response=False`), so the
model and the store work after Slack has its 200. Signature checks stay on for HTTP; Bolt
refuses a bad or stale signature before any listener runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot import blocks, commands, reactions, routing
from bot.apology import apologise_for_command, apologise_for_event
from bot.deps import BotDeps
from bot.home import HomeTab
from store.outbox import defer_event
from store.slack import claim_event, finish_event

log = logging.getLogger(__name__)


def make_client(token: str | None, base_url: str) -> WebClient:
    """A Web API client that waits out rate limits (`Retry-After`) and retries dropped connections."""
    return WebClient(token=token, base_url=base_url, retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=3)])


def event_handlers(deps: BotDeps) -> dict[str, Callable[[dict[str, Any], WebClient, str], None]]:
    """Each event type's handler, for the listeners and the outbox worker (bot/outbox.py) alike."""
    return {
        "message": lambda e, c, event_id: routing.route_message(deps, c, e, event_id=event_id or None),
        "reaction_added": lambda e, c, _: reactions.reaction_added(deps, c, e),
        "reaction_removed": lambda e, c, _: reactions.reaction_removed(deps, c, e),
    }


def build_app(deps: BotDeps, *, client: WebClient, signing_secret: str | None) -> App:
    app = App(client=client, signing_secret=signing_secret or "", process_before_response=False,
              request_verification_enabled=signing_secret is not None)
    home = HomeTab(deps)

    handlers = event_handlers(deps)

    def once(handler: Callable[[dict[str, Any], WebClient, str], None]) -> Callable[..., None]:
        def listener(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
            event_id = body.get("event_id") or ""
            if event_id and not claim_event(deps.sessions, event_id=event_id, payload=event):
                log.info("event %s already handled or in hand: ignoring this delivery", event_id)
                return
            try:
                handler(event, client, event_id)
            except Exception as exc:
                # Slack had its 200 and will not retry: the outbox will, and the user hears it now
                will_retry = bool(event_id) and defer_event(deps.sessions, event_id=event_id,
                                                            error=f"{type(exc).__name__}: {exc}")
                apologise_for_event(client, event, exc, will_retry=will_retry)
                raise
            if event_id:
                finish_event(deps.sessions, event_id=event_id)
        return listener

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        if not routing.is_customer_message(event):
            return
        once(handlers["message"])(body, event, client)

    app.event("reaction_added")(once(handlers["reaction_added"]))
    app.event("reaction_removed")(once(handlers["reaction_removed"]))

    def on_audit(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        reactions.audit_answered(deps, client, body, action)

    app.action(blocks.AUDIT_RIGHT)(on_audit)
    app.action(blocks.AUDIT_DEPARTMENT)(on_audit)
    app.action(blocks.AUDIT_NONE)(on_audit)

    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            home.publish(client, event["user"])

    @app.command("/switchboard")
    def on_command(ack: Callable[..., None], command: dict[str, Any], client: WebClient) -> None:
        commands.handle(deps, client, command, ack)

    @app.error
    def on_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        what = body.get("event", {}).get("type") or body.get("command") or body.get("type")
        log.error("handling %s failed: %s", what, error, exc_info=error)
        if body.get("command"):
            apologise_for_command(client, body, error)

    return app
