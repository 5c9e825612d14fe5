"""The bot's outbox worker: takes, in the background, the events whose work is due again (bot/delivery.py):
released after a failure with a retry time that has come, left by a process whose lease ran out, or
whose retries ran out and are now to be handed to people; and the Slack deletions forgetting still owes
(bot/slack_work.py)."""

from __future__ import annotations

import logging
import threading

from bot.delivery import Delivery
from bot.slack_work import SLACK_WORK_RETRY, do_slack_work
from store.deliveries import RetryPolicy, due_events, take

log = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(self, delivery: Delivery, *, slack_work: RetryPolicy = SLACK_WORK_RETRY) -> None:
        self._delivery, self._slack_work = delivery, slack_work
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_due(self) -> int:
        """Works every due event this process can take, then the due Slack deletions; returns how many events
        it took."""
        delivery, taken = self._delivery, 0
        for due in due_events(delivery.deps.sessions):
            if not take(delivery.deps.sessions, due, owner=delivery.owner, lease=delivery.policy.lease):
                continue  # another replica took it
            taken += 1
            log.info("event %s: attempt %d%s", due.event_id, due.attempts + 1,
                     " (handing it off)" if due.handing_off else "")
            delivery.run(due.event_id, due.payload, handing_off=due.handing_off)
        self.run_slack_work()
        return taken

    def run_slack_work(self) -> int:
        """Deletes the posts forgetting still owes that are due; returns how many went."""
        delivery = self._delivery
        done = do_slack_work(delivery.deps.sessions, delivery.client, policy=self._slack_work,
                             lease=delivery.policy.lease, alert_channel=delivery.deps.rules.alert_channel)
        if done.deleted or done.left:
            log.info("Slack deletions owed after forgetting: %d done, %d still owed", done.deleted, len(done.left))
        return done.deleted

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
