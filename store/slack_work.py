"""Slack deletions owed after forgetting, as durable work: queued in the transaction that deletes the rows,
taken by compare-and-set, retried with backoff, given up on (for people to finish) when retries run out.

Forgetting never waits for Slack: the rows go at once and each of the bot's posts to delete becomes a
`slack_work` row holding where the post is (channel, ts) and why it goes, never its content. Deleting a
post twice does no harm (Slack answers `message_not_found`), so the work needs no owner: taking a row
moves its `retry_at` a lease ahead, and a taker that dies leaves it due again when that passes.
An approval request that quotes a forgotten text (`approval_quotes`) is deleted the same way, and a
candidate still waiting is asked about again, quoting what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.deliveries import RetryPolicy
from store.tables import ApprovalQuote, ModelStatus, ModelVersion, SlackWork, TrainingRun, utcnow

APPROVAL = "approval request"


@dataclass(frozen=True)
class Work:
    id: int
    channel: str
    ts: str
    reason: str
    attempts: int


class Failed(StrEnum):
    RETRY = "retry"
    GAVE_UP = "gave_up"  # retries ran out: people must delete it
    LOST = "lost"  # another taker has it now


def queue_deletions(session: Session, posts: Iterable[tuple[str, str, str]]) -> list[int]:
    """Queues the deletion of each (channel, ts, reason) not queued already; the ids of the work owed for them."""
    ids = []
    for channel, ts, reason in posts:
        found = session.exec(select(SlackWork).where(SlackWork.channel == channel, SlackWork.ts == ts)).first()
        if found is None:
            found = SlackWork(channel=channel, ts=ts, reason=reason)
            session.add(found)
            session.flush()
        elif found.gave_up_at is not None:  # asked again: try again
            found.gave_up_at, found.attempts, found.retry_at = None, 0, utcnow()
            session.add(found)
        assert found.id is not None
        ids.append(found.id)
    return ids


def quote_places(session: Session, *, model_id: int, query_ids: Sequence[int],
                 places: Iterable[tuple[str, str]]) -> None:
    """Records that the approval request for `model_id`, posted at each (channel, ts), quotes these texts."""
    for channel, ts in places:
        for query_id in query_ids:
            session.add(ApprovalQuote(model_id=model_id, query_id=query_id, channel=channel, ts=ts))


def forget_quotes(session: Session, query_ids: Sequence[int]) -> list[tuple[str, str, str]]:
    """The approval requests quoting any of these texts, to delete as (channel, ts, reason): their quote rows go,
    and a candidate still waiting for approval is asked about again (the new request quotes what is left)."""
    if not query_ids:
        return []
    quoting = list(session.exec(select(ApprovalQuote).where(col(ApprovalQuote.query_id).in_(query_ids))))
    places = {(q.channel, q.ts) for q in quoting}
    models = {q.model_id for q in quoting}
    for channel, ts in places:
        session.exec(delete(ApprovalQuote).where(  # type: ignore[call-overload]
            col(ApprovalQuote.channel) == channel, col(ApprovalQuote.ts) == ts))
    for model_id in models:
        model = session.get(ModelVersion, model_id)
        if model is not None and model.status == ModelStatus.AWAITING_APPROVAL:
            session.exec(update(TrainingRun).where(col(TrainingRun.candidate_id) == model_id)  # type: ignore[call-overload]
                         .values(approval_posted_at=None))
    return [(channel, ts, APPROVAL) for channel, ts in sorted(places)]


def due_work(sessions: SessionFactory, *, ids: Sequence[int] | None = None, limit: int = 50) -> list[Work]:
    """Work due now (all of it, or among `ids`), oldest first."""
    with sessions() as session:
        stmt = select(SlackWork).where(col(SlackWork.gave_up_at).is_(None), col(SlackWork.retry_at) <= utcnow())
        if ids is not None:
            stmt = stmt.where(col(SlackWork.id).in_(ids))
        rows = session.exec(stmt.order_by(col(SlackWork.id)).limit(limit))
        return [Work(w.id, w.channel, w.ts, w.reason, w.attempts) for w in rows if w.id is not None]


def take_work(sessions: SessionFactory, work: Work, *, lease: timedelta) -> bool:
    """Compare-and-set on the attempt count: True if this caller does `work` now (nobody took it since it was
    read); it is due again after `lease` unless finished or failed first."""
    now = utcnow()
    with transaction(sessions) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(SlackWork).where(col(SlackWork.id) == work.id, col(SlackWork.attempts) == work.attempts,
                                    col(SlackWork.gave_up_at).is_(None), col(SlackWork.retry_at) <= now)
            .values(attempts=work.attempts + 1, retry_at=now + lease))
        return bool(moved.rowcount)


def finish_work(sessions: SessionFactory, work_id: int) -> None:
    with transaction(sessions) as session:
        session.exec(delete(SlackWork).where(col(SlackWork.id) == work_id))  # type: ignore[call-overload]


def fail_work(sessions: SessionFactory, work: Work, *, error: str, policy: RetryPolicy) -> Failed:
    """The attempt that took `work` (its attempts now `work.attempts + 1`) failed: due again after the policy's
    delay, or given up once the attempts run out."""
    attempts, now = work.attempts + 1, utcnow()
    values: dict[str, object] = {"last_error": error[:300]}
    if attempts >= policy.max_attempts:
        values["gave_up_at"], outcome = now, Failed.GAVE_UP
    else:
        values["retry_at"], outcome = now + policy.delay(attempts), Failed.RETRY
    with transaction(sessions) as session:
        moved = session.exec(update(SlackWork)  # type: ignore[call-overload]
                             .where(col(SlackWork.id) == work.id, col(SlackWork.attempts) == attempts,
                                    col(SlackWork.gave_up_at).is_(None)).values(**values))
        return outcome if moved.rowcount else Failed.LOST


def pending_work(session: Session, ids: Sequence[int] | None = None) -> list[SlackWork]:
    """Deletions still owed (not given up), all or among `ids`."""
    stmt = select(SlackWork).where(col(SlackWork.gave_up_at).is_(None))
    if ids is not None:
        stmt = stmt.where(col(SlackWork.id).in_(ids))
    return list(session.exec(stmt.order_by(col(SlackWork.id))))
