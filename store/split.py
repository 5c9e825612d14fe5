"""Train/holdout assignment that never leaks, and a holdout that reflects traffic.

A text's split is decided once, when it first becomes a labelled example, and never changed.
Only labels that are not selected by the active model's errors may judge: a text first labelled
by an agent's correction or confirmation, or by the baseline, always trains. For the others the
split comes from a hash of the normalised text; to keep every department evaluable, the hash is
overruled only to hold a department's holdout share within one example of its target, counted
among the labels of the same kind (imported or admin history at 20%, audits at 50%).

Audits get the larger share because they are the only labels that sample live traffic without
bias, while agents' corrections already feed training: at the default audit rate of 10%, half of
the audits make 5% of all traffic a fresh holdout.
"""

from __future__ import annotations

import hashlib

from store.tables import Split

HOLDOUT_FRACTION = 0.2
AUDIT_HOLDOUT_FRACTION = 0.5
_SALT = b"switchboard-split-v1:"


def normalise(text: str) -> str:
    """Case and runs of whitespace do not make a new text."""
    return " ".join(text.casefold().split())


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def hash_unit(digest: str) -> float:
    """A uniform number in [0, 1) from a text hash, salted so it is independent of the dedupe key."""
    salted = hashlib.sha256(_SALT + digest.encode("ascii")).hexdigest()
    return int(salted[:15], 16) / 16**15


def assign_split(digest: str, *, n_train: int, n_holdout: int, fraction: float = HOLDOUT_FRACTION) -> Split:
    """The split of a new example of a department that already has `n_train` and `n_holdout`."""
    if n_train == 0:
        return Split.TRAIN
    target = fraction * (n_train + n_holdout + 1)
    if n_holdout < target - 1:
        return Split.HOLDOUT
    if n_holdout + 1 > target + 1:
        return Split.TRAIN
    return Split.HOLDOUT if hash_unit(digest) < fraction else Split.TRAIN
