"""Real LoRA training of a tiny Llama: weights move where they should, and the guards hold."""

import math
from dataclasses import replace

import pytest
import torch

from router.base_model import load_base_model
from router.prompt import PromptFormat
from trainer.config import TrainConfig
from trainer.lora import TrainingFailed, train_lora

EXAMPLES = [(f"{word} question {i}", label) for i in range(12)
            for word, label in (("alpha", "Orders"), ("beta", "Billing"), ("gamma", "Shipping"))]
FAST = TrainConfig(learning_rate=1e-1, epochs=12, batch_size=4, lora_r=8, lora_alpha=16, precision="fp32")


@pytest.fixture
def tiny(tiny_model_dir, tmp_path):
    return load_base_model(str(tiny_model_dir), cache_dir=tmp_path)


def test_lora_training_changes_only_the_adapter_and_lowers_the_loss(tiny):
    model, tokenizer = tiny
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(), config=FAST,
                        progress=False)
    assert result.trainable_parameters > 0 and result.supervised_tokens > 0
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: non-zero means it trained
    for name, param in result.model.get_base_model().named_parameters():
        if "lora_" not in name:
            original = name.replace("base_layer.", "")
            assert torch.equal(param, base_before[original]), name
    assert result.final_loss < 0.6 * result.first_loss


def test_no_trainable_parameters_fails_clearly(tiny):
    model, tokenizer = tiny
    with pytest.raises(TrainingFailed, match="trainable"):
        train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(),
                   config=replace(FAST, target_modules="no_such_module"), progress=False)


def test_a_loss_that_is_not_a_number_fails_the_run(tiny):
    model, tokenizer = tiny
    with torch.no_grad():
        model.get_decoder().norm.weight.fill_(float("nan"))  # a corrupt base model
    with pytest.raises(TrainingFailed, match="not a number"):
        train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(),
                   config=replace(FAST, epochs=1), progress=False)


def test_no_supervised_tokens_fails_clearly(tiny, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr("trainer.lora.label_ids", lambda *_: [])
    with pytest.raises(TrainingFailed, match="supervised"):
        train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(), config=FAST,
                   progress=False)


def test_training_examples_per_second_is_reported(tiny):
    model, tokenizer = tiny
    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES[:8], prompt=PromptFormat(),
                        config=replace(FAST, epochs=1), progress=False)
    assert result.steps == 2 and math.isfinite(result.final_loss) and result.examples_per_second > 0
