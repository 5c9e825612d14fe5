"""A second adapter served on the same base: a candidate in shadow beside the merged active model.

The active adapter stays merged into the weights (classifier/lora_merge.py); while the candidate
scores, forward hooks add the low-rank difference between the two to each target module's output,
`x A_c^T B_c^T s_c - x A_a^T B_a^T s_a`. That is exact (the same function as merging the candidate
instead), needs no second copy of the base, and leaves the weights untouched, so nothing drifts
however many messages the shadow scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from classifier.lora_merge import LoraDeltas

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class LowRankDifference:
    def __init__(self, model: PreTrainedModel, *, merged: LoraDeltas | None, candidate: LoraDeltas) -> None:
        self._model = model
        self._terms: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
        for sign, deltas in ((+1.0, candidate), (-1.0, merged)):
            for name, (a, b) in (deltas.factors.items() if deltas else ()):
                self._terms.setdefault(name, []).append((a, b, sign * deltas.scale))  # type: ignore[union-attr]

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model computes as if the candidate were merged instead, inside the block."""
        handles = [self._model.get_submodule(name).register_forward_hook(self._hook(terms))
                   for name, terms in self._terms.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _hook(terms: list[tuple[torch.Tensor, torch.Tensor, float]]) -> Any:
        cast: dict[tuple[Any, Any], list[tuple[torch.Tensor, torch.Tensor, float]]] = {}

        def add_difference(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            x = inputs[0]
            key = (x.dtype, x.device)
            if key not in cast:  # the factors in the activations' dtype and device, once
                cast[key] = [(a.to(x.dtype).to(x.device), b.to(x.dtype).to(x.device), s) for a, b, s in terms]
            for a, b, scale in cast[key]:
                output = output + (x @ a.T @ b.T) * scale
            return output

        return add_difference
