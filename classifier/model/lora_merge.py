"""Merging a LoRA adapter into the base weights without PEFT: how a serving process loads one.

PEFT's `merge_and_unload`, and importing PEFT, were most of a serving process's start (docs/speed.md).
This reads the adapter's safetensors and adds `scale * B @ A` to each target
weight in place, which is what PEFT's merge computes, and subtracts it again when a hot swap
replaces the adapter. Only plain LoRA is accepted (what the trainer writes); anything else is
refused with a clear error rather than merged wrongly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SwitchboardError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

_PREFIX = "base_model.model."


class AdapterError(SwitchboardError):
    """An adapter folder is missing or unusable; the message says which and why."""


@dataclass
class LoraDeltas:
    """Per target module (its name in the base model), the low-rank factors and the scale."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float

    def apply(self, model: PreTrainedModel, *, sign: int) -> None:
        """Adds (sign +1) or removes (sign -1) the adapter's update to the model's weights in place."""
        swap(model, old=self if sign < 0 else None, new=None if sign < 0 else self)

    def update(self, name: str, like: torch.Tensor) -> torch.Tensor:
        a, b = self.factors[name]
        return ((b.float() @ a.float()) * self.scale).to(dtype=like.dtype, device=like.device)


def check_fits(model: PreTrainedModel, deltas: LoraDeltas, *, source: str) -> None:
    """Refuses, before any weight is touched, an adapter whose modules the model lacks or whose factors
    do not fit them (a wrongly shaped or non-finite tensor): merged, it would fail half-way."""
    import torch

    for name, (a, b) in deltas.factors.items():
        try:
            weight: torch.Tensor = model.get_submodule(name).weight  # type: ignore[assignment]
        except AttributeError:
            raise AdapterError(f"{source}: the base model has no module {name}") from None
        out_features, in_features = weight.shape
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_features or b.shape[0] != out_features \
                or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{source}: {name}'s factors {tuple(b.shape)} x {tuple(a.shape)} do not fit its "
                               f"weight {tuple(weight.shape)}")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise AdapterError(f"{source}: {name}'s factors hold NaN or infinite values")


def swap(model: PreTrainedModel, *, old: LoraDeltas | None, new: LoraDeltas | None) -> None:
    """Takes `old`'s update out of the weights and puts `new`'s in, all or nothing: on any exception
    half-way the modules already changed are changed back, and the exception is raised.

    Out of place: loaded weights are pages of the memory-mapped checkpoint, and writing into them
    copied 4 KB pages one fault at a time, several times slower and with a higher peak of resident
    memory. The undo subtracts what was added, so a
    weight comes back within a rounding step of itself, and no second copy of the model is held.
    """
    import torch

    def change(name: str, weight: torch.Tensor) -> torch.Tensor:
        delta = torch.zeros((), dtype=weight.dtype, device=weight.device)
        if new is not None and name in new.factors:
            delta = delta + new.update(name, weight)
        if old is not None and name in old.factors:
            delta = delta - old.update(name, weight)
        return delta

    names = list(dict.fromkeys([*(old.factors if old else ()), *(new.factors if new else ())]))
    done: list[str] = []
    try:
        with torch.no_grad():
            for name in names:
                weight: torch.Tensor = model.get_submodule(name).weight  # type: ignore[assignment]
                weight.data = weight.data + change(name, weight)
                done.append(name)
    except BaseException:
        with torch.no_grad():
            for name in reversed(done):  # recomputed rather than kept: no second copy of the weights
                weight = model.get_submodule(name).weight  # type: ignore[assignment]
                weight.data = weight.data - change(name, weight)
        raise


def read_lora(adapter_dir: Path) -> LoraDeltas:
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    plain = {"peft_type": config.get("peft_type") == "LORA", "use_dora": not config.get("use_dora"),
             "use_rslora": not config.get("use_rslora"), "fan_in_fan_out": not config.get("fan_in_fan_out"),
             "modules_to_save": not config.get("modules_to_save"), "rank_pattern": not config.get("rank_pattern"),
             "alpha_pattern": not config.get("alpha_pattern"), "bias": config.get("bias", "none") == "none"}
    if unsupported := [key for key, ok in plain.items() if not ok]:
        raise AdapterError(f"{adapter_dir} is not a plain LoRA adapter ({', '.join(unsupported)})")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix(_PREFIX).removesuffix(".lora_A.weight")
        b = tensors.get(key.replace(".lora_A.weight", ".lora_B.weight"))
        if b is None:
            raise AdapterError(f"{adapter_dir}: {module} has lora_A without lora_B")
        factors[module] = (a, b)
    if not factors or len(factors) * 2 != len(tensors):
        raise AdapterError(f"{adapter_dir}: adapter_model.safetensors holds more than LoRA factors")
    return LoraDeltas(factors=factors, scale=float(config["lora_alpha"]) / float(config["r"]))


def release_checkpoint(model: PreTrainedModel, merged: LoraDeltas) -> None:
    """Copies the weights the merge left alone out of the memory-mapped checkpoint.

    The merge already gave the target weights memory of their own; once the rest (embeddings,
    norms) have theirs too, the mapping is released: a served embedded model then keeps 0.97 GB
    resident instead of 1.39.
    """
    import torch

    replaced = {id(model.get_submodule(name).weight) for name in merged.factors}
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in replaced:
                tensor.data = tensor.data.clone()
