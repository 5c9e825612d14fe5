"""Which examples an incremental run trains on: everything new, plus a stratified replay of the old.

A candidate warm-starts from the active adapter, so it already knows what that adapter learned.
Training on the new labels alone would pull it towards the departments that happen to be
corrected most and let the others fade (catastrophic forgetting); a replay sample of earlier
examples, the same number from every department, holds them in place. A department the active
adapter has never seen trains with all its examples.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from store.examples import Example


@dataclass(frozen=True)
class TrainingSet:
    examples: list[Example]
    new: int
    replay: int
    new_departments: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {"examples": len(self.examples), "new": self.new, "replay": self.replay,
                "new_departments": self.new_departments}


def select_training_set(
    train: Sequence[Example],
    *,
    trained_until: datetime | None,
    known_labels: Sequence[str] | None,
    replay_ratio: float = 1.0,
    replay_min_per_department: int = 8,
    seed: int = 0,
) -> TrainingSet:
    """`trained_until`: when the active adapter's data was snapshotted (None: no active adapter)."""
    if trained_until is None or known_labels is None:
        return TrainingSet(list(train), new=len(train), replay=0, new_departments=sorted({e.label for e in train}))
    known = set(known_labels)
    new_departments = sorted({e.label for e in train} - known)
    fresh = [e for e in train if e.labelled_at > trained_until or e.label in new_departments]
    fresh_ids = {e.query_id for e in fresh}
    old_by_department: dict[str, list[Example]] = defaultdict(list)
    for example in train:
        if example.query_id not in fresh_ids:
            old_by_department[example.label].append(example)
    departments = sorted(old_by_department)
    if not departments:
        return TrainingSet(fresh, new=len(fresh), replay=0, new_departments=new_departments)
    per_department = max(replay_min_per_department, round(replay_ratio * len(fresh) / len(departments)))
    rng = random.Random(seed)
    replay = []
    for department in departments:
        pool = old_by_department[department]
        replay.extend(rng.sample(pool, min(per_department, len(pool))))
    examples = sorted(fresh + replay, key=lambda e: e.query_id)
    return TrainingSet(examples, new=len(fresh), replay=len(replay), new_departments=new_departments)
