"""Admin moves of the active pointer, shared by `switchboard models` and `/switchboard rollback`.

The adapter folder is checked inside the same transaction, so a missing or corrupt folder
leaves the pointer where it was.
"""

from __future__ import annotations

from pathlib import Path

from router.adapters import check_adapter_dir
from store.db import SessionFactory, transaction
from store.registry import get_model, promote, rollback
from store.tables import ModelVersion


def promote_checked(sessions: SessionFactory, *, model_id: int, by: str) -> ModelVersion:
    with transaction(sessions) as session:
        check_adapter_dir(Path(get_model(session, model_id=model_id).adapter_path))
        return promote(session, model_id=model_id, by=by)


def rollback_checked(sessions: SessionFactory, *, by: str) -> ModelVersion:
    with transaction(sessions) as session:
        model = rollback(session, by=by)
        check_adapter_dir(Path(model.adapter_path))
        return model
