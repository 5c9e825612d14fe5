"""The calibration fold: training-split examples no adapter ever trains on, and what is fitted on them.

The fold is fixed by each text's hash (the same texts in every run), so a warm-started candidate
has never seen it either. It is never the gate's holdout: the holdout judges, the fold only
tunes how sure the model says it is and how unusual a message must be to belong nowhere.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from classifier.routing.calibration import Calibration, fit_calibration, fitted_temperature, knn_distances
from classifier.routing.head import LabelHead, blend, fit_head, mixed
from classifier.routing.neighbours import neighbour_vote
from store.examples import Example
from store.split import text_hash
from store.tables import OUT_OF_SCOPE
from trainer.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from classifier.routing.router import LoraRouter

FOLD_SHARE = 0.1
MIN_TRAIN_FOR_FOLD = 50  # below this every example trains; the adapter then keeps temperature 1
MAX_BANK = 10_000  # trained-on messages the head is fitted on, the vote polls and out-of-scope measures: 12 MB


def split_fold(train: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(examples to train on, calibration fold). A department keeps at least one training example.

    Only labels a person gave can be held in the fold: it measures how sure the model should be,
    and an implicit or distilled label (trained on at a lower weight) would measure it against a
    guess. Those always train."""
    if len(train) < MIN_TRAIN_FOR_FOLD:
        return list(train), []
    held = [_unit(e.text) < FOLD_SHARE and e.source.by_a_person for e in train]
    fold = [e for e, h in zip(train, held, strict=True) if h]
    rest = [e for e, h in zip(train, held, strict=True) if not h]
    orphaned = {e.label for e in fold} - {e.label for e in rest}
    return rest + [e for e in fold if e.label in orphaned], [e for e in fold if e.label not in orphaned]


def _unit(text: str) -> float:
    """Uniform in [0, 1) from the text, independent of the hash that chose the holdout (its own salt)."""
    return int(hashlib.sha256(b"switchboard-calibration-v1:" + text_hash(text).encode()).hexdigest()[:15], 16) / 16**15


def fitting_sample(trained_on: Sequence[Example], seed: int = 0) -> list[Example]:
    """The trained-on messages the head is fitted on and whose in-scope ones make the bank: at most `MAX_BANK`."""
    return list(trained_on) if len(trained_on) <= MAX_BANK else random.Random(seed).sample(list(trained_on), MAX_BANK)


@dataclass(frozen=True)
class Fitted:
    """What is fitted after the LoRA and stored beside it."""

    calibration: Calibration
    bank: torch.Tensor  # the in-scope sample's hidden states, for the out-of-scope signal and the neighbour vote
    head: LabelHead | None
    bank_labels: torch.Tensor  # the bank's label indices
    bank_ids: tuple[int, ...] = ()  # the bank's query ids, row by row, so that forgetting can take rows out


def calibrate(router: LoraRouter, fold: Sequence[Example], trained_on: Sequence[Example], *,
              with_head: bool = True, with_vote: bool = True, min_fold: int = TrainConfig.min_fold,
              vote_min_fold: int = TrainConfig.vote_min_fold) -> Fitted:
    """Fit the head on the trained-on messages' hidden states and set it on `router`, then, on the fold,
    choose the head's share of the router's probabilities (an even share on a fold under `min_fold`), then
    the neighbour vote's share of that mix (none on a fold under `vote_min_fold`), and fit the calibration over it.

    Once the fold has been used, the head is fitted again with the fold's messages added: the
    LoRA never sees the fold, but the head can, and at ten examples a label the tenth matters
    (docs/quality.md, "The few-shot race"). The share, the temperature and the out-of-scope
    reference chosen with the first head stand."""
    import torch

    router.head = None
    sample = fitting_sample(trained_on)
    hidden = router.score([e.text for e in sample]).hidden if sample else _empty(router)
    labels = router.labels
    with_head = with_head and bool(sample)
    head = fit_head(hidden, [labels.index(e.label) for e in sample], len(labels)) if with_head else None
    in_bank = [i for i, e in enumerate(sample) if e.label != OUT_OF_SCOPE]
    bank = hidden[in_bank]
    bank_labels = torch.tensor([labels.index(sample[i].label) for i in in_bank], dtype=torch.long)
    bank_ids = tuple(sample[i].query_id for i in in_bank)
    if not fold:
        router.head = head
        return Fitted(Calibration(), bank, head, bank_labels, bank_ids)
    raw = router.score([e.text for e in fold])  # the label scores alone: the router has no head yet
    truth = [labels.index(e.label) for e in fold]
    weight, vote_weight = 0.5, 0.0
    if head is not None and len(fold) >= min_fold:
        weight = choose_head_weight(raw.probs, head.probabilities(raw.hidden), truth)
    probs = mixed(raw.probs, head, raw.hidden, weight)
    if with_vote and len(bank) and len(fold) >= vote_min_fold:
        vote = neighbour_vote(raw.hidden, bank, bank_labels, len(labels))
        vote_weight = choose_share(probs, vote, truth, ties_towards=0.0)
        probs = blend(probs, vote, vote_weight)
    in_scope = [i for i, e in enumerate(fold) if e.label != OUT_OF_SCOPE]
    distances = knn_distances(raw.hidden[in_scope], bank) if in_scope else []
    departments = [j for j, label in enumerate(labels) if label != OUT_OF_SCOPE]
    calibration = fit_calibration(probs, truth, in_scope=in_scope, distances=distances, departments=departments,
                                  head_weight=weight, vote_weight=vote_weight)
    router.head = head
    if with_head:
        router.head = fit_head(torch.cat([hidden, raw.hidden]), [labels.index(e.label) for e in sample] + truth,
                               len(labels))
    return Fitted(calibration, bank, router.head, bank_labels, bank_ids)


HEAD_WEIGHTS = [i / 10 for i in range(11)]


def choose_head_weight(label_probs: torch.Tensor, head_probs: torch.Tensor, truth: Sequence[int]) -> float:
    """The head's share (0, 0.1, .. 1) whose mix explains the fold best: the lowest negative log-likelihood of
    its true labels, each mix at its own fitted temperature (so each is judged at its best sharpness, as it
    will be served). Ties go to the share nearest an even mix.

    Neither read wins everywhere: at 10 examples a label the head was ahead of the label scores on all three
    few-shot tasks, and the label scores are the read measured good on full data (docs/quality.md)."""
    return choose_share(label_probs, head_probs, truth, ties_towards=0.5)


def choose_share(first: torch.Tensor, second: torch.Tensor, truth: Sequence[int], *, ties_towards: float) -> float:
    """`second`'s share (0, 0.1, .. 1) of a mix with `first` that gives the fold's true labels the lowest negative
    log-likelihood, each mix at its own fitted temperature; ties go to the share nearest `ties_towards`."""
    def cost(weight: float) -> tuple[float, float]:
        return round(fitted_temperature(blend(first, second, weight), truth)[1], 9), abs(weight - ties_towards)

    return min(HEAD_WEIGHTS, key=cost)


def _empty(router: LoraRouter) -> torch.Tensor:
    import torch

    return torch.zeros(0, router.model.get_output_embeddings().weight.shape[1])
