"""What the store knows that an operator graphs: runs by outcome, events waiting for a retry, requests
waiting for the trainer. Read at each scrape of `/metrics`, so every bot replica reports the same
store-wide values."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from store.tables import SlackEvent, TrainingRequest, TrainingRun


@dataclass(frozen=True)
class StoreGauges:
    runs_by_outcome: dict[str, int]
    events_waiting_retry: int  # handling failed after Slack's acknowledgement; the outbox retries them
    events_handed_off: int  # retries ran out: handed to people (kept a day, as every finished event)
    events_abandoned: int  # even the hand-off failed: an operator must look
    retrain_requests_waiting: int


def store_gauges(session: Session) -> StoreGauges:
    runs = dict(session.exec(select(TrainingRun.status, func.count()).group_by(col(TrainingRun.status))).all())
    waiting = session.exec(select(func.count()).select_from(SlackEvent).where(
        col(SlackEvent.done_at).is_(None), col(SlackEvent.gave_up_at).is_(None),
        col(SlackEvent.retry_at).is_not(None))).one()
    handed_off = session.exec(select(func.count()).select_from(SlackEvent).where(
        col(SlackEvent.gave_up_at).is_not(None), col(SlackEvent.done_at).is_not(None))).one()
    abandoned = session.exec(select(func.count()).select_from(SlackEvent).where(
        col(SlackEvent.gave_up_at).is_not(None), col(SlackEvent.done_at).is_(None))).one()
    requests = session.exec(select(func.count()).select_from(TrainingRequest).where(
        col(TrainingRequest.finished_at).is_(None))).one()
    return StoreGauges(runs_by_outcome={str(getattr(k, "value", k)): int(v) for k, v in runs.items()},
                       events_waiting_retry=int(waiting), events_handed_off=int(handed_off),
                       events_abandoned=int(abandoned),
                       retrain_requests_waiting=int(requests))
