"""The prompt and the label wording, tokenised the same way for training and for scoring.

The fine-tuned model needs no instructions or examples: a short prompt keeps latency down, and
the wording of each label is what the model learns to write after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PROMPT_VERSION = 1


@dataclass(frozen=True)
class PromptFormat:
    """How a query becomes token ids. Saved beside every adapter and read back with it."""

    prefix: str = "Customer message: "
    suffix: str = "\nDepartment:"
    label_prefix: str = " "
    max_text_tokens: int = 96
    humanise_labels: bool = True
    version: int = PROMPT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptFormat:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def wording(self, label: str) -> str:
        """`card_arrival` reads as `card arrival`: plain words let the base model's knowledge help."""
        words = label.replace("_", " ").rstrip("?").strip() if self.humanise_labels else label
        return self.label_prefix + (words or label)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, text: str) -> list[int]:
    """Token ids of the prompt; a long text is cut to `max_text_tokens`, never refused."""
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"][: fmt.max_text_tokens]
    tail = tokenizer(fmt.suffix, add_special_tokens=False)["input_ids"]
    return prefix_ids(tokenizer, fmt) + text_ids + tail


def prefix_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat) -> list[int]:
    """The ids every prompt starts with, whatever the text: their key/value cache can be shared."""
    bos = [tokenizer.bos_token_id] if _uses_bos(tokenizer) else []
    return bos + tokenizer(fmt.prefix, add_special_tokens=False)["input_ids"]


def label_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, label: str) -> list[int]:
    """The completion for a label: its wording then end-of-sequence, so no label is a prefix of another."""
    ids = tokenizer(fmt.wording(label), add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]


def _uses_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "add_bos_token", False)) and tokenizer.bos_token_id is not None
