"""Loads the base model a serving process scores with: the lean Llama where it can, else transformers.

The lean path (`classifier/model/lean_llama.py`) needs a local folder holding `config.json`, a single
`model.safetensors` and `tokenizer.json`: the converted embedded model, or a folder the admin
points SWITCHBOARD_BASE_MODEL at. A hub id, a sharded checkpoint, 4-bit loading or an
architecture the lean model does not cover goes through transformers, as training always does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from classifier.model.base_model import (
    LoadOptions,
    ModelLoadError,
    load_base_model,
    model_source,
    resolve_device,
    resolve_dtype,
)

log = logging.getLogger(__name__)


class LeanTokenizer:
    """The slice of a transformers tokenizer that the prompt and the label scoring use, on `tokenizers` alone."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        self.bos_token_id = self._id(settings.get("bos_token"))
        self.eos_token_id = self._id(settings.get("eos_token"))
        self.pad_token_id = self._id(settings.get("pad_token")) if settings.get("pad_token") else self.eos_token_id
        self.add_bos_token = bool(settings.get("add_bos_token", False))

    def _id(self, token: str | dict[str, Any] | None) -> int | None:
        if isinstance(token, dict):
            token = token.get("content")
        return self._backend.token_to_id(token) if token else None

    def __call__(self, text: str, *, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self._backend.encode(text, add_special_tokens=add_special_tokens).ids}


def lean_unavailable(source: str, options: LoadOptions) -> str | None:
    """Why the lean path cannot serve this model, or None."""
    from classifier.model.lean_llama import unsupported_reason

    folder = Path(source)
    if options.precision == "4bit":
        return "4-bit weights need bitsandbytes through transformers"
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
               if not (folder / name).is_file()]
    if missing:
        return f"{source} is not a local folder with {', '.join(missing)}"
    return unsupported_reason(json.loads((folder / "config.json").read_text()))


def load_serving_model(base_model: str, *, cache_dir: Path, options: LoadOptions | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for scoring only: never trained, so no transformers class is needed."""
    options = options or LoadOptions()
    source = model_source(base_model, cache_dir)
    if reason := lean_unavailable(source, options):
        log.info("serving %s through transformers: %s", base_model, reason)
        return load_base_model(base_model, cache_dir=cache_dir, options=options)
    return load_lean(Path(source), options), LeanTokenizer(Path(source))


def load_lean(folder: Path, options: LoadOptions) -> Any:
    import torch
    from safetensors.torch import load_file

    from classifier.model.lean_llama import LeanLlama

    device = resolve_device(options.device)
    try:
        model = LeanLlama.from_weights(json.loads((folder / "config.json").read_text()),
                                       load_file(str(folder / "model.safetensors")))
    except RuntimeError as exc:
        raise ModelLoadError(f"cannot load {folder}: {str(exc).strip().splitlines()[0]}") from exc
    with torch.no_grad():
        return model.placed(device, resolve_dtype(options.precision, device))
