"""Builds a ready router from a base model name and an adapter folder."""

from __future__ import annotations

from pathlib import Path

from classifier.base_model import LoadOptions
from classifier.lora_router import LoraRouter
from classifier.serving_model import load_serving_model
from core.settings import Settings


def load_router(settings: Settings, *, adapter_dir: Path, name: str, base_model: str | None = None,
                options: LoadOptions | None = None, model_id: int | None = None) -> LoraRouter:
    base, tokenizer = load_serving_model(base_model or settings.base_model, cache_dir=settings.cache_dir,
                                         options=options or LoadOptions())
    return LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=adapter_dir, name=name,
                                   model_id=model_id)
