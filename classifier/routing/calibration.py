"""Confidence that means what it says, and a "none of these" probability when no example shows one.

Both are fitted once per adapter, after training, on the calibration fold: training-split
examples the adapter never trained on (never the gate's holdout), and stored in the adapter's
folder with it.

* Temperature scaling (Guo et al. 2017): one scalar T divides the label log-scores, fitted to
  minimise the fold's negative log-likelihood; it changes no ranking, only how sure each answer is.
* Out of scope, without out-of-scope examples: two signals, each put on the scale of the fold's
  in-scope messages (its empirical distribution) and averaged: how far the message's final hidden
  state lies from the training messages' (cosine distance to the k-th nearest, Sun et al. 2022),
  and how unsure the calibrated model is (1 - its top probability). The result is the share of the
  fold's messages that look more familiar: 0.97 reads "97% of real questions look more familiar
  than this". On CLINC150 at 10 examples a department the pair separates out-of-scope queries
  better than either alone, or than the energy score (`bench/oos.py`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from classifier.routing.metrics import expected_calibration_error

if TYPE_CHECKING:
    import torch

NEIGHBOURS = 5
UNFAMILIAR_QUANTILE = 0.95  # "none of these" when a message is stranger than 95% of the fold's real questions
_TEMPERATURES = [math.exp(x / 20) for x in range(-60, 61)]  # 0.05 .. 20, 5% apart


@dataclass(frozen=True)
class Calibration:
    """What an adapter's folder keeps beside its weights; `Calibration()` changes nothing."""

    temperature: float = 1.0
    head_weight: float = 0.5  # the head's share of the router's probabilities (`classifier/routing/head.py:mixed`)
    vote_weight: float = 0.0  # the neighbour vote's share of them, after the head's mix (`routing/neighbours.py`)
    n: int = 0  # calibration-fold examples it was fitted on
    ece_before: float | None = None
    ece_after: float | None = None
    # the fold's in-scope messages, each list sorted: the reference for the out-of-scope signal
    reference_distances: list[float] = field(default_factory=list)  # k-NN distances
    reference_doubts: list[float] = field(default_factory=list)  # 1 - top probability after temperature
    reference_scores: list[float] = field(default_factory=list)  # the two combined (see `strangeness`)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "head_weight": self.head_weight, "vote_weight": self.vote_weight,
                "n": self.n,
                "ece_before": self.ece_before, "ece_after": self.ece_after,
                "reference_distances": self.reference_distances, "reference_doubts": self.reference_doubts,
                "reference_scores": self.reference_scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        if not data:
            return cls()
        return cls(temperature=float(data.get("temperature", 1.0)), head_weight=float(data.get("head_weight", 0.5)),
                   vote_weight=float(data.get("vote_weight", 0.0)), n=int(data.get("n", 0)),
                   ece_before=data.get("ece_before"), ece_after=data.get("ece_after"),
                   reference_distances=[float(d) for d in data.get("reference_distances", [])],
                   reference_doubts=[float(d) for d in data.get("reference_doubts", [])],
                   reference_scores=[float(d) for d in data.get("reference_scores", [])])

    def summary(self) -> dict[str, Any]:
        return {"temperature": round(self.temperature, 4), "head_weight": self.head_weight,
                "vote_weight": self.vote_weight, "n": self.n,
                "ece_before": _round(self.ece_before), "ece_after": _round(self.ece_after)}

    def strangeness(self, distances: Sequence[float], doubts: Sequence[float]) -> list[float]:
        """The mean of each signal's place among the fold's in-scope messages (0: the most familiar)."""
        return [(_place(self.reference_distances, d) + _place(self.reference_doubts, u)) / 2
                for d, u in zip(distances, doubts, strict=True)]

    def unfamiliarity(self, distances: Sequence[float], doubts: Sequence[float]) -> list[float]:
        """Each message's share of the fold's in-scope messages that look more familiar; 0 without a fold."""
        ref = self.reference_scores
        return [bisect.bisect_left(ref, s) / len(ref) if ref else 0.0 for s in self.strangeness(distances, doubts)]


def _place(reference: Sequence[float], value: float) -> float:
    """Where `value` falls among the sorted `reference`, 0..1, linear between neighbours."""
    if not reference:
        return 0.0
    import numpy as np

    return float(np.interp(value, reference, [(i + 0.5) / len(reference) for i in range(len(reference))],
                           left=0.0, right=1.0))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def with_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log p / T), row by row."""
    import torch

    if temperature == 1.0:
        return probs
    return torch.softmax(torch.log(probs.clamp_min(1e-12)) / temperature, dim=-1)


def fit_temperature(probs: torch.Tensor, truth: Sequence[int]) -> float:
    """The T in 0.05..20 that best explains the fold: the lowest negative log-likelihood of the true
    labels (summed), plus a log-normal prior on T centred on 1, (log T)^2 / 2, worth about one example.

    A grid, since on a fold of ten examples gradient steps wander. The prior matters only on a tiny
    fold: three examples all answered right have their likelihood maximised by sharpening without
    limit (T = 0.05 on BANKING77 at 10 a department, seed 1: every answer then read 100%), which is
    a claim three examples cannot support; with it T stays near 1 there, and a fold of a hundred
    moves T where its own evidence says.
    """
    return fitted_temperature(probs, truth)[0]


def fitted_temperature(probs: torch.Tensor, truth: Sequence[int]) -> tuple[float, float]:
    """(T, its cost): `fit_temperature`'s choice and the penalised negative log-likelihood it leaves."""
    import torch

    logp = torch.log(probs.clamp_min(1e-12))
    index = torch.tensor(list(truth))

    def cost(t: float) -> float:
        nll = float(-torch.log_softmax(logp / t, dim=-1)[torch.arange(len(index)), index].sum())
        return nll + math.log(t) ** 2 / 2

    best = min(_TEMPERATURES, key=cost)
    return best, cost(best)


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


def doubts(probs: torch.Tensor, departments: Sequence[int]) -> list[float]:
    """1 - the top department's probability, row by row."""
    return (1 - probs[:, list(departments)].max(dim=-1).values).tolist()


def fit_calibration(probs: torch.Tensor, truth: Sequence[int], *, in_scope: Sequence[int],
                    distances: Sequence[float], departments: Sequence[int], head_weight: float = 0.5,
                    vote_weight: float = 0.0) -> Calibration:
    """From the calibration fold: its label probabilities (the head's share in them: `head_weight`, the
    neighbour vote's: `vote_weight`) and true label indices, which rows are in scope, their k-NN distances,
    and which labels are departments."""
    if len(truth) == 0:
        return Calibration()
    temperature = fit_temperature(probs, truth)
    calibrated = with_temperature(probs, temperature)
    fitted = Calibration(temperature=temperature, head_weight=head_weight, vote_weight=vote_weight, n=len(truth),
                         ece_before=ece(probs, truth),
                         ece_after=ece(calibrated, truth),
                         reference_distances=sorted(round(float(d), 6) for d in distances),
                         reference_doubts=sorted(round(u, 6) for u in doubts(calibrated[list(in_scope)], departments)))
    scores = fitted.strangeness(distances, doubts(calibrated[list(in_scope)], departments))
    return replace(fitted, reference_scores=sorted(round(s, 6) for s in scores))
