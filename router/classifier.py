"""The router: a base model (with a LoRA adapter, or zero-shot without one) over a fixed label set."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from router.adapters import check_adapter_dir
from router.prompt import PromptFormat, label_ids, prefix_ids, prompt_ids
from router.scoring import LabelTrie, score_labels, shared_prefix

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Usage:
    """What a paid model's answer cost (the baseline routing in cold start)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    prompt_version: str | None = None  # the baseline's cache key for this answer


@dataclass(frozen=True)
class Classification:
    department: str
    confidence: float
    scores: dict[str, float]
    model: str | None
    latency_ms: float
    usage: Usage | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"department": self.department, "confidence": self.confidence, "scores": self.scores,
                "model": self.model, "latency_ms": round(self.latency_ms, 2)}


class Router(Protocol):
    """What the bot and the trainer need from a classifier; tests hand in fakes with queued answers."""

    def classify(self, text: str) -> Classification: ...

    def classify_batch(self, texts: Sequence[str]) -> list[Classification]: ...


class LoraRouter:
    """Scores every label for each text with the model; thread-safe, one forward at a time."""

    def __init__(
        self,
        *,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        labels: Sequence[str],
        prompt: PromptFormat,
        name: str | None,
        cache_prefix: bool = False,
    ) -> None:
        """`cache_prefix`: compute the prompts' common start once. Only for weights that stay fixed
        for this router's life (a served model); the trainer switches adapters under its routers."""
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._model = model
        self._prompt = prompt
        self._name = name
        self._trie = LabelTrie({label: label_ids(tokenizer, prompt, label) for label in labels})
        self._prefix = shared_prefix(model, prefix_ids(tokenizer, prompt)) if cache_prefix else None

    @classmethod
    def from_adapter(
        cls, *, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, adapter_dir: Path, name: str
    ) -> LoraRouter:
        """The adapter merged into `base` (which this router then owns): one matmul per layer, not three."""
        from router.lora_merge import read_lora, release_checkpoint

        meta = check_adapter_dir(adapter_dir)
        deltas = read_lora(adapter_dir)
        deltas.apply(base, sign=+1)
        release_checkpoint(base, deltas)
        base.eval()
        return cls(model=base, tokenizer=tokenizer, labels=meta.labels, prompt=meta.prompt, name=name,
                   cache_prefix=True)

    @property
    def labels(self) -> list[str]:
        return list(self._trie.labels)

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    @property
    def trie(self) -> LabelTrie:
        return self._trie

    @property
    def prompt(self) -> PromptFormat:
        return self._prompt

    @property
    def name(self) -> str | None:
        return self._name

    def classify(self, text: str) -> Classification:
        return self.classify_batch([text])[0]

    def classify_batch(self, texts: Sequence[str], *, batch_size: int = 32) -> list[Classification]:
        with self._lock:
            started = time.perf_counter()
            prompts = [prompt_ids(self._tokenizer, self._prompt, text) for text in texts]
            probs = score_labels(self._model, self._trie, prompts, pad_token_id=self._tokenizer.pad_token_id,
                                 batch_size=batch_size, prefix=self._prefix)
            per_text_ms = (time.perf_counter() - started) * 1000 / max(1, len(texts))
        labels = self._trie.labels
        results = []
        for row in probs.tolist():
            best = max(range(len(labels)), key=row.__getitem__)
            results.append(Classification(
                department=labels[best], confidence=float(row[best]),
                scores={label: float(p) for label, p in zip(labels, row, strict=True)},
                model=self._name, latency_ms=per_text_ms,
            ))
        return results
