"""The candidate: trained on the training set less the calibration fold, then calibrated on the fold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from classifier.model.base_model import LoadOptions, load_base_model
from classifier.routing.adapters import check_adapter_dir, write_bank
from classifier.routing.calibration import Calibration
from classifier.routing.head import write_head
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import LoraRouter
from core.settings import Settings
from store.examples import Example
from store.tables import LabelSource, ModelVersion, Split
from trainer.calibrate import Fitted, calibrate, split_fold
from trainer.config import TrainConfig
from trainer.lora import TrainResult, train_lora
from trainer.replay import TrainingSet
from trainer.snapshot import Snapshot

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def train_candidate(settings: Settings, *, snapshot: Snapshot, training_set: TrainingSet,
                    warm_start: ModelVersion | None, config: TrainConfig, progress: bool, scratch: Path,
                    name: str, inferred_weight: float = 1.0) -> tuple[LoraRouter, TrainResult, Calibration, int]:
    """The calibrated candidate, with its adapter, snapshot, bank of hidden states and head written to `scratch`,
    and how many examples it trained on. Labels no person gave weigh `inferred_weight` in the loss."""
    fold_ids = {e.query_id for e in split_fold(snapshot.train)[1]}
    train_on = [e for e in training_set.examples if e.query_id not in fold_ids] or training_set.examples
    trained_ids = {e.query_id for e in train_on}
    fold = [e for e in snapshot.train if e.query_id in fold_ids - trained_ids]
    prompt = prompt_for(warm_start, config)
    model, tokenizer = load_base_model(settings.base_model, cache_dir=settings.cache_dir,
                                       options=LoadOptions(precision=load_precision(config)))
    candidate, result, fitted = train_router(
        model=model, tokenizer=tokenizer, train_on=train_on, fold=fold, labels=snapshot.labels, prompt=prompt,
        config=config, init_adapter=Path(warm_start.adapter_path) if warm_start else None, progress=progress,
        name=name, inferred_weight=inferred_weight)
    result.model.save_pretrained(str(scratch))
    snapshot.write(scratch / "snapshot.json", trained_on=train_on)
    write_bank(scratch, fitted.bank)
    if fitted.head is not None:
        write_head(scratch, fitted.head)
    return candidate, result, fitted.calibration, len(train_on)


def train_router(*, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_on: Sequence[Example],
                 fold: Sequence[Example], labels: Sequence[str], prompt: PromptFormat, config: TrainConfig,
                 init_adapter: Path | None = None, progress: bool = True, name: str | None = None,
                 inferred_weight: float = 1.0) -> tuple[LoraRouter, TrainResult, Fitted]:
    """The recipe, for the trainer and the benchmarks alike: the LoRA on `train_on` (labels no person gave
    at `inferred_weight`, the fold's loss watched to keep the best epoch), then the head and the bank
    from the trained-on messages and the calibration from `fold` (trainer/calibrate.py)."""
    result = train_lora(model=model, tokenizer=tokenizer, prompt=prompt, config=config,
                        examples=[(e.text, e.label) for e in train_on],
                        weights=[1.0 if e.source.by_a_person else inferred_weight for e in train_on],
                        watch=[(e.text, e.label) for e in fold], init_adapter=init_adapter, progress=progress)
    router = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer, labels=labels, prompt=prompt,
                        name=name or "candidate")
    fitted = calibrate(router, fold, train_on, with_head=config.head)
    router.calibration, router.bank = fitted.calibration, fitted.bank
    return router, result, fitted


class TrainedRouter(NamedTuple):
    router: LoraRouter
    result: TrainResult
    fitted: Fitted
    train_on: list[Example]
    fold: list[Example]


def train_router_on_pairs(pairs: Sequence[tuple[str, str]], labels: Sequence[str], *, cache_dir: Path,
                          config: TrainConfig | None = None, base_model: str = "smollm2-135m",
                          progress: bool = True) -> TrainedRouter:
    """The trainer's recipe on (text, label) pairs, the calibration fold split off as the trainer splits
    it: what the benchmarks train, so that they measure what ships."""
    now = datetime.now(UTC)
    train_on, fold = split_fold([Example(i, text, label, Split.TRAIN, LabelSource.IMPORT, now)
                                 for i, (text, label) in enumerate(pairs)])
    model, tokenizer = load_base_model(base_model, cache_dir=cache_dir)
    router, result, fitted = train_router(model=model, tokenizer=tokenizer, train_on=train_on, fold=fold,
                                          labels=labels, prompt=PromptFormat(), config=config or TrainConfig(),
                                          progress=progress, name="bench")
    return TrainedRouter(router, result, fitted, train_on, fold)


def prompt_for(warm_start: ModelVersion | None, config: TrainConfig) -> PromptFormat:
    if warm_start is not None:
        return check_adapter_dir(Path(warm_start.adapter_path)).prompt  # keep the prompt it learned
    return PromptFormat(max_text_tokens=config.max_text_tokens)


def load_precision(config: TrainConfig) -> str:
    return "4bit" if config.precision == "4bit" else "auto"
