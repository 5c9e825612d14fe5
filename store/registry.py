"""The adapter registry. Promotion and rollback move the one active pointer in a single transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.db import SessionFactory, transaction
from store.examples import StoreError
from store.tables import ModelStatus, ModelVersion, Registry, utcnow


def register_model(
    session: Session,
    *,
    adapter_path: str,
    base_model: str,
    labels: list[str],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    parent_id: int | None,
) -> ModelVersion:
    model = ModelVersion(
        adapter_path=adapter_path,
        base_model=base_model,
        labels=labels,
        hyperparameters=hyperparameters,
        metrics=metrics,
        parent_id=parent_id,
    )
    session.add(model)
    session.flush()
    return model


def list_models(session: Session) -> list[ModelVersion]:
    return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.id))))


def get_model(session: Session, *, model_id: int) -> ModelVersion:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise StoreError(f"no model with id {model_id}")
    return model


def active_model(session: Session) -> ModelVersion | None:
    pointer = session.get(Registry, 1)
    if pointer is None or pointer.active_model_id is None:
        return None
    return session.get(ModelVersion, pointer.active_model_id)


class ActiveModelMoved(StoreError):
    """The active pointer is not where the caller last saw it: someone promoted or rolled back meanwhile."""


_UNCHECKED = object()


def promote(session: Session, *, model_id: int, by: str | None = None,
            if_active_is: int | object | None = _UNCHECKED) -> ModelVersion:
    """Makes `model_id` active; the model it replaces is retired and stays for rollback.

    `if_active_is`: promote only if the active model is still this one (None: no model), else
    raise `ActiveModelMoved`. A training run passes the model it was gated against, so an admin's
    rollback or promotion during the run is never undone by it.
    """
    model = get_model(session, model_id=model_id)
    current = active_model(session)
    seen = current.id if current else None
    if if_active_is is not _UNCHECKED and seen != if_active_is:
        raise ActiveModelMoved(f"the active model changed during the run (model {if_active_is} when it began, "
                               f"model {seen} now)")
    if current is not None and current.id == model.id:
        return model
    model.promoted_at = utcnow()
    _move_pointer(session, to=model, retire_as=ModelStatus.RETIRED, by=by, expected=seen)
    return model


def rollback(session: Session, *, by: str | None = None) -> ModelVersion:
    """Restores the model that was active before the current one.

    The current model is marked rejected, so a second rollback goes further back instead of
    returning to it; `promote` can still bring it back on purpose.
    """
    current = active_model(session)
    if current is None:
        raise StoreError("no active model to roll back from")
    earlier = session.exec(
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelStatus.RETIRED,
            col(ModelVersion.promoted_at).is_not(None),
            col(ModelVersion.promoted_at) < current.promoted_at,
        )
        .order_by(col(ModelVersion.promoted_at).desc())
    ).first()
    if earlier is None:
        raise StoreError(f"model {current.id} is the first ever active: nothing to roll back to")
    _move_pointer(session, to=earlier, retire_as=ModelStatus.REJECTED, by=by, expected=current.id)
    return earlier


def _move_pointer(session: Session, *, to: ModelVersion, retire_as: ModelStatus, by: str | None,
                  expected: int | None) -> None:
    """Compare-and-set: the pointer moves only from `expected`, the model the caller read as active.
    A conditional UPDATE, so that two transactions racing on SQLite or Postgres cannot both win:
    the loser's WHERE no longer matches and it raises `ActiveModelMoved`, its transaction undone."""
    now = utcnow()
    if session.get(Registry, 1) is None:
        session.add(Registry(id=1, active_model_id=to.id, changed_at=now, changed_by=by))
    else:
        moved = session.exec(  # type: ignore[call-overload]
            update(Registry)
            .where(col(Registry.id) == 1,
                   col(Registry.active_model_id).is_(None) if expected is None
                   else col(Registry.active_model_id) == expected)
            .values(active_model_id=to.id, changed_at=now, changed_by=by)
            .execution_options(synchronize_session="fetch")
        )
        if not moved.rowcount:
            raise ActiveModelMoved("the active model changed while this move was being made; nothing moved")
    if expected is not None:
        previous = get_model(session, model_id=expected)
        previous.status = retire_as
        session.add(previous)
    to.status = ModelStatus.ACTIVE
    session.add(to)
    session.flush()


AdapterCheck = Callable[[str], object]  # raises when the adapter folder at that path cannot be served


def promote_checked(sessions: SessionFactory, *, model_id: int, by: str, check: AdapterCheck) -> ModelVersion:
    """An admin's promotion: the adapter folder is checked in the same transaction, so a missing or
    corrupt folder leaves the pointer where it was."""
    with transaction(sessions) as session:
        check(get_model(session, model_id=model_id).adapter_path)
        return promote(session, model_id=model_id, by=by)


def rollback_checked(sessions: SessionFactory, *, by: str, check: AdapterCheck) -> ModelVersion:
    with transaction(sessions) as session:
        model = rollback(session, by=by)
        check(model.adapter_path)
        return model


ActiveAdapter = tuple[int, str, str]  # model id, adapter folder, base model name


def registry_lookup(sessions: SessionFactory) -> Callable[[], ActiveAdapter | None]:
    """Reads the active pointer with a short session each time: cheap enough for a serving process
    to poll every second or two (classifier/serving/active_router.py)."""

    def lookup() -> ActiveAdapter | None:
        with sessions() as session:
            model = active_model(session)
            if model is None or model.id is None:
                return None
            return model.id, model.adapter_path, model.base_model

    return lookup
