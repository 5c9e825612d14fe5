"""Models forget too: every registered model's bank and snapshot rewritten without the queries the store let go.

Run after a forget's rows are committed (bot/forgetting.py). A query is let go when its row is gone
(forgotten) or its text is (retention). For each registered model whose snapshot or bank still
names one, a sibling adapter folder is written without them (classifier/routing/bank_rows.py), the
model's `adapter_path` is moved to it in one transaction, and the old folder is deleted. Serving
processes see the path move and swap the new folder in whole, as they do for a promotion
(classifier/serving/active_router.py). The LoRA weights and the head stay as they were: they are
fitted to the data, not a copy of it, and only a model trained without the rows is free of their
influence (`status` says which models were trained on forgotten rows).

Nothing here depends on what was forgotten just now, only on what the store still holds, so a
forget cut short between its rows and its models is finished by any later forget.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from classifier.routing.bank_rows import named_queries, prune
from store.db import SessionFactory, transaction
from store.forgotten_models import held_queries, move_adapter
from store.registry import list_models

log = logging.getLogger(__name__)
ATTEMPTS = 3  # another forget may move a model's folder between our read and our move


@dataclass(frozen=True)
class ModelForgot:
    model_id: int
    examples: int  # taken out of its snapshot
    bank_rows: int  # taken out of its bank
    bank_dropped: bool  # an older bank with no way to tell its rows apart went whole


def forget_in_models(sessions: SessionFactory) -> list[ModelForgot]:
    """Rewrites every registered model that still names a query the store no longer holds; what each lost."""
    with sessions() as session:
        models = [(m.id, m.adapter_path) for m in list_models(session) if m.id is not None]
    done = []
    for model_id, path in models:
        outcome: ModelForgot | str | None = None
        for _ in range(ATTEMPTS):
            outcome = _forget_in(sessions, model_id, path)
            if not isinstance(outcome, str):
                break
            path = outcome  # moved meanwhile: start again from where it points now
        if isinstance(outcome, ModelForgot):
            done.append(outcome)
    if done:
        log.info("models rewritten without forgotten rows: %s", ", ".join(
            f"model {d.model_id} ({d.examples} snapshot rows, {d.bank_rows} bank rows"
            f"{', the whole bank' if d.bank_dropped else ''})" for d in done))
    return done


def _forget_in(sessions: SessionFactory, model_id: int, path: str) -> ModelForgot | str | None:
    """What the model lost; None when it named nothing gone; the folder it points at now when another moved it."""
    folder = Path(path)
    named = named_queries(folder)
    if not named:
        return None
    with sessions() as session:
        gone = named - held_queries(session, named)
    pruned = prune(folder, gone) if gone else None
    if pruned is None:
        return None
    with transaction(sessions) as session:
        moved = move_adapter(session, model_id=model_id, old=path, new=str(pruned.folder))
        now = None if moved else next((m.adapter_path for m in list_models(session) if m.id == model_id), None)
    if not moved:
        shutil.rmtree(pruned.folder, ignore_errors=True)
        return now
    shutil.rmtree(folder, ignore_errors=True)
    return ModelForgot(model_id, pruned.snapshot_rows, pruned.bank_rows, pruned.bank_dropped)
