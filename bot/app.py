"""The Bolt app: listeners wired to the handlers, each event's work done once whatever Slack redelivers.

A global middleware claims each event in the store before Bolt acknowledges it, so a store that
cannot take the claim answers 503 and Slack sends the event again; the work then runs after the
200 (`process_before_response=False`), durably (bot/delivery.py). Signature checks stay on for
HTTP; Bolt refuses a bad or stale signature before any middleware of ours runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot import approvals, blocks, commands, department_menu, reactions
from bot.apology import apologise_for_command
from bot.delivery import Delivery
from bot.deps import BotDeps
from bot.home import HomeTab
from core.vocabulary import APPROVE_ACTION, REJECT_ACTION

log = logging.getLogger(__name__)


def with_team(body: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The event with the workspace that received it (`receiving_team`): a message whose author's
    `user_team` differs is from another organisation (Slack Connect), and its thread never shows
    the agents' view. The claimed payload keeps it, so a retry knows it too."""
    return {**event, "receiving_team": body.get("team_id")} if body.get("team_id") else event


def build_app(deps: BotDeps, *, client: WebClient, signing_secret: str | None,
              delivery: Delivery | None = None, listener_executor: Executor | None = None) -> App:
    """The Bolt app. Event work goes through `delivery` (one is made when none is given), with
    `client`: Bolt's per-request clients are not used, so the one client the outbox also uses
    does every Slack call. `listener_executor` runs the work after the acknowledgement (Bolt's
    default pool when None; tests hand in one they can wait on)."""
    app = App(client=client, signing_secret=signing_secret or "", process_before_response=False,
              request_verification_enabled=signing_secret is not None, listener_executor=listener_executor)
    home = HomeTab(deps)
    delivery = delivery or Delivery(deps, client)

    @app.middleware
    def claim_before_ack(body: dict[str, Any], context: dict[str, Any], next: Callable[[], None]) -> Any:
        """Runs before Bolt acknowledges: an event the store cannot claim gets a 503, so that Slack
        sends it again, instead of a 200 for work that would then be lost."""
        event = body.get("event") if body.get("type") == "event_callback" else None
        if event is None or not body.get("event_id") or not delivery.wanted(event):
            return next()
        try:
            context["claimed"] = delivery.claim(body["event_id"], with_team(body, event))
        except Exception:
            log.exception("could not claim event %s: answering 503 so that Slack sends it again", body["event_id"])
            return BoltResponse(status=503, body="")
        if not context["claimed"]:
            log.info("event %s already handled or in hand: ignoring this delivery", body["event_id"])
        return next()

    def work(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> None:
        if context.get("claimed"):
            delivery.run(body["event_id"], with_team(body, event))

    app.event("message")(work)
    app.event("reaction_added")(work)
    app.event("reaction_removed")(work)

    def on_group_changed(event: dict[str, Any]) -> None:
        """Someone joined or left a user group: the roster reads it again now (nothing durable: the roster
        reads every group again within minutes anyway)."""
        if deps.roster is not None:
            deps.roster.group_changed(event)

    def on_channel_members_changed(event: dict[str, Any]) -> None:
        """Someone joined or left a channel: a department's makes or unmakes an agent, with the setting on."""
        if deps.roster is not None:
            deps.roster.channel_changed(event)

    app.event("subteam_members_changed")(on_group_changed)
    app.event("member_joined_channel")(on_channel_members_changed)
    app.event("member_left_channel")(on_channel_members_changed)

    def on_audit(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        reactions.audit_answered(deps, delivery.client, body, action, delivery.holder(None))

    app.action(blocks.AUDIT_RIGHT)(on_audit)
    app.action(blocks.AUDIT_DEPARTMENT)(on_audit)
    app.action(blocks.AUDIT_NONE)(on_audit)

    @app.options(blocks.AUDIT_DEPARTMENT)
    def on_department_typed(ack: Callable[..., None], body: dict[str, Any]) -> None:
        """More departments than a static menu holds: the audit menu asks for those matching what was typed."""
        department_menu.suggest(deps, ack, body)

    @app.action(APPROVE_ACTION)
    def on_approve(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        approvals.on_button(deps, delivery.client, body, action, approve=True)

    @app.action(REJECT_ACTION)
    def on_reject(ack: Callable[..., None], body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        approvals.on_button(deps, delivery.client, body, action, approve=False)

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
