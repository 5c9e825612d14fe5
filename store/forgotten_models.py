"""The store's side of models forgetting: which queries are still held, and a model's adapter folder moved.

A model's adapter folder is never edited; forgetting writes a new one without the forgotten rows
(classifier/routing/bank_rows.py) and moves the model's `adapter_path` to it here, in one
compare-and-set, so a serving process's watcher sees the new folder and swaps it in.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.forget import models_with_forgotten_data
from store.tables import ModelVersion, Query

EXPIRED = ""  # a query whose text retention deleted (store/retention.py)
_CHUNK = 500  # ids per IN clause: far below any engine's limit on bound parameters


def held_queries(session: Session, ids: Iterable[int]) -> set[int]:
    """The queries among `ids` whose text the store still holds (forgotten ones are gone, expired ones empty)."""
    wanted, held = sorted(set(ids)), set[int]()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        found = session.exec(select(Query.id).where(col(Query.id).in_(chunk), Query.text != EXPIRED))
        held |= {i for i in found if i is not None}
    return held


def move_adapter(session: Session, *, model_id: int, old: str, new: str) -> bool:
    """Points the model at `new` if it still points at `old`; False when another forget moved it first."""
    moved = session.exec(  # type: ignore[call-overload]
        update(ModelVersion)
        .where(col(ModelVersion.id) == model_id, col(ModelVersion.adapter_path) == old)
        .values(adapter_path=new)
        .execution_options(synchronize_session="fetch"))
    return bool(moved.rowcount)


def models_trained_on_forgotten(session: Session) -> list[int]:
    """The registered models trained on rows since forgotten: their LoRA weights and head were fitted on them."""
    named = models_with_forgotten_data(session)
    return [m for m in session.exec(select(ModelVersion.id).order_by(col(ModelVersion.id))) if m in named]
