"""The calibration fold: training-split examples no adapter ever trains on, and what is fitted on them.

The fold is fixed by each text's hash (the same texts in every run), so a warm-started candidate
has never seen it either. It is never the gate's holdout: the holdout judges, the fold only
tunes how sure the model says it is and how unusual a message must be to belong nowhere.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from router.calibration import Calibration, fit_calibration, knn_distances
from store.examples import Example
from store.split import text_hash
from store.tables import OUT_OF_SCOPE

if TYPE_CHECKING:
    import torch

    from router.classifier import LoraRouter

FOLD_SHARE = 0.1
MIN_TRAIN_FOR_FOLD = 50  # below this every example trains; the adapter then keeps temperature 1
MAX_BANK = 5000  # training messages kept for the out-of-scope signal: 6 MB at most


def split_fold(train: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(examples to train on, calibration fold). A department keeps at least one training example."""
    if len(train) < MIN_TRAIN_FOR_FOLD:
        return list(train), []
    held = [_unit(e.text) < FOLD_SHARE for e in train]
    fold = [e for e, h in zip(train, held, strict=True) if h]
    rest = [e for e, h in zip(train, held, strict=True) if not h]
    orphaned = {e.label for e in fold} - {e.label for e in rest}
    return rest + [e for e in fold if e.label in orphaned], [e for e in fold if e.label not in orphaned]


def _unit(text: str) -> float:
    """Uniform in [0, 1) from the text, independent of the hash that chose the holdout (its own salt)."""
    return int(hashlib.sha256(b"switchboard-calibration-v1:" + text_hash(text).encode()).hexdigest()[:15], 16) / 16**15


def bank_sample(trained_on: Sequence[Example], seed: int = 0) -> list[Example]:
    """The in-scope messages the out-of-scope signal measures distance to, at most `MAX_BANK`."""
    in_scope = [e for e in trained_on if e.label != OUT_OF_SCOPE]
    return in_scope if len(in_scope) <= MAX_BANK else random.Random(seed).sample(in_scope, MAX_BANK)


def calibrate(router: LoraRouter, fold: Sequence[Example], bank: Sequence[Example]) -> tuple[Calibration, torch.Tensor]:
    """The adapter's calibration from the fold, and the bank's hidden states to store beside it."""
    bank_hidden = router.score([e.text for e in bank]).hidden if bank else _empty(router)
    if not fold:
        return Calibration(), bank_hidden
    raw = router.score([e.text for e in fold])
    labels = router.labels
    truth = [labels.index(e.label) for e in fold]
    in_scope = [i for i, e in enumerate(fold) if e.label != OUT_OF_SCOPE]
    distances = knn_distances(raw.hidden[in_scope], bank_hidden) if in_scope else []
    departments = [j for j, label in enumerate(labels) if label != OUT_OF_SCOPE]
    return fit_calibration(raw.probs, truth, in_scope=in_scope, distances=distances,
                           departments=departments), bank_hidden


def _empty(router: LoraRouter) -> torch.Tensor:
    import torch

    return torch.zeros(0, router.model.get_output_embeddings().weight.shape[1])
