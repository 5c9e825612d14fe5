"""The trainer service: the nightly schedule, the label-count trigger and admins' retrain requests,
in one long-running process apart from the bot (`switchboard trainer`).

The bot only records a request in the store (store/training_requests.py). This service polls for
one every couple of seconds, runs the same `run_training` that `switchboard train` runs, posts the
report to the channel that asked, and marks the request answered. On the same poll it ends a
candidate's full shadow window and asks the admins about a candidate waiting for approval
(trainer/promotion.py, trainer/approval.py). Runs stay single across
processes through the store's training lock; a request whose run could not start because another
run held the lock is given back and taken again when that run ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from store.db import SessionFactory
from store.run_report import RunReport
from store.tables import TrainingRequest
from store.training_requests import (
    answer_request,
    note_trainer_alive,
    note_trainer_stopped,
    release_request,
    take_request,
)
from trainer.approval import Ask, ask_for_approvals
from trainer.gate import GateRules
from trainer.lease import owner_name
from trainer.promotion import settle_shadow
from trainer.report_text import report_lines
from trainer.schedule import ScheduleConfig, build_scheduler

log = logging.getLogger(__name__)

RunNow = Callable[[str], RunReport]
Post = Callable[[str | None, str | None, str], None]  # channel, requesting user, text
ALIVE_TTL = timedelta(seconds=30)


class TrainerService:
    def __init__(self, sessions: SessionFactory, run_now: RunNow, *, post: Post,
                 schedule: ScheduleConfig | None = None, poll_seconds: float = 2.0,
                 rules: GateRules | None = None, ask: Ask | None = None) -> None:
        """`rules`: the promotion rules whose shadow windows this service ends; `ask` posts approval
        requests to the admins (without it they answer from `/switchboard approve` or the shell)."""
        self._sessions = sessions
        self._rules, self._ask = rules, ask
        self._run_now = run_now
        self._post = post
        self._schedule = schedule
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: Any = None
        self.worker = f"{owner_name()}:service"

    def start(self) -> TrainerService:
        if self._schedule is not None:
            self._scheduler = build_scheduler(self._sessions, self._run_now, self._schedule)
            self._scheduler.start()
            log.info("retraining at '%s' UTC and after %d new labels", self._schedule.cron,
                     self._schedule.label_threshold)
        self._thread = threading.Thread(target=self._loop, name="trainer-requests", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._thread is not None:
            self._thread.join(timeout=10)
        note_trainer_stopped(self._sessions, worker=self.worker)

    def _loop(self) -> None:
        while True:
            try:
                note_trainer_alive(self._sessions, worker=self.worker, ttl=ALIVE_TTL)
                self.answer_next()
                self.move_candidates()
            except Exception:  # a database hiccup: logged, tried again at the next poll
                log.exception("the trainer service's poll failed; retrying")
            if self._stop.wait(self._poll_seconds):
                return

    def move_candidates(self) -> None:
        """Ends a full shadow window, then asks the admins about any candidate waiting for them."""
        if self._rules is not None:
            settle_shadow(self._sessions, self._rules)
        if self._ask is not None:
            ask_for_approvals(self._sessions, self._ask)

    def answer_next(self) -> bool:
        """Takes the oldest waiting request, if any, runs it and posts the report; True if it ran one."""
        from trainer.pipeline import TrainingBusy

        request = take_request(self._sessions, worker=self.worker)
        if request is None:
            return False
        assert request.id is not None
        log.info("retrain requested by %s: starting", request.requested_by)
        try:
            report = self._run_now("slack")
        except TrainingBusy:
            release_request(self._sessions, request.id, worker=self.worker)
            log.info("a run holds the training lock: the request waits for it to end")
            return False
        except Exception as exc:
            log.exception("the requested retrain failed")
            self._answer(request, None, f"The retraining run failed ({type(exc).__name__}: {str(exc)[:200]}); "
                                        "the active model is unchanged.")
            return True
        self._answer(request, report.run_id, "\n".join(report_lines(report)))
        return True

    def _answer(self, request: TrainingRequest, run_id: int | None, text: str) -> None:
        assert request.id is not None
        answer_request(self._sessions, request.id, run_id=run_id, outcome=text)
        asked = f"<@{request.requested_by}> asked for a retrain:\n```{text}```"
        self._post(request.channel, request.requested_by, asked)
