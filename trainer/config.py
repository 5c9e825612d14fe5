"""Training hyperparameters: one dataclass, saved beside every adapter it produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


def hardware_refusal(precision: str) -> str | None:
    """Why this machine cannot train at `precision` (one line), or None. QLoRA's 4-bit weights need CUDA and
    bitsandbytes (the `gpu` extra); a run asked for them elsewhere fails at once, before any work."""
    if precision != "4bit":
        return None
    import torch

    if not torch.cuda.is_available():
        return ("SWITCHBOARD_TRAIN_PRECISION=4bit (QLoRA through bitsandbytes) needs a CUDA GPU and this machine "
                "has none: use auto, fp32 or bf16")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "SWITCHBOARD_TRAIN_PRECISION=4bit needs the gpu extra: pip install 'switchboard[gpu]'"
    return None


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate (linear decay)"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training examples (at least)"})
    batch_size: int = field(
        default=0, metadata={"help": "examples per optimiser step; 0: one 40th of the data, clamped to 2..16"}
    )
    min_steps: int = field(
        default=240, metadata={"help": "more epochs are run when the data is too small for this many steps"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(
        default="all-linear", metadata={"help": "'all-linear' or comma-separated module names, e.g. q_proj,v_proj"}
    )
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps spent warming up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 where the hardware has it), 'fp32' or 'bf16'; '4bit' on GPU"}
    )
    loss_vocabulary: str = field(
        default="full",
        metadata={"help": "'full': softmax over the whole vocabulary; 'labels': over the labels' tokens only, "
                          "as the scorer renormalises"},
    )
    head: bool = field(
        default=True, metadata={"help": "mix the label scores with a linear head on the final hidden state "
                                        "(classifier/routing/head.py); off: the label scores alone"})
    vote: bool = field(
        default=True, metadata={"help": "mix in the vote of the nearest trained-on messages' labels, at the share the "
                                        "calibration fold chooses (classifier/routing/neighbours.py)"})
    best_on_fold: bool = field(
        default=True, metadata={"help": "watch the loss on the calibration fold while training, keep the adapter "
                                        "where it was lowest and stop once it stops falling"})
    min_fold: int = field(
        default=30, metadata={"help": "the smallest calibration fold trusted to choose the epoch kept and the "
                                      "head's share; below it training runs its full course and the share is even"})
    vote_min_fold: int = field(
        default=300, metadata={"help": "the smallest calibration fold trusted to choose the neighbour vote's share; "
                                       "below it the vote is left out (folds of about 40 chose it and lost)"})
    fold_evaluations: int = field(default=10, metadata={"help": "times the fold's loss is measured in a run"})
    patience: int = field(default=3, metadata={"help": "measurements without a new lowest loss before stopping"})
    max_text_tokens: int = field(default=96, metadata={"help": "query tokens kept; longer queries are cut"})
    seed: int = field(default=13, metadata={"help": "seed for shuffling and LoRA initialisation"})

    def for_examples(self, n: int) -> TrainConfig:
        """The recipe with batch size and epochs fixed for `n` examples.

        Small data needs many small steps: at 10 examples a department, 240 steps of 2 were far more
        accurate than 15 steps of 16 (docs/quality.md, "BANKING77"). Large data keeps batches of 16 and
        the minimum of 3 epochs, so the run time stays linear.
        """
        batch = self.batch_size or min(16, max(2, n // 40))
        steps_per_epoch = max(1, -(-n // batch))
        epochs = max(self.epochs, -(-self.min_steps // steps_per_epoch))
        return replace(self, batch_size=batch, epochs=float(epochs))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
