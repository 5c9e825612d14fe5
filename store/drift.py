"""The counts behind the drift alarm, and the alarms themselves (raised once per department and model).

A department's live misroute evidence is the messages the active model routed to it in the window
whose label in force now names another department (or none), given by an agent's correction or
an audit. The alarm's test is in bot/drift.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from store.tables import Alert, Department, Label, LabelSource, Prediction, SlackMessage

DRIFT = "drift"


@dataclass(frozen=True)
class RoutedWindow:
    routed: int  # messages the model routed to the department in the window
    corrected: int  # of those, how many now carry another department's label from an agent or an audit


def routed_window(session: Session, *, department: str, model_id: int, since: datetime) -> RoutedWindow:
    routed = (select(SlackMessage.query_id)
              .join(Prediction, col(Prediction.id) == SlackMessage.prediction_id)
              .where(SlackMessage.routed_to == department, Prediction.model_version_id == model_id,
                     col(SlackMessage.created_at) >= since))
    query_ids = set(session.exec(routed).all())
    if not query_ids:
        return RoutedWindow(0, 0)
    in_force = (select(func.max(Label.id)).where(col(Label.query_id).in_(query_ids), col(Label.withdrawn_at).is_(None))
                .group_by(col(Label.query_id)))
    corrected = session.exec(
        select(func.count()).select_from(Label)
        .join(Department, col(Department.id) == Label.department_id)
        .where(col(Label.id).in_(in_force), Department.name != department,
               col(Label.source).in_([LabelSource.AGENT, LabelSource.AUDIT]))
    ).one()
    return RoutedWindow(len(query_ids), int(corrected))


def raise_alert(session: Session, *, department: str, model_id: int, details: dict[str, Any]) -> Alert | None:
    """Records the alarm; None when this department's alarm for this model was raised already (by
    this process or another replica), so it is posted once."""
    alert = Alert(kind=DRIFT, department=department, model_id=model_id, details=details)
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:
        return None
    return alert


def recent_alerts(session: Session, *, limit: int = 5) -> list[Alert]:
    return list(session.exec(select(Alert).order_by(col(Alert.id).desc()).limit(limit)).all())
