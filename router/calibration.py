"""Confidence that means what it says, and a "none of these" probability when no example shows one.

Both are fitted once per adapter, after training, on the calibration fold: training-split
examples the adapter never trained on (never the gate's holdout), and stored in the adapter's
folder with it.

* Temperature scaling (Guo et al. 2017): one scalar T divides the label log-scores, fitted to
  minimise the fold's negative log-likelihood; it changes no ranking, only how sure each answer is.
* Out of scope, without out-of-scope examples: how far the message's final hidden state lies from
  the training messages' (cosine distance to the k-th nearest, Sun et al. 2022), turned into the
  share of the fold's in-scope messages that lie closer. 0.97 reads "97% of real questions look
  more familiar than this". `bench/oos.py` compares this signal with the maximum probability
  after temperature scaling and the energy score on CLINC150.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.metrics import expected_calibration_error

if TYPE_CHECKING:
    import torch

NEIGHBOURS = 5
UNFAMILIAR_QUANTILE = 0.95  # "none of these" when a message is stranger than 95% of the fold's real questions
_TEMPERATURES = [math.exp(x / 20) for x in range(-60, 61)]  # 0.05 .. 20, 5% apart


@dataclass(frozen=True)
class Calibration:
    """What an adapter's folder keeps beside its weights; `Calibration()` changes nothing."""

    temperature: float = 1.0
    n: int = 0  # calibration-fold examples it was fitted on
    ece_before: float | None = None
    ece_after: float | None = None
    # the fold's k-NN distances, sorted: the in-scope reference for the out-of-scope signal
    reference_distances: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "n": self.n, "ece_before": self.ece_before,
                "ece_after": self.ece_after, "reference_distances": self.reference_distances}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        if not data:
            return cls()
        return cls(temperature=float(data.get("temperature", 1.0)), n=int(data.get("n", 0)),
                   ece_before=data.get("ece_before"), ece_after=data.get("ece_after"),
                   reference_distances=[float(d) for d in data.get("reference_distances", [])])

    def summary(self) -> dict[str, Any]:
        return {"temperature": round(self.temperature, 4), "n": self.n,
                "ece_before": _round(self.ece_before), "ece_after": _round(self.ece_after)}

    def unfamiliarity(self, distances: Sequence[float]) -> list[float]:
        """Each distance's share of the reference distances below it: 0 without a reference."""
        ref = self.reference_distances
        return [bisect.bisect_left(ref, d) / len(ref) if ref else 0.0 for d in distances]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def with_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log p / T), row by row."""
    import torch

    if temperature == 1.0:
        return probs
    return torch.softmax(torch.log(probs.clamp_min(1e-12)) / temperature, dim=-1)


def fit_temperature(probs: torch.Tensor, truth: Sequence[int]) -> float:
    """The T in 0.05..20 with the lowest negative log-likelihood of the true labels (a grid: robust
    on a fold of ten examples, where gradient steps wander)."""
    import torch

    logp = torch.log(probs.clamp_min(1e-12))
    index = torch.tensor(list(truth))

    def nll(t: float) -> float:
        return float(-torch.log_softmax(logp / t, dim=-1)[torch.arange(len(index)), index].mean())

    return min(_TEMPERATURES, key=nll)


def ece(probs: torch.Tensor, truth: Sequence[int]) -> float:
    confidence, predicted = probs.max(dim=-1)
    return expected_calibration_error([int(p) == t for p, t in zip(predicted.tolist(), truth, strict=True)],
                                      confidence.tolist())


def knn_distances(hidden: torch.Tensor, bank: torch.Tensor, k: int = NEIGHBOURS) -> list[float]:
    """Cosine distance from each row of `hidden` to its k-th nearest row of `bank`."""
    import torch

    if bank.shape[0] == 0:
        return [0.0] * hidden.shape[0]
    a = torch.nn.functional.normalize(hidden.float(), dim=-1)
    b = torch.nn.functional.normalize(bank.float(), dim=-1)
    k = min(k, b.shape[0])
    out: list[float] = []
    for start in range(0, a.shape[0], 512):
        similarity = a[start:start + 512] @ b.T
        out.extend((1 - similarity.topk(k, dim=-1).values[:, -1]).tolist())
    return out


def fit_calibration(probs: torch.Tensor, truth: Sequence[int], distances: Sequence[float]) -> Calibration:
    """From the calibration fold: its label probabilities, true label indices and k-NN distances."""
    if len(truth) == 0:
        return Calibration()
    temperature = fit_temperature(probs, truth)
    return Calibration(temperature=temperature, n=len(truth), ece_before=ece(probs, truth),
                       ece_after=ece(with_temperature(probs, temperature), truth),
                       reference_distances=sorted(round(float(d), 6) for d in distances))
