"""The data a run trains and evaluates on, fixed at its start and recorded so any result can be redone."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from store.examples import Example, corrected_misroutes, labelled_examples
from store.tables import Split


@dataclass(frozen=True)
class Snapshot:
    train: list[Example]
    holdout: list[Example]
    known_mistakes: list[Example] = field(default_factory=list)  # reported apart, never gated on

    @property
    def labels(self) -> list[str]:
        """The departments the model can learn: those with at least one training example."""
        return sorted({e.label for e in self.train})

    def sources(self, split: str) -> dict[str, int]:
        examples = self.train if split == "train" else self.holdout
        return dict(Counter(e.source.value for e in examples))

    @property
    def digest(self) -> str:
        rows = sorted((e.query_id, e.label, e.split.value) for e in self.train + self.holdout)
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def write(self, path: Path, *, trained_on: list[Example] | None = None) -> None:
        """The ids and labels of the examples that trained the adapter and of the holdout, beside it."""
        path.write_text(json.dumps({
            "digest": self.digest,
            "train": [[e.query_id, e.label] for e in self.train],
            "trained_on": [[e.query_id, e.label] for e in (self.train if trained_on is None else trained_on)],
            "holdout": [[e.query_id, e.label] for e in self.holdout],
        }))


def take_snapshot(session: Session) -> Snapshot:
    examples = labelled_examples(session)
    return Snapshot(
        train=[e for e in examples if e.split == Split.TRAIN],
        holdout=[e for e in examples if e.split == Split.HOLDOUT],
        known_mistakes=corrected_misroutes(session),
    )
