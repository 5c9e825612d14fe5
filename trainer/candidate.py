"""The candidate: trained on the training set less the calibration fold, then calibrated on the fold; and the
recipe it shares with the benchmarks (`train_router`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from classifier.model.base_model import LoadOptions, load_base_model
from classifier.routing.adapters import check_adapter_dir, write_bank
from classifier.routing.calibration import Calibration
from classifier.routing.head import write_head
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import LoraRouter
from store.examples import Example
from store.tables import ModelVersion
from trainer.calibrate import Fitted, calibrate, split_fold
from trainer.config import TrainConfig
from trainer.lora import TrainResult, train_lora
from trainer.replay import TrainingSet
from trainer.snapshot import Snapshot

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TrainingJob:
    """What the pipeline asks the candidate trainer for: the base model, the data, and where to write."""

    base_model: str
    cache_dir: Path
    snapshot: Snapshot
    training_set: TrainingSet
    warm_start: ModelVersion | None  # the active model, when its adapter is the starting point
    config: TrainConfig
    scratch: Path  # the folder the adapter is written to, published by the pipeline once it is complete
    name: str
    inferred_weight: float = 1.0  # the weight in the loss of labels no person gave
    progress: bool = False


class Trained(NamedTuple):
    """The calibrated candidate, its training run, and how many examples it trained on."""

    router: LoraRouter
    result: TrainResult
    calibration: Calibration
    trained_on: int


CandidateTrainer = Callable[[TrainingJob], Trained]


def train_candidate(job: TrainingJob) -> Trained:
    """The candidate, with its adapter, snapshot, bank of hidden states and head written to `job.scratch`.
    It trains on the training set less the calibration fold, and is calibrated on the fold."""
    snapshot, training_set = job.snapshot, job.training_set
    fold_ids = {e.query_id for e in split_fold(snapshot.train)[1]}
    train_on = [e for e in training_set.examples if e.query_id not in fold_ids] or training_set.examples
    trained_ids = {e.query_id for e in train_on}
    fold = [e for e in snapshot.train if e.query_id in fold_ids - trained_ids]
    model, tokenizer = load_base_model(job.base_model, cache_dir=job.cache_dir,
                                       options=LoadOptions(precision=load_precision(job.config)))
    candidate, result, fitted = train_router(
        model=model, tokenizer=tokenizer, train_on=train_on, fold=fold, labels=snapshot.labels,
        prompt=prompt_for(job.warm_start, job.config), config=job.config,
        init_adapter=Path(job.warm_start.adapter_path) if job.warm_start else None, progress=job.progress,
        name=job.name, inferred_weight=job.inferred_weight)
    result.model.save_pretrained(str(job.scratch))
    snapshot.write(job.scratch / "snapshot.json", trained_on=train_on)
    write_bank(job.scratch, fitted.bank, fitted.bank_labels, query_ids=fitted.bank_ids)
    if fitted.head is not None:
        write_head(job.scratch, fitted.head)
    return Trained(candidate, result, fitted.calibration, len(train_on))


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
    fitted = calibrate(router, fold, train_on, with_head=config.head, with_vote=config.vote, min_fold=config.min_fold,
                       vote_min_fold=config.vote_min_fold)
    router.calibration, router.bank, router.bank_labels = fitted.calibration, fitted.bank, fitted.bank_labels
    return router, result, fitted


def prompt_for(warm_start: ModelVersion | None, config: TrainConfig) -> PromptFormat:
    if warm_start is not None:
        return check_adapter_dir(Path(warm_start.adapter_path)).prompt  # keep the prompt it learned
    return PromptFormat(max_text_tokens=config.max_text_tokens)


def load_precision(config: TrainConfig) -> str:
    return "4bit" if config.precision == "4bit" else "auto"
