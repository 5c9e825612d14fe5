"""Adapter folders: PEFT's standard files plus `switchboard.json` (labels, prompt, hyperparameters).

A folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written adapter where the registry could point at it; it is never edited afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.model.lora_merge import AdapterError
from classifier.routing.calibration import Calibration
from classifier.routing.prompt import PromptFormat

if TYPE_CHECKING:
    import torch

META_FILE = "switchboard.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
BANK_FILE = "scope_bank.safetensors"  # the training messages' hidden states, for the out-of-scope signal
BANK_IDS = "query_ids"  # the bank's tensor of each row's query id (banks written before it have none)


@dataclass(frozen=True)
class AdapterMeta:
    labels: list[str]
    prompt: PromptFormat
    base_model: str
    hyperparameters: dict[str, Any]
    calibration: Calibration = field(default_factory=Calibration)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "prompt": self.prompt.to_dict(),
            "base_model": self.base_model,
            "hyperparameters": self.hyperparameters,
            "calibration": self.calibration.to_dict(),
        }


def new_adapter_dir(adapters_dir: Path, *, name: str) -> tuple[Path, Path]:
    """(scratch folder to write into, final folder name). `publish` moves one to the other."""
    adapters_dir.mkdir(parents=True, exist_ok=True)
    final = adapters_dir / name
    if final.exists():
        raise AdapterError(f"adapter folder {final} exists already; adapters are never overwritten")
    return Path(tempfile.mkdtemp(prefix=f".{name}-", dir=adapters_dir)), final


def publish(scratch: Path, final: Path, meta: AdapterMeta) -> Path:
    """Moves the finished scratch folder to its final name, every byte on disk first: a power cut
    leaves either no folder or a complete one, never a registered name over empty files."""
    (scratch / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2))
    check_adapter_dir(scratch)
    return move_whole(scratch, final)


def move_whole(scratch: Path, final: Path) -> Path:
    """Every byte of `scratch` on disk, then the rename to `final`: a crash leaves the old state and a
    scratch folder, never half a folder."""
    for file in scratch.rglob("*"):
        if file.is_file():
            _fsync(file)
    _fsync(scratch)
    os.replace(scratch, final)
    _fsync(final.parent)
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)


def sweep_scratch(adapters_dir: Path) -> list[Path]:
    """Removes scratch folders a crashed run left (`new_adapter_dir`'s dot-prefixed ones). Call it
    only while holding the training lock: then no live run is writing into one."""
    if not adapters_dir.is_dir():
        return []
    leftovers = [p for p in adapters_dir.iterdir() if p.is_dir() and p.name.startswith(".")]
    for folder in leftovers:
        discard(folder)
    return leftovers


def check_adapter_path(path: str) -> AdapterMeta:
    """`check_adapter_dir` for a path as the registry stores it."""
    return check_adapter_dir(Path(path))


def check_adapter_dir(path: Path) -> AdapterMeta:
    """Refuses a folder that is missing, incomplete or unreadable, before anything loads it."""
    if not path.is_dir():
        raise AdapterError(f"adapter folder {path} is missing")
    for name in (*PEFT_FILES, META_FILE):
        file = path / name
        if not file.is_file() or file.stat().st_size == 0:
            raise AdapterError(f"adapter folder {path} is incomplete: {name} is missing or empty")
    try:
        data = json.loads((path / META_FILE).read_text())
        json.loads((path / "adapter_config.json").read_text())
        meta = AdapterMeta(
            labels=list(data["labels"]),
            prompt=PromptFormat.from_dict(data["prompt"]),
            base_model=str(data["base_model"]),
            hyperparameters=dict(data.get("hyperparameters", {})),
            calibration=Calibration.from_dict(data.get("calibration")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterError(f"adapter folder {path} is corrupt: {exc}") from None
    _check_safetensors(path / "adapter_model.safetensors")
    return meta


def _check_safetensors(file: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            if not list(handle.keys()):
                raise AdapterError(f"{file} holds no tensors")
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise AdapterError(f"{file} is corrupt: {exc}") from None


def write_bank(folder: Path, hidden: torch.Tensor, labels: torch.Tensor | None = None,
               query_ids: Sequence[int] | None = None) -> None:
    """Stored in half precision: 576 numbers a message, 1.2 kB; with each message's label index when given
    (`classifier/routing/neighbours.py`), and each row's query id (`BANK_IDS`), so that forgetting a
    query can take its row out (`classifier/routing/bank_rows.py`)."""
    import torch
    from safetensors.torch import save_file

    tensors = {"hidden": hidden.half().contiguous()}
    if labels is not None:
        tensors["labels"] = labels.long().contiguous()
    if query_ids is not None:
        tensors[BANK_IDS] = torch.tensor(list(query_ids), dtype=torch.long).reshape(-1)
    save_file(tensors, str(folder / BANK_FILE))


def read_bank(folder: Path) -> torch.Tensor | None:
    """The bank, or None for an adapter trained before there was one (it then has no out-of-scope signal)."""
    from safetensors.torch import load_file

    file = folder / BANK_FILE
    if not file.is_file():
        return None
    try:
        return load_file(str(file))["hidden"].float()
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise AdapterError(f"{file} is corrupt: {exc}") from None


def read_bank_labels(folder: Path) -> torch.Tensor | None:
    """The bank's label indices, or None for a bank written before they were kept (no neighbour vote then)."""
    from safetensors.torch import load_file

    file = folder / BANK_FILE
    if not file.is_file():
        return None
    try:
        return load_file(str(file)).get("labels")
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise AdapterError(f"{file} is corrupt: {exc}") from None
