"""A Slack event's work, done durably: claimed before Slack's acknowledgement, held under a renewed
lease while it runs, released for a retry when it fails, handed to people when retries run out.

    claim (before the 200) -> run the handler's steps -> finish
                                   | failure: apologise once, release with a retry time
                                   | the message's own event still pending: release to wait for it
                                   | lease lost (another process took over): stop, touch nothing
    outbox (bot/outbox.py): take a due event -> run again (it resumes at the first step not done),
                            or, once the attempts are spent, hand it off (bot/handoff.py)

The lease is short and renewed by one heartbeat thread for every event this process holds, so a
slow step (a rate limit, a slow baseline) keeps its event, and a dead process's events come back
within a lease. A step checks the lease before each Slack call (store/posts.py), so an event is
never worked on by two processes at once. A process that stops mid-step (killed, or a
BaseException such as SystemExit) releases nothing: its lease runs out and another resumes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient

from bot import edits, reactions, routing
from bot.apology import apologise_for_event
from bot.channels import SupportChannels
from bot.deps import BotDeps
from bot.handoff import hand_off
from bot.order import MessagePending
from bot.replies import silent_thread
from store.deliveries import Outcome, RetryPolicy, claim, event_state, finish, release, renew
from store.posts import Holder, NotHeld

log = logging.getLogger(__name__)

Handler = Callable[[BotDeps, WebClient, dict[str, Any], Holder], None]
HANDLERS: Mapping[str, Handler] = {
    "message": edits.on_message,
    "reaction_added": reactions.reaction_added,
    "reaction_removed": reactions.reaction_removed,
}


@dataclass(frozen=True)
class DeliveryPolicy:
    """Timings of the durable path; tests shorten them."""

    lease: timedelta = timedelta(seconds=30)  # a dead process's events come back this soon
    heartbeat: timedelta = timedelta(seconds=10)  # two missed beats before the lease runs out
    poll: timedelta = timedelta(seconds=5)  # how often the outbox looks for due events
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def wanted(event: dict[str, Any], *, channels: SupportChannels) -> bool:
    """Whether an event is work for the bot, and so claimed (its payload, text included, stored) before
    Slack's acknowledgement: a new top-level message in a support channel, an edit or deletion of one,
    a reaction on a message. docs/slack-events.md lists every shape and what becomes of it."""
    kind = event.get("type")
    if kind == "message":
        return ((routing.is_customer_message(event) and channels.routes(str(event.get("channel") or "")))
                or edits.is_customer_edit(event, routes=channels.routes))
    return kind in ("reaction_added", "reaction_removed") and (event.get("item") or {}).get("type") == "message"


class Delivery:
    def __init__(self, deps: BotDeps, client: WebClient, *, policy: DeliveryPolicy | None = None,
                 owner: str | None = None) -> None:
        self.deps, self.client = deps, client
        self.policy = policy or DeliveryPolicy()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.channels = SupportChannels(deps.rules, deps.sessions)

    def wanted(self, event: dict[str, Any]) -> bool:
        return wanted(event, channels=self.channels)

    def holder(self, event_id: str | None) -> Holder:
        return Holder(owner=self.owner, event_id=event_id, lease=self.policy.lease)

    def claim(self, event_id: str, event: dict[str, Any]) -> bool:
        """True if this process does the event's work now; raises if the store cannot record the claim. The stored
        payload's texts are what the store may keep (no card number: core/redact.py stored_text)."""
        return claim(self.deps.sessions, event_id=event_id, payload=self.deps.rules.stored_text.in_payload(event),
                     owner=self.owner, lease=self.policy.lease)

    def run(self, event_id: str, event: dict[str, Any], *, handing_off: bool = False) -> None:
        """Does the work of an event this process holds, then finishes or releases it."""
        holder = self.holder(event_id)
        self._hold(event_id)
        try:
            if handing_off:
                hand_off(self.deps, self.client, event, holder)
            else:
                handler = HANDLERS.get(str(event.get("type")))
                if handler is None:
                    raise LookupError(f"no handler for a {event.get('type')!r} event")
                handler(self.deps, self.client, event, holder)
        except NotHeld:
            log.info("event %s was taken over by another process: leaving it to that one", event_id)
            return
        except MessagePending as exc:
            self._wait(event_id, exc)
            return
        except Exception as exc:
            self._failed(event_id, event, exc, holder, handing_off)
            return
        finally:
            self._let_go(event_id)
        try:
            finish(self.deps.sessions, event_id=event_id, handed_off=handing_off)
        except Exception:
            log.exception("event %s is done but could not be marked so: its lease will run out and a retry "
                          "will find every step done", event_id)

    def _failed(self, event_id: str, event: dict[str, Any], error: Exception, holder: Holder,
                handing_off: bool) -> None:
        log.warning("handling event %s (%s) failed: %s: %s", event_id, event.get("type"), type(error).__name__,
                    error, exc_info=error)
        try:
            state = event_state(self.deps.sessions, event_id)
            if state is not None and not handing_off and state.attempts < self.policy.retry.max_attempts:
                apologise_for_event(self.client, self.deps.sessions, holder, event,
                                    silent_thread=silent_thread(self.deps.rules, event))
            outcome = release(self.deps.sessions, event_id=event_id, owner=self.owner,
                              error=f"{type(error).__name__}: {error}", policy=self.policy.retry)
        except Exception:
            log.exception("could not record the failure of event %s: its lease will run out and it will be "
                          "retried", event_id)
            return
        if outcome == Outcome.HAND_OFF:
            log.warning("event %s failed %d times: handing it to people", event_id, self.policy.retry.max_attempts)
        elif outcome == Outcome.ABANDONED:
            log.error("event %s could not even be handed off: an operator must look (its text is in the "
                      "store's slack_events table)", event_id)

    def _wait(self, event_id: str, pending: MessagePending) -> None:
        """Released to run again after the message's own event, as a failure would be, without an apology:
        nothing failed. Waiting counts as an attempt, so it ends with the retry policy's hand-off."""
        log.info("event %s waits: %s", event_id, pending)
        try:
            outcome = release(self.deps.sessions, event_id=event_id, owner=self.owner, error=f"waiting: {pending}",
                              policy=self.policy.retry)
        except Exception:
            log.exception("could not release event %s to wait: its lease will run out and it will be retried",
                          event_id)
            return
        if outcome == Outcome.HAND_OFF:
            log.warning("event %s waited %d times for its message's event: handing it off", event_id,
                        self.policy.retry.max_attempts)

    def _hold(self, event_id: str) -> None:
        with self._lock:
            self._held.add(event_id)
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="switchboard-lease", daemon=True)
                self._heartbeat.start()

    def _let_go(self, event_id: str) -> None:
        with self._lock:
            self._held.discard(event_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.policy.heartbeat.total_seconds()):
            with self._lock:
                held = sorted(self._held)
            try:
                renew(self.deps.sessions, event_ids=held, owner=self.owner, lease=self.policy.lease)
            except Exception:  # a busy or lost database: the next beat tries again
                log.warning("could not renew the leases of %d events; retrying", len(held), exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
