"""Scheduled retraining: a cron (nightly by default) and a count of new labels, both running the
same `run_training` that `switchboard train` and the slash command call.

The store's lock keeps runs single across processes; here `max_instances=1` and `coalesce` keep a
slow run from queueing copies of itself. A run that fails is already recorded as failed by the
pipeline; the scheduler logs it and carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.settings import Settings, default_of
from store.db import SessionFactory, transaction
from store.examples import count_labels_since
from store.retention import expire_texts
from store.run_report import RunReport
from store.runs import TRAINING_LOCK, last_trained_at, lock_held

log = logging.getLogger(__name__)

RunNow = Callable[[str], RunReport]


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str = default_of("retrain_cron")
    label_threshold: int = default_of("retrain_after_labels")
    check_seconds: float = 60.0
    retention_days: int | None = None  # unlabelled texts older than this are deleted, hourly

    @classmethod
    def of(cls, settings: Settings, *, check_seconds: float = 60.0) -> ScheduleConfig:
        return cls(cron=settings.retrain_cron, label_threshold=settings.retrain_after_labels,
                   check_seconds=check_seconds, retention_days=settings.retention_days)


def pending_labels(sessions: SessionFactory) -> int:
    """People's labels since the last run that trained: what the label-count trigger counts."""
    with sessions() as session:
        return count_labels_since(session, last_trained_at(session), by_people=True)


def run_if_enough_labels(sessions: SessionFactory, run_now: RunNow, threshold: int) -> RunReport | None:
    """Starts a run when `threshold` labels are waiting and no run holds the lock; else None."""
    with sessions() as session:
        busy = lock_held(session, name=TRAINING_LOCK)
    if busy or pending_labels(sessions) < threshold:
        return None
    return run_guarded(run_now, "label-threshold")


def run_guarded(run_now: RunNow, trigger: str) -> RunReport | None:
    from trainer.pipeline import TrainingBusy

    try:
        report = run_now(trigger)
    except TrainingBusy:
        log.info("%s retrain skipped: a run is already in progress", trigger)
        return None
    except Exception:
        log.exception("%s retrain failed; the active model is unchanged", trigger)
        return None
    log.info("%s retrain finished: %s", trigger, report.reason)
    return report


def expire_old_texts(sessions: SessionFactory, days: int, now: datetime | None = None) -> int:
    """The retention job: deletes the texts of unlabelled messages older than `days` (store/retention.py)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with transaction(sessions) as session:
        expired = expire_texts(session, received_before=cutoff)
    if expired:
        log.info("retention: deleted the texts of %d unlabelled messages older than %d days", expired, days)
    return expired


def build_scheduler(sessions: SessionFactory, run_now: RunNow, config: ScheduleConfig | None = None) -> Any:
    """A started-later APScheduler BackgroundScheduler with the two triggers; the caller starts it."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    config = config or ScheduleConfig()
    scheduler = BackgroundScheduler(timezone="UTC")
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 3600}
    scheduler.add_job(run_guarded, CronTrigger.from_crontab(config.cron, timezone="UTC"),
                      args=[run_now, "schedule"], id="nightly-retrain", **common)
    scheduler.add_job(run_if_enough_labels, "interval", seconds=config.check_seconds,
                      args=[sessions, run_now, config.label_threshold], id="label-count-retrain", **common)
    if config.retention_days:
        scheduler.add_job(expire_old_texts, "interval", hours=1, next_run_time=datetime.now(UTC),
                          args=[sessions, config.retention_days], id="retention", **common)
    return scheduler
