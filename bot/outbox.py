"""The bot's outbox worker: takes, in the background, the events whose work is due again (bot/delivery.py):
released after a failure with a retry time that has come, left by a process whose lease ran out, or
whose retries ran out and are now to be handed to people."""

from __future__ import annotations

import logging
import threading

from bot.delivery import Delivery
from store.deliveries import due_events, take

log = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_due(self) -> int:
        """Works every due event this process can take; returns how many it took."""
        delivery, taken = self._delivery, 0
        for due in due_events(delivery.deps.sessions):
            if not take(delivery.deps.sessions, due, owner=delivery.owner, lease=delivery.policy.lease):
                continue  # another replica took it
            taken += 1
            log.info("event %s: attempt %d%s", due.event_id, due.attempts + 1,
                     " (handing it off)" if due.handing_off else "")
            delivery.run(due.event_id, due.payload, handing_off=due.handing_off)
        return taken

    def start(self) -> OutboxWorker:
        self._thread = threading.Thread(target=self._loop, name="switchboard-outbox", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._delivery.policy.poll.total_seconds()):
            try:
                self.run_due()
            except Exception:  # a locked database must not kill the worker
                log.exception("outbox check failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
