"""The baseline's few-shot examples: chosen once per department from its training examples, then kept.

Each training example gets a fixed pseudo-random rank from its text, and a department's shots are
its lowest-ranked examples when the department is first needed. They are stored and never
re-picked as data grows (only `switchboard baseline reset` does that), so the baseline's prompt,
its score on the holdout and its cache of paid-for answers stay comparable from run to run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session, col, select

from store.examples import labelled_examples
from store.tables import BaselineShot, Split

SHOTS_PER_DEPARTMENT = 3
_SEED = 0


def _rank(text: str) -> str:
    return hashlib.sha256(f"{_SEED}:{text}".encode()).hexdigest()


def ensure_shots(session: Session, *, departments: Sequence[str],
                 per_department: int = SHOTS_PER_DEPARTMENT) -> list[BaselineShot]:
    """The stored shots of these departments, picking them for any department that has none yet."""
    stored = list(session.exec(select(BaselineShot).where(col(BaselineShot.department).in_(departments))))
    missing = set(departments) - {s.department for s in stored}
    if missing:
        train = [e for e in labelled_examples(session, split=Split.TRAIN) if e.label in missing]
        for department in sorted(missing):
            chosen = sorted((e.text for e in train if e.label == department), key=_rank)[:per_department]
            for text in chosen:
                shot = BaselineShot(department=department, text=text)
                session.add(shot)
                stored.append(shot)
        session.flush()
    return sorted(stored, key=lambda s: _rank(s.text))


def reset_shots(session: Session) -> int:
    """Forgets every shot, so the next run re-picks them from today's training examples; returns how many."""
    result = session.exec(delete(BaselineShot))  # type: ignore[call-overload]
    return int(result.rowcount or 0)
