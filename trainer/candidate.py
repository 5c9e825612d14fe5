"""The candidate: trained on the training set less the calibration fold, then calibrated on the fold."""

from __future__ import annotations

from pathlib import Path

from router.adapters import check_adapter_dir, write_bank
from router.base_model import LoadOptions, load_base_model
from router.calibration import Calibration
from router.classifier import LoraRouter
from router.prompt import PromptFormat
from router.settings import Settings
from store.tables import ModelVersion
from trainer.calibrate import bank_sample, calibrate, split_fold
from trainer.config import TrainConfig
from trainer.lora import TrainResult, train_lora
from trainer.replay import TrainingSet
from trainer.snapshot import Snapshot


def train_candidate(settings: Settings, *, snapshot: Snapshot, training_set: TrainingSet,
                    warm_start: ModelVersion | None, config: TrainConfig, progress: bool, scratch: Path,
                    name: str) -> tuple[LoraRouter, TrainResult, Calibration, int]:
    """The calibrated candidate, with its adapter, snapshot and bank of hidden states written to `scratch`,
    and how many examples it trained on."""
    fold_ids = {e.query_id for e in split_fold(snapshot.train)[1]}
    train_on = [e for e in training_set.examples if e.query_id not in fold_ids] or training_set.examples
    trained_ids = {e.query_id for e in train_on}
    fold = [e for e in snapshot.train if e.query_id in fold_ids - trained_ids]
    prompt = prompt_for(warm_start, config)
    model, tokenizer = load_base_model(settings.base_model, cache_dir=settings.cache_dir,
                                       options=LoadOptions(precision=load_precision(config)))
    result = train_lora(model=model, tokenizer=tokenizer, prompt=prompt, config=config,
                        examples=[(e.text, e.label) for e in train_on],
                        init_adapter=Path(warm_start.adapter_path) if warm_start else None, progress=progress)
    result.model.save_pretrained(str(scratch))
    snapshot.write(scratch / "snapshot.json", trained_on=train_on)
    candidate = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer, labels=snapshot.labels,
                           prompt=prompt, name=name)
    calibration, bank = calibrate(candidate, fold, bank_sample(train_on))
    write_bank(scratch, bank)
    candidate.calibration, candidate.bank = calibration, bank
    return candidate, result, calibration, len(train_on)


def prompt_for(warm_start: ModelVersion | None, config: TrainConfig) -> PromptFormat:
    if warm_start is not None:
        return check_adapter_dir(Path(warm_start.adapter_path)).prompt  # keep the prompt it learned
    return PromptFormat(max_text_tokens=config.max_text_tokens)


def load_precision(config: TrainConfig) -> str:
    return "4bit" if config.precision == "4bit" else "auto"
