"""The bot's outbox worker: retries, in the background, the events whose handling failed after Slack's
acknowledgement (store/outbox.py), so a customer's message is answered even when the first reply
failed or the process died with events in hand."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from slack_sdk import WebClient

from store.db import SessionFactory
from store.outbox import MAX_ATTEMPTS, defer_event, due_events, take
from store.slack import finish_event

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], WebClient, str], None]  # (event, client, event_id)


class OutboxWorker:
    def __init__(self, sessions: SessionFactory, client: WebClient, handlers: Mapping[str, Handler], *,
                 poll_seconds: float = 5.0) -> None:
        self._sessions, self._client, self._handlers = sessions, client, handlers
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_due(self) -> int:
        """Handles every due event this process can take; returns how many were handled."""
        handled = 0
        for due in due_events(self._sessions):
            if not take(self._sessions, due):
                continue  # another replica took it
            event = due.payload
            handler = self._handlers.get(str(event.get("type")))
            try:
                if handler is None:
                    raise LookupError(f"no handler for a {event.get('type')!r} event")
                handler(event, self._client, due.event_id)
            except Exception as exc:
                if not defer_event(self._sessions, event_id=due.event_id, error=f"{type(exc).__name__}: {exc}"):
                    log.error("gave up on event %s after %d attempts: %s", due.event_id, MAX_ATTEMPTS, exc)
                continue
            finish_event(self._sessions, event_id=due.event_id)
            log.info("event %s handled on retry %d", due.event_id, due.attempts + 1)
            handled += 1
        return handled

    def start(self) -> OutboxWorker:
        self._thread = threading.Thread(target=self._loop, name="switchboard-outbox", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.run_due()
            except Exception:  # a locked database must not kill the worker
                log.exception("outbox check failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
