"""Each label's history, for `switchboard labels`: who gave it, when, from where, and what became of it.

Labels are never deleted: a newer label on the same message supersedes the older one, and an
agent who takes a reaction back withdraws theirs. This reads that trail back, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from store.tables import Department, Label, Query


@dataclass(frozen=True)
class LabelEvent:
    label_id: int
    query_id: int
    text: str
    department: str
    source: str
    author: str | None
    created_at: datetime
    state: str  # "in force", "superseded" (a newer label replaced it) or "withdrawn"
    withdrawn_at: datetime | None


def label_history(session: Session, *, text: str | None = None, department: str | None = None,
                  limit: int = 200) -> list[LabelEvent]:
    """Labels, newest first; `text` matches part of a message (case-insensitive), `department` by name."""
    stmt = (
        select(Label, Query, Department)
        .join(Query, col(Query.id) == Label.query_id)
        .join(Department, col(Department.id) == Label.department_id)
        .order_by(col(Label.id).desc())
        .limit(limit)
    )
    if text:
        stmt = stmt.where(func.lower(Query.text).contains(text.lower()))
    if department:
        stmt = stmt.where(func.lower(Department.name) == department.lower())
    rows = session.exec(stmt).all()
    in_force = _in_force(session, {q.id for _, q, _ in rows if q.id is not None})
    return [
        LabelEvent(label_id=lab.id, query_id=q.id, text=q.text, department=d.name,  # type: ignore[arg-type]
                   source=str(lab.source.value), author=lab.author, created_at=lab.created_at,
                   state=("withdrawn" if lab.withdrawn_at is not None else
                          "in force" if in_force.get(q.id) == lab.id else "superseded"),  # type: ignore[arg-type]
                   withdrawn_at=lab.withdrawn_at)
        for lab, q, d in rows
    ]


def _in_force(session: Session, query_ids: set[int]) -> dict[int, int]:
    """query id -> the id of its label in force (the newest not withdrawn)."""
    if not query_ids:
        return {}
    stmt = (select(Label.query_id, func.max(Label.id))
            .where(col(Label.query_id).in_(query_ids), col(Label.withdrawn_at).is_(None))
            .group_by(col(Label.query_id)))
    return {query_id: label_id for query_id, label_id in session.exec(stmt).all() if label_id is not None}
