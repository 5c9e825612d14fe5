"""Candidates on their way to routing: in shadow on live messages, then (with `SWITCHBOARD_PROMOTION=approve`)
waiting for an admin. The model's and its run's statuses say where a candidate is; every move is a
compare-and-set on them, so a click, a slash command and the trainer deciding at once move it once.

A candidate's rival is the model it was gated against (its `parent_id`; None: the baseline or
nothing). Promotion checks that this model is still the active one, so an admin's rollback during the
window is never undone by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from store.examples import StoreError
from store.registry import ActiveModelMoved, AdapterCheck, get_model, promote
from store.slack import standing_labels
from store.tables import (
    ModelStatus,
    ModelVersion,
    Prediction,
    Query,
    RunStatus,
    ShadowPrediction,
    SlackMessage,
    TrainingRun,
    utcnow,
)

PENDING = (ModelStatus.SHADOW, ModelStatus.AWAITING_APPROVAL)


class NotPending(StoreError):
    """The candidate is not (or no longer) where the caller expected: someone decided it already."""


def pending_candidate(session: Session) -> ModelVersion | None:
    """The candidate in shadow or waiting for approval, if any (there is at most one)."""
    return session.exec(select(ModelVersion).where(col(ModelVersion.status).in_(PENDING))
                        .order_by(col(ModelVersion.id).desc())).first()


def shadow_candidate(session: Session) -> ModelVersion | None:
    model = pending_candidate(session)
    return model if model is not None and model.status == ModelStatus.SHADOW else None


def run_of(session: Session, model_id: int) -> TrainingRun | None:
    return session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model_id)).first()


def record_shadow(session: Session, *, model_id: int, query_id: int, department: str, confidence: float,
                  none_of_these: bool, latency_ms: float) -> bool:
    """Keeps the candidate's answer to a live message; False when it already had one (a redelivery)."""
    try:
        with session.begin_nested():
            session.add(ShadowPrediction(model_version_id=model_id, query_id=query_id, department=department,
                                         confidence=confidence, none_of_these=none_of_these,
                                         latency_ms=latency_ms))
    except IntegrityError:
        return False
    return True


def has_shadow(session: Session, *, model_id: int, query_id: int) -> bool:
    return session.exec(select(ShadowPrediction.id).where(ShadowPrediction.model_version_id == model_id,
                                                          ShadowPrediction.query_id == query_id)).first() is not None


def shadow_count(session: Session, model_id: int) -> int:
    return int(session.exec(select(func.count()).select_from(ShadowPrediction)
                            .where(ShadowPrediction.model_version_id == model_id)).one())


@dataclass(frozen=True)
class ShadowRow:
    """One live message in a candidate's window: what routed it, what the candidate said, and the
    department a person gave it since (None when no one has)."""

    query_id: int
    live: str | None  # the router's answer; None when nothing classified it
    shadow: str
    label: str | None
    label_source: str | None


def shadow_rows(session: Session, model_id: int) -> list[ShadowRow]:
    rows = session.exec(
        select(ShadowPrediction, Prediction)
        .join(SlackMessage, col(SlackMessage.query_id) == ShadowPrediction.query_id)
        .join(Prediction, col(Prediction.id) == SlackMessage.prediction_id, isouter=True)
        .where(ShadowPrediction.model_version_id == model_id)
        .order_by(col(ShadowPrediction.id))).all()
    labels = standing_labels(session, {shadow.query_id for shadow, _ in rows})
    out, seen = [], set()
    for shadow, live in rows:
        if shadow.query_id in seen:  # the same text posted twice: one message of the window
            continue
        seen.add(shadow.query_id)
        label = labels.get(shadow.query_id)
        # Both sides by their likeliest department: the live prediction keeps no "none of these" verdict.
        out.append(ShadowRow(shadow.query_id, live.department if live else None, shadow.department,
                             label.department if label else None, label.source.value if label else None))
    return out


def disagreements(rows: list[ShadowRow]) -> tuple[float, list[int], list[int]]:
    """The share of messages both answered alike, and of the disagreements people labelled, the query
    ids only the candidate got right and those only the live router got right."""
    agreement = sum(r.live == r.shadow for r in rows) / len(rows) if rows else 1.0
    labelled = [r for r in rows if r.label is not None and r.live != r.shadow]
    return (agreement, [r.query_id for r in labelled if r.shadow == r.label],
            [r.query_id for r in labelled if r.live == r.label])


def pending_summary(session: Session) -> dict[str, Any] | None:
    """The candidate in shadow or waiting for approval, for `status` and the Home tab: its progress
    and the comparison so far."""
    model = pending_candidate(session)
    if model is None or model.id is None:
        return None
    run = run_of(session, model.id)
    summary: dict[str, Any] = {"id": model.id, "stage": model.status.value, "rival": model.parent_id,
                               "holdout_macro_f1": model.metrics.get("macro_f1"), "run_id": run.id if run else None}
    if model.status == ModelStatus.SHADOW:
        rows = shadow_rows(session, model.id)
        agreement, only_candidate, only_live = disagreements(rows)
        window = ((run.report or {}) if run else {}).get("shadow_window")
        summary.update(shadow_messages=len(rows), window=window, agreement=round(agreement, 4),
                       labelled=sum(r.label is not None for r in rows),
                       only_candidate_right=len(only_candidate), only_live_right=len(only_live))
    return summary


def await_approval(session: Session, *, model_id: int, reason: str, evidence: dict[str, Any]) -> None:
    """Shadow ended and found nothing against the candidate: it waits for an admin (compare-and-set)."""
    moved = session.exec(  # type: ignore[call-overload]
        update(ModelVersion).where(col(ModelVersion.id) == model_id, col(ModelVersion.status) == ModelStatus.SHADOW)
        .values(status=ModelStatus.AWAITING_APPROVAL).execution_options(synchronize_session="fetch"))
    if not moved.rowcount:
        raise NotPending(f"model {model_id} left shadow meanwhile: nothing changed")
    run = run_of(session, model_id)
    if run is not None:
        run.status, run.reason = RunStatus.AWAITING_APPROVAL, reason
        run.report = {**(run.report or {}), "reason": reason, "status": RunStatus.AWAITING_APPROVAL.value,
                      "shadow": evidence}
        session.add(run)
    session.flush()


def claim_approval_post(session: Session, model_id: int) -> bool:
    """True once per candidate waiting for approval: the caller posts the request to the admins."""
    run = run_of(session, model_id)
    model = session.get(ModelVersion, model_id)
    if run is None or model is None or model.status != ModelStatus.AWAITING_APPROVAL:
        return False
    claimed = session.exec(  # type: ignore[call-overload]
        update(TrainingRun).where(col(TrainingRun.id) == run.id, col(TrainingRun.approval_posted_at).is_(None))
        .values(approval_posted_at=utcnow()).execution_options(synchronize_session="fetch"))
    return bool(claimed.rowcount)


def query_texts(session: Session, query_ids: list[int]) -> dict[int, str]:
    if not query_ids:
        return {}
    return {q.id: q.text for q in session.exec(select(Query).where(col(Query.id).in_(query_ids))) if q.id is not None}


def awaiting_approval(session: Session) -> list[ModelVersion]:
    return list(session.exec(select(ModelVersion).where(ModelVersion.status == ModelStatus.AWAITING_APPROVAL)))


def start_pending(session: Session, *, model_id: int, stage: ModelStatus) -> list[int]:
    """The gated candidate enters shadow (or approval); an older pending one is superseded by it.
    Returns the ids of the candidates it superseded."""
    superseded = []
    for older in session.exec(select(ModelVersion).where(col(ModelVersion.status).in_(PENDING),
                                                         ModelVersion.id != model_id)).all():
        assert older.id is not None
        _decide(session, older, expected=ModelStatus(older.status), promoted=False, by="trainer",
                reason=f"not promoted: superseded by model {model_id}, a newer candidate")
        superseded.append(older.id)
    model = get_model(session, model_id=model_id)
    model.status = stage
    session.add(model)
    session.flush()
    return superseded


@dataclass(frozen=True)
class Decided:
    """A pending candidate's end: promoted or not, and the reason written to its run."""

    model: ModelVersion
    promoted: bool
    reason: str


def decide(session: Session, *, model_id: int, expected: ModelStatus, promote_it: bool, by: str,
           reason: str, evidence: dict[str, Any] | None = None, check: AdapterCheck | None = None) -> Decided:
    """Moves a pending candidate on: promoted (if its rival is still active) or refused. Raises
    `NotPending` when it is not in `expected` any more, so a second decision changes nothing;
    `check` (an admin's promotion) refuses an adapter folder that cannot be served, changing nothing."""
    model = get_model(session, model_id=model_id)
    if model.status != expected:
        raise NotPending(f"model {model_id} is {where(model.status)}, not {where(expected)}: nothing changed")
    if promote_it and check is not None:
        check(model.adapter_path)
    return _decide(session, model, expected=expected, promoted=promote_it, by=by, reason=reason, evidence=evidence)


def decide_by_admin(session: Session, *, model_id: int | None, approve: bool, by: str,
                    check: AdapterCheck | None = None) -> Decided:
    """An admin's Approve (of a candidate waiting for approval) or Reject (also of one in shadow);
    `model_id` None: the pending candidate. Raises `NotPending`, changing nothing, when there is none to decide."""
    pending = pending_candidate(session)
    model_id = model_id if model_id is not None else pending.id if pending is not None else None
    if model_id is None:
        raise NotPending("no candidate is in shadow or waiting for approval")
    stage = ModelStatus(pending.status) if pending is not None and pending.id == model_id else None
    if stage is None:
        raise NotPending(f"model {model_id} is not in shadow or waiting for approval")
    if approve and stage != ModelStatus.AWAITING_APPROVAL:
        raise NotPending(f"model {model_id} is in shadow: it can be approved once its window ends")
    verdict = f"promoted: approved by {by}" if approve else f"not promoted: rejected by {by}"
    return decide(session, model_id=model_id, expected=stage, promote_it=approve, by=by, reason=verdict,
                  check=check)


def _decide(session: Session, model: ModelVersion, *, expected: ModelStatus, promoted: bool, by: str,
            reason: str, evidence: dict[str, Any] | None = None) -> Decided:
    assert model.id is not None
    claimed = session.exec(  # type: ignore[call-overload]
        update(ModelVersion).where(col(ModelVersion.id) == model.id, col(ModelVersion.status) == expected)
        .values(status=ModelStatus.REJECTED).execution_options(synchronize_session="fetch"))
    if not claimed.rowcount:
        raise NotPending(f"model {model.id} was decided by someone else meanwhile: nothing changed")
    session.refresh(model)
    if promoted:
        try:
            with session.begin_nested():
                promote(session, model_id=model.id, by=by, if_active_is=model.parent_id)
        except ActiveModelMoved as exc:
            promoted, reason = False, f"not promoted: {exc}"
            model.status = ModelStatus.REJECTED
            session.add(model)
    run = run_of(session, model.id)
    if run is not None:
        report = dict(run.report or {})
        report.update(promoted=promoted, reason=reason, status=(RunStatus.PROMOTED if promoted
                                                                 else RunStatus.NOT_PROMOTED).value,
                      decision={"by": by, "at": utcnow().isoformat(), "stage": expected.value, "promoted": promoted},
                      **({"shadow": evidence} if evidence else {}))
        run.status = RunStatus.PROMOTED if promoted else RunStatus.NOT_PROMOTED
        run.reason, run.report = reason, report
        session.add(run)
    session.flush()
    return Decided(model, promoted, reason)


def where(status: ModelStatus | str) -> str:
    return {"shadow": "in shadow", "awaiting_approval": "waiting for approval"}.get(str(status), str(status))
