"""A vote of the nearest labelled messages in the model's own hidden states: a third read of the one pass.

The bank the adapter keeps for the out-of-scope signal holds the trained-on messages' final hidden
states; with their labels beside them, the nearest ones can vote. With all of BANKING77's departments
that vote was the most accurate read of the fine-tuned model (97.1% against the served mix's 96.4%;
docs/quality.md, "The few-shot race"); at ten examples a label it trailed the head. So its share of the
router's probabilities is chosen on the calibration fold (`trainer/calibrate.py`), and is 0 on a fold under
`TrainConfig.vote_min_fold`: folds of about 40 chose the vote alone and lost 0.9 points at 50 a department.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

VOTERS = 10
SHARPNESS = 20.0  # a neighbour's weight is exp(SHARPNESS * its cosine similarity), the nearest's being 1


def neighbour_vote(hidden: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, n_labels: int, *,
                   k: int = VOTERS, sharpness: float = SHARPNESS) -> torch.Tensor:
    """(rows of `hidden`, `n_labels`): each row's k nearest bank rows (cosine) vote for their labels."""
    import torch

    votes = torch.zeros(hidden.shape[0], n_labels)
    if bank.shape[0] == 0:
        return torch.full((hidden.shape[0], n_labels), 1.0 / n_labels)
    a = torch.nn.functional.normalize(hidden.float(), dim=-1)
    b = torch.nn.functional.normalize(bank.float(), dim=-1)
    k = min(k, b.shape[0])
    for start in range(0, a.shape[0], 512):
        nearest = (a[start:start + 512] @ b.T).topk(k, dim=-1)
        weights = torch.exp(sharpness * (nearest.values - nearest.values[:, :1]))
        votes[start:start + 512].scatter_add_(1, bank_labels.long()[nearest.indices], weights)
    return votes / votes.sum(dim=1, keepdim=True)
