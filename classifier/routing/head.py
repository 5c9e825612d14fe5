"""A linear head on the model's final hidden state, fitted after the LoRA; its answer is mixed with the
label scores.

The LoRA teaches the model to write the label; the same forward pass also leaves, at the prompt's
last token, a hidden state in which the training messages sit clustered by label. Logistic
regression on those states (standardised) reads them better than the label tokens do when examples
are few, and varies less from sample to sample; the label scores are the read measured good on full
data. So the two are mixed, at the head's share the calibration fold chose for this adapter
(`trainer/calibrate.py:choose_head_weight`); docs/quality.md, "The few-shot race", has the figures.
It costs no latency (the hidden state is already computed for the out-of-scope signal) and one row
of weights a label in the adapter's folder. Fitting needs scikit-learn (the trainer's); serving only torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from classifier.model.lora_merge import AdapterError

if TYPE_CHECKING:
    import torch

HEAD_FILE = "label_head.safetensors"


@dataclass(frozen=True)
class LabelHead:
    """softmax(((hidden - mean) / scale) @ weight.T + bias), one column per router label. A label the
    head never saw an example of gets probability 0 from it."""

    mean: torch.Tensor  # (width,)
    scale: torch.Tensor  # (width,)
    weight: torch.Tensor  # (labels, width)
    bias: torch.Tensor  # (labels,)
    seen: torch.Tensor  # (labels,) bool: the labels it was fitted on

    def probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        import torch

        logits = ((hidden.float() - self.mean) / self.scale) @ self.weight.T + self.bias
        return torch.softmax(logits.masked_fill(~self.seen, float("-inf")), dim=-1)


def fit_head(hidden: torch.Tensor, labels: Sequence[int], n_labels: int, *, c: float = 1.0) -> LabelHead | None:
    """Logistic regression (inverse regularisation `c`) on `hidden` (rows) for `labels` (indices into the
    router's labels); None with fewer than two labels to tell apart."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(labels))
    if len(classes) < 2:
        return None
    x = hidden.float().numpy()
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(max_iter=3000, C=c).fit((x - mean) / scale, list(labels))
    coef, intercept = clf.coef_, clf.intercept_
    if len(classes) == 2:  # sklearn keeps one row for two classes: the second's margin
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = np.zeros((n_labels, x.shape[1]), dtype=np.float32)
    bias = np.zeros(n_labels, dtype=np.float32)
    weight[classes], bias[classes] = coef, intercept
    seen = torch.zeros(n_labels, dtype=torch.bool)
    seen[classes] = True
    return LabelHead(torch.from_numpy(mean).float(), torch.from_numpy(scale).float(), torch.from_numpy(weight),
                     torch.from_numpy(bias), seen)


def mixed(label_probs: torch.Tensor, head: LabelHead | None, hidden: torch.Tensor, head_weight: float) -> torch.Tensor:
    """The router's probabilities: the head's at `head_weight`, the label scores' at the rest (the scores
    alone without a head)."""
    if head is None or len(label_probs) == 0:
        return label_probs
    return blend(label_probs, head.probabilities(hidden), head_weight)


def blend(first: torch.Tensor, second: torch.Tensor, share: float) -> torch.Tensor:
    """`second`'s probabilities at `share`, `first`'s at the rest: the one way the router mixes two reads
    (the label scores and the head, then that and the neighbour vote)."""
    return (1 - share) * first + share * second


def write_head(folder: Path, head: LabelHead) -> None:
    from safetensors.torch import save_file

    save_file({"mean": head.mean.contiguous(), "scale": head.scale.contiguous(), "weight": head.weight.contiguous(),
               "bias": head.bias.contiguous(), "seen": head.seen.contiguous()}, str(folder / HEAD_FILE))


def read_head(folder: Path) -> LabelHead | None:
    """The head, or None for an adapter trained before there was one (it then routes on label scores alone)."""
    from safetensors.torch import load_file

    file = folder / HEAD_FILE
    if not file.is_file():
        return None
    try:
        t = load_file(str(file))
        return LabelHead(t["mean"], t["scale"], t["weight"], t["bias"], t["seen"])
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise AdapterError(f"{file} is corrupt: {exc}") from None
