"""The baseline's answers, kept per (query, prompt version, model), so each is paid for once across
runs, crashes and the bot's cold-start routing; and the routed messages nobody has labelled yet,
which distillation asks it about."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.examples import get_department, label_query
from store.retention import EXPIRED
from store.tables import BaselinePrediction, LabelSource, Query, SlackMessage


def cached_answers(session: Session, *, model: str, version: str, query_ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(query_ids), 500):
        rows = session.exec(select(BaselinePrediction).where(
            BaselinePrediction.model == model, BaselinePrediction.prompt_version == version,
            col(BaselinePrediction.query_id).in_(query_ids[start:start + 500])))
        found.update({row.query_id: row.department for row in rows})
    return found


def cache_answer(sessions: SessionFactory, *, query_id: int, version: str, model: str, department: str,
                 prompt_tokens: int, completion_tokens: int) -> None:
    """Written as it arrives; a second process caching the same answer first is fine."""
    try:
        with transaction(sessions) as session:
            session.add(BaselinePrediction(query_id=query_id, prompt_version=version, model=model,
                                           department=department, prompt_tokens=prompt_tokens,
                                           completion_tokens=completion_tokens))
    except IntegrityError:
        pass


def unlabelled_queries(session: Session, *, routed_before: datetime | None = None) -> list[tuple[int, str]]:
    """Routed messages no one has labelled (no split yet) and no one was asked about (an audit or a question
    waits for a person's answer; an audit may yet land in the holdout), oldest first; with `routed_before`,
    only those older than it (the implicit labels' grace window: agents correct first)."""
    asked = select(SlackMessage.query_id).where(
        (col(SlackMessage.audit_requested).is_(True)) | (col(SlackMessage.ask_requested).is_(True)))
    stmt = select(Query).where(col(Query.split).is_(None), col(Query.id).not_in(asked), col(Query.text) != EXPIRED)
    if routed_before is not None:
        stmt = stmt.where(col(Query.received_at) <= routed_before)
    return [(q.id, q.text) for q in session.exec(stmt.order_by(col(Query.id))) if q.id is not None]


def label_if_unlabelled(session: Session, *, query_id: int, department_name: str, model: str) -> bool:
    """Stores the baseline's label unless a person labelled the query meanwhile; True when stored."""
    query = session.get(Query, query_id)
    department = get_department(session, name=department_name)
    if query is None or query.split is not None or department is None:
        return False
    label_query(session, query=query, department=department, source=LabelSource.BASELINE, author=model)
    return True
