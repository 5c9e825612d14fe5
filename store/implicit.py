"""Implicit labels: a route that no agent corrected within the grace window is a label too.

Agents fix the misroutes they see, so a message routed to a department and left alone for a day
was most likely routed right: the loop learns from it at a weight below a person's label
(`SWITCHBOARD_IMPLICIT_WEIGHT`, applied when training). Only messages that were routed (not sent
to triage, not "none of these"), that no one was asked to check (audits and questions get a
person's answer instead, and an audit may yet land in the holdout) and whose text has no label at
all become implicit labels; they only ever train. Any later reaction or audit answer supersedes
one, as any newer label does.

A model must not teach itself its own mistakes: a route the active fine-tuned model made counts
only when it was sure (`min_model_confidence`); the baseline's routes (cold start) and an earlier
model's count as routed, since they are another model's judgement that agents had a day to fix.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from store.examples import get_department, label_query
from store.retention import EXPIRED
from store.tables import LabelSource, Prediction, Query, SlackMessage


def add_implicit_labels(session: Session, *, routed_before: datetime, active_model_id: int | None,
                        min_model_confidence: float) -> int:
    """Labels every silent route older than `routed_before`; returns how many labels it wrote."""
    rows = session.exec(
        select(SlackMessage, Prediction, Query)
        .join(Prediction, col(Prediction.id) == SlackMessage.prediction_id)
        .join(Query, col(Query.id) == SlackMessage.query_id)
        .where(col(SlackMessage.routed_to).is_not(None), col(SlackMessage.audit_requested).is_(False),
               col(SlackMessage.ask_requested).is_(False), col(SlackMessage.created_at) <= routed_before,
               col(Query.split).is_(None), col(Query.text) != EXPIRED)
        .order_by(col(SlackMessage.id)))
    written: set[int] = set()
    for message, prediction, query in rows:
        if query.id in written or prediction.department != message.routed_to:
            continue
        own_route = prediction.model_version_id is not None and prediction.model_version_id == active_model_id
        if own_route and prediction.confidence < min_model_confidence:
            continue
        department = get_department(session, name=message.routed_to or "")
        if department is None or department.out_of_scope:
            continue
        by = (f"baseline {prediction.baseline_model}" if prediction.baseline_model
              else f"model {prediction.model_version_id}")
        label_query(session, query=query, department=department, source=LabelSource.IMPLICIT, author=by)
        assert query.id is not None
        written.add(query.id)
    session.flush()
    return len(written)
