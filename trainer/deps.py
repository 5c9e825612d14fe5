"""What a retraining run is handed, built once in `cli/compose.py` as the bot's `BotDeps` is.

`TrainerConfig` is the slice of the settings the trainer reads; `TrainerDeps` adds the collaborators: the
store, the baseline's client (None when no baseline is configured), the candidate trainer and a clock.
Tests and benchmarks hand in their own: a loopback OpenAI client, a trainer that fails on cue, simulated
time. Per-run choices (trigger, hyperparameters, which alternatives) are `RunOptions` (trainer/pipeline.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.redact import Redactor, redactor_of
from core.settings import Settings
from reports.costs import Pricing
from store.db import SessionFactory
from trainer.candidate import CandidateTrainer, train_candidate
from trainer.gate import GateRules


@dataclass(frozen=True)
class TrainerConfig:
    base_model: str
    cache_dir: Path
    adapters_dir: Path
    baseline_model: str
    distil_budget_usd: float  # spent asking the baseline to label unlabelled messages, per run
    implicit_after_hours: float  # a route no agent corrected for this long becomes a label
    implicit_weight: float  # the weight in the loss of labels no person gave
    inference_url: str | None  # score on the serving engine, as the bot routes, when set
    pricing: Pricing
    redact: Redactor  # what leaves for the baseline
    rules: GateRules

    @classmethod
    def of(cls, settings: Settings) -> TrainerConfig:
        return cls(base_model=settings.base_model, cache_dir=settings.cache_dir, adapters_dir=settings.adapters_dir,
                   baseline_model=settings.baseline_model, distil_budget_usd=settings.distil_budget_usd,
                   implicit_after_hours=settings.implicit_after_hours, implicit_weight=settings.implicit_weight,
                   inference_url=settings.inference_url, pricing=Pricing.of(settings), redact=redactor_of(settings),
                   rules=GateRules.of(settings))


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrainerDeps:
    sessions: SessionFactory
    config: TrainerConfig
    baseline: Any | None = None  # an OpenAI-compatible client; None: no baseline to beat or distil from
    train_candidate: CandidateTrainer = train_candidate
    clock: Callable[[], datetime] = field(default=_utc_now)  # what "24 hours ago" means; the bench simulates it
    baseline_backoff_s: float = 1.0  # first wait before retrying a rate-limited or failed baseline request
