"""The router: a base model (with a LoRA adapter, or zero-shot without one) over a fixed label set."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from classifier.model.base_model import LoadOptions
from classifier.routing.adapters import check_adapter_dir, read_bank, read_bank_labels
from classifier.routing.calibration import UNFAMILIAR_QUANTILE, Calibration, doubts, knn_distances, with_temperature
from classifier.routing.head import LabelHead, blend, mixed, read_head
from classifier.routing.neighbours import neighbour_vote
from classifier.routing.prompt import PromptFormat, label_ids, prefix_ids, prompt_ids
from classifier.routing.scoring import LabelScores, LabelTrie, score_labels_detailed, shared_prefix
from core.vocabulary import OUT_OF_SCOPE

if TYPE_CHECKING:
    import torch
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
    """`scores`: each department's probability; `out_of_scope`: the probability the message belongs to
    none of them (learned from out-of-scope examples when the model has that class, else how
    unfamiliar the message is; see `classifier/routing/calibration.py`). `department` is the likeliest department."""

    department: str
    confidence: float
    scores: dict[str, float]
    model_name: str  # what people read: "model 3", "baseline gpt-4o", "candidate"
    latency_ms: float
    usage: Usage | None = None
    out_of_scope: float = 0.0
    none_of_these: bool = False  # the router's verdict: the message belongs to no department
    model_id: int | None = None  # the registry's id of the model that answered; None for the baseline

    @property
    def from_baseline(self) -> bool:
        """The few-shot baseline answered: only its answers carry a paid request's usage."""
        return self.usage is not None

    @property
    def answer(self) -> str:
        """What a scorer compares with a label: the department, or `OUT_OF_SCOPE` when none fits."""
        return OUT_OF_SCOPE if self.none_of_these else self.department

    def to_dict(self) -> dict[str, Any]:
        return {"department": self.department, "confidence": self.confidence, "scores": self.scores,
                "out_of_scope": round(self.out_of_scope, 4), "none_of_these": self.none_of_these,
                "model": self.model_name, "model_id": self.model_id, "latency_ms": round(self.latency_ms, 2)}


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
        name: str,
        model_id: int | None = None,
        cache_prefix: bool = False,
        calibration: Calibration | None = None,
        bank: torch.Tensor | None = None,
        head: LabelHead | None = None,
        bank_labels: torch.Tensor | None = None,
    ) -> None:
        """`cache_prefix`: compute the prompts' common start once. Only for weights that stay fixed
        for this router's life (a served model); the trainer switches adapters under its routers.
        `calibration`, `bank` (the training messages' hidden states), `head` (`classifier/routing/head.py`) and
        `bank_labels` (`classifier/routing/neighbours.py`) come from the adapter's folder."""
        if not [label for label in labels if label != OUT_OF_SCOPE]:
            raise ValueError("a router needs a department besides the out-of-scope class")
        self._tokenizer = tokenizer
        self.calibration = calibration or Calibration()
        self.bank = bank
        self.head = head
        self.bank_labels = bank_labels
        self._lock = threading.Lock()
        self._model = model
        self._prompt = prompt
        self._name = name
        self._model_id = model_id
        self._trie = LabelTrie({label: label_ids(tokenizer, prompt, label) for label in labels})
        self._prefix = shared_prefix(model, prefix_ids(tokenizer, prompt)) if cache_prefix else None

    @classmethod
    def from_adapter(
        cls, *, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, adapter_dir: Path, name: str,
        model_id: int | None = None,
    ) -> LoraRouter:
        """The adapter merged into `base` (which this router then owns): one matmul per layer, not three."""
        from classifier.model.lora_merge import read_lora, release_checkpoint

        meta = check_adapter_dir(adapter_dir)
        bank, head, bank_labels = read_bank(adapter_dir), read_head(adapter_dir), read_bank_labels(adapter_dir)
        deltas = read_lora(adapter_dir)
        deltas.apply(base, sign=+1)
        release_checkpoint(base, deltas)
        base.eval()
        return cls(model=base, tokenizer=tokenizer, labels=meta.labels, prompt=meta.prompt, name=name,
                   model_id=model_id, cache_prefix=True, calibration=meta.calibration, bank=bank, head=head,
                   bank_labels=bank_labels)

    @property
    def labels(self) -> list[str]:
        return list(self._trie.labels)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

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
    def name(self) -> str:
        return self._name

    def classify(self, text: str) -> Classification:
        return self.classify_batch([text])[0]

    def score(self, texts: Sequence[str], *, batch_size: int = 32, pool: bool = False) -> LabelScores:
        """The scores before temperature (the label scores mixed with the head's, when there is one):
        what calibration and the benchmarks work from."""
        with self._lock:
            prompts = [prompt_ids(self._tokenizer, self._prompt, text) for text in texts]
            raw = score_labels_detailed(self._model, self._trie, prompts, pad_token_id=self._tokenizer.pad_token_id,
                                        batch_size=batch_size, prefix=self._prefix, pool=pool)
        probs = mixed(raw.probs, self.head, raw.hidden, self.calibration.head_weight)
        if self.calibration.vote_weight and self.bank is not None and self.bank_labels is not None:
            vote = neighbour_vote(raw.hidden, self.bank, self.bank_labels, len(self._trie.labels))
            probs = blend(probs, vote, self.calibration.vote_weight)
        return replace(raw, probs=probs)

    def classify_batch(self, texts: Sequence[str], *, batch_size: int = 32) -> list[Classification]:
        started = time.perf_counter()
        raw = self.score(texts, batch_size=batch_size)
        per_text_ms = (time.perf_counter() - started) * 1000 / max(1, len(texts))
        return self.decide(raw, latency_ms=per_text_ms)

    def decide(self, raw: LabelScores, *, latency_ms: float = 0.0) -> list[Classification]:
        """Raw scores to answers: the temperature applied, the probability of none worked out."""
        probs = with_temperature(raw.probs, self.calibration.temperature)
        labels = self._trie.labels
        departments = [j for j, label in enumerate(labels) if label != OUT_OF_SCOPE]
        learned = OUT_OF_SCOPE in labels
        if learned:
            out_of_scope = probs[:, labels.index(OUT_OF_SCOPE)].tolist()
        elif self.bank is not None and self.calibration.reference_scores:
            out_of_scope = self.calibration.unfamiliarity(knn_distances(raw.hidden, self.bank),
                                                          doubts(probs, departments))
        else:
            out_of_scope = [0.0] * len(probs)
        results = []
        for row, none in zip(probs.tolist(), out_of_scope, strict=True):
            best = max(departments, key=row.__getitem__)
            results.append(Classification(
                department=labels[best], confidence=float(row[best]),
                scores={labels[j]: float(row[j]) for j in departments},
                model_name=self._name, model_id=self._model_id, latency_ms=latency_ms, out_of_scope=float(none),
                none_of_these=none > row[best] if learned else none >= UNFAMILIAR_QUANTILE,
            ))
        return results


def load_router(base_model: str, *, cache_dir: Path, adapter_dir: Path, name: str,
                options: LoadOptions | None = None, model_id: int | None = None) -> LoraRouter:
    """A ready router: the base model as serving loads it, with the adapter folder's LoRA merged in."""
    from classifier.model.serving_model import load_serving_model

    base, tokenizer = load_serving_model(base_model, cache_dir=cache_dir, options=options or LoadOptions())
    return LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=adapter_dir, name=name,
                                   model_id=model_id)
