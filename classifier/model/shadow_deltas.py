"""A second adapter served on the same base: a candidate in shadow beside the merged active model.

The active adapter stays merged into the weights (classifier/model/lora_merge.py); while the candidate
scores, forward hooks add the low-rank difference between the two to each target module's output,
`x A_c^T B_c^T s_c - x A_a^T B_a^T s_a`. That is exact (the same function as merging the candidate
instead), needs no second copy of the base, and leaves the weights untouched, so nothing drifts
however many messages the shadow scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from classifier.model.lora_merge import LoraDeltas

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class LowRankDifference:
    def __init__(self, model: PreTrainedModel, *, merged: LoraDeltas | None, candidate: LoraDeltas) -> None:
        """Per module one pair of factors: the candidate's and the merged adapter's stacked along the rank,
        the scales and the sign folded into the second, so each hooked module adds two thin matmuls."""
        import torch

        self._model = model
        self._factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        terms: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for sign, deltas in ((+1.0, candidate), (-1.0, merged)):
            for name, (a, b) in (deltas.factors.items() if deltas else ()):
                terms.setdefault(name, []).append((a.float(), b.float() * (sign * deltas.scale)))  # type: ignore[union-attr]
        for name, pairs in terms.items():
            weight: torch.Tensor = model.get_submodule(name).weight  # type: ignore[assignment]
            down = torch.cat([a for a, _ in pairs]).to(dtype=weight.dtype, device=weight.device)
            up = torch.cat([b for _, b in pairs], dim=1).to(dtype=weight.dtype, device=weight.device)
            self._factors[name] = (down, up)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model computes as if the candidate were merged instead, inside the block."""
        handles = [self._model.get_submodule(name).register_forward_hook(self._hook(down, up))
                   for name, (down, up) in self._factors.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _hook(down: torch.Tensor, up: torch.Tensor) -> Any:
        import torch.nn.functional as F

        def add_difference(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            return output.add_(F.linear(F.linear(inputs[0], down), up))

        return add_difference
