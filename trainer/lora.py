"""One LoRA fine-tune with TRL's SFTTrainer, with the loss on the label only.

Each example's loss can weigh less than 1 (labels no person gave: trainer/candidate.py). With a
`watch` set (the calibration fold) of at least `min_fold` examples, its loss is measured
`fold_evaluations` times in the run; the adapter where it was lowest is kept and training stops once
it stops falling (`BestOnFold`).

It refuses the silent failures: no trainable parameters, no supervised tokens, a loss that is
not a number. Each raises `TrainingFailed` with the reason, and no adapter is written.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.routing.prompt import PromptFormat, label_ids, prompt_ids
from core.errors import SwitchboardError
from trainer.config import TrainConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class TrainingFailed(SwitchboardError):
    """Training produced nothing usable; the message is the reason shown to the user."""


@dataclass(frozen=True)
class TrainResult:
    model: Any  # the PeftModel, still in memory for evaluation
    trainable_parameters: int
    supervised_tokens: int
    first_loss: float
    final_loss: float
    steps: int
    config: TrainConfig  # with the batch size and epochs this run used
    seconds: float
    examples_per_second: float
    curve: list[dict[str, Any]] = field(default_factory=list)  # the fold's loss as training went
    best_step: int | None = None  # where the kept weights come from (None: the last step)


def tokenise_examples(
    tokenizer: PreTrainedTokenizerBase, prompt: PromptFormat, examples: list[tuple[str, str]],
    weights: list[float] | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, (text, label) in enumerate(examples):
        head, tail = prompt_ids(tokenizer, prompt, text), label_ids(tokenizer, prompt, label)
        rows.append({"input_ids": head + tail, "completion_mask": [0] * len(head) + [1] * len(tail),
                     "weight": float(weights[i]) if weights is not None else 1.0})
    return rows


def wrap_with_lora(model: PreTrainedModel, config: TrainConfig, *, init_adapter: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        peft_model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        targets = config.target_modules
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
            task_type="CAUSAL_LM",
        )
        try:
            peft_model = get_peft_model(model, lora)
        except ValueError as exc:
            raise TrainingFailed(f"the adapter has no trainable parameters: {exc}".splitlines()[0]) from None
    trainable, _total = peft_model.get_nb_trainable_parameters()
    if trainable == 0:
        raise TrainingFailed("the adapter has no trainable parameters (check target_modules)")
    return peft_model


def train_lora(
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[tuple[str, str]],
    prompt: PromptFormat,
    config: TrainConfig,
    weights: list[float] | None = None,
    watch: list[tuple[str, str]] | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """`weights`: each example's share of the loss (1 each by default). `watch`: labelled examples never
    trained on (the calibration fold) whose loss picks the epoch kept, when `config.best_on_fold` and there
    are at least `config.min_fold` of them: at ten examples a label on a few departments the fold holds a
    handful, and watched it stopped training early on noise (docs/quality.md, "The few-shot race")."""
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig

    from trainer.progress import BestOnFold, LossBar, NanGuard

    if not examples:
        raise TrainingFailed("no training examples")
    if config.loss_vocabulary not in ("full", "labels"):
        raise TrainingFailed(f"loss_vocabulary must be 'full' or 'labels', not {config.loss_vocabulary!r}")
    config = config.for_examples(len(examples))
    rows = tokenise_examples(tokenizer, prompt, examples, weights)
    watch = watch or []
    watched = tokenise_examples(tokenizer, prompt, watch) if config.best_on_fold and len(watch) >= max(
        1, config.min_fold) else []
    label_tokens = sorted({t for _, label in [*examples, *watch]
                           for t in label_ids(tokenizer, prompt, label)})
    supervised = sum(sum(r["completion_mask"]) for r in rows)  # at least one a row: each label ends in EOS
    set_seed(config.seed)  # the LoRA's initial weights too, not only the trainer's shuffling: a seed gives one run
    peft_model = wrap_with_lora(model, config, init_adapter=init_adapter)
    trainable, _ = peft_model.get_nb_trainable_parameters()
    on_cpu = next(peft_model.parameters()).device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="switchboard-sft-") as scratch:
        args = SFTConfig(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            logging_steps=1,
            logging_nan_inf_filter=False,  # the default hides a NaN loss: the very failure to catch
            save_strategy="no",
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            bf16=use_bf16_autocast(config.precision, on_cpu=on_cpu),
            use_cpu=on_cpu,
            completion_only_loss=True,
            max_length=None,
            dataloader_num_workers=0,
            disable_tqdm=True,
            train_sampling_strategy="group_by_length",  # similar lengths per batch: less padding
            gradient_checkpointing=False,  # TRL turns it on; on a small model it only costs time
            eval_strategy="steps" if watched else "no",
            eval_steps=max(1, _total_steps(len(rows), config) // max(1, config.fold_evaluations)),
            per_device_eval_batch_size=32,
        )
        guard, best = NanGuard(), BestOnFold(config.patience)
        trainer = _completion_trainer_class(label_tokens if config.loss_vocabulary == "labels" else None)(
            model=peft_model, args=args, train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(watched) if watched else None, processing_class=tokenizer,
            callbacks=[guard, *([best] if watched else []), *([LossBar()] if progress else [])],
        )
        trainer.data_collator = _with_weights(trainer.data_collator)
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        if not any(t != -100 for labels in trainer.train_dataset["labels"] for t in labels):
            raise TrainingFailed("no supervised tokens after TRL's preprocessing")
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        restored = best.restore(peft_model)
    if guard.bad_loss is not None or not math.isfinite(output.training_loss):
        raise TrainingFailed(f"training loss is not a number ({guard.bad_loss or output.training_loss})")
    peft_model.eval()
    return TrainResult(
        model=peft_model,
        trainable_parameters=int(trainable),
        supervised_tokens=int(supervised),
        first_loss=float(guard.first_loss if guard.first_loss is not None else output.training_loss),
        final_loss=float(guard.last_loss if guard.last_loss is not None else output.training_loss),
        steps=int(output.global_step),
        config=config,
        seconds=seconds,
        examples_per_second=output.global_step * config.batch_size / seconds if seconds else 0.0,
        curve=best.curve,
        best_step=best.best_step if restored else None,
    )


def _total_steps(n: int, config: TrainConfig) -> int:
    return int(config.epochs * max(1, -(-n // config.batch_size)))


def _with_weights(collate: Any) -> Any:
    """TRL's collator pads the sequences and drops every other column: each example's weight is put back."""
    import torch

    def collate_with_weights(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        batch["weight"] = torch.tensor([float(e.get("weight", 1.0)) for e in examples])
        return batch

    return collate_with_weights


def _completion_trainer_class(label_tokens: list[int] | None) -> type:
    """SFTTrainer whose loss projects only the supervised positions through the LM head.

    TRL's fused head scores every position of the batch against the whole vocabulary on CPU
    (it compacts only on Triton devices). Here a few label tokens per example are supervised, so
    scoring only those makes a CPU step of the embedded model more than twice as fast.

    With `label_tokens`, the softmax runs over the labels' tokens only: the same renormalisation
    the scorer applies, so training optimises the probabilities that classification reads.
    """
    import torch
    from trl import SFTTrainer

    class CompletionOnlySFTTrainer(SFTTrainer):  # type: ignore[misc]
        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            columns: list[str] = list(self._signature_columns or [])
            self._signature_columns = columns if "weight" in columns else [*columns, "weight"]  # type: ignore[assignment]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            weight = inputs.pop("weight", None)
            labels = inputs["labels"][:, 1:]
            causal_lm = model.get_base_model()
            hidden = causal_lm.model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                     use_cache=False).last_hidden_state[:, :-1]
            mask = labels != -100
            head = causal_lm.get_output_embeddings().weight
            targets = labels[mask]
            if label_tokens is not None:
                vocabulary = torch.tensor(label_tokens, device=head.device)
                head = head[vocabulary]
                targets = torch.searchsorted(vocabulary, targets)
            logits = (hidden[mask] @ head.T).float()
            losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            if weight is not None:  # each supervised token weighs what its example does
                losses = losses * weight.to(losses.device)[:, None].expand_as(labels)[mask]
            total = losses.sum()
            count = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count).clamp(min=1)
            mode = "train" if model.training else "eval"
            accuracy = (logits.argmax(-1) == targets).float().mean().item() if mask.any() else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(accuracy)
            return (loss, None) if return_outputs else loss

    return CompletionOnlySFTTrainer


def use_bf16_autocast(precision: str, *, on_cpu: bool) -> bool:
    """bf16 mixed precision on GPUs. Not on CPU, even with AMX: there autocast re-casts the frozen
    weights every step, and a step of the embedded model took longer (5.1 against 6.0 examples/s)."""
    import torch

    if precision in ("fp32",):
        return False
    if precision in ("bf16", "4bit"):
        return True
    return not on_cpu and bool(torch.cuda.is_bf16_supported())
