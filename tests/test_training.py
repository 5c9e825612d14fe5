"""Real LoRA training of a tiny Llama: weights move where they should, and the guards hold."""

import math
from dataclasses import replace

import pytest
import torch

from classifier.model.base_model import load_base_model
from classifier.routing.prompt import PromptFormat
from tests.support import EXAMPLES, FAST
from trainer.config import TrainConfig
from trainer.lora import TrainingFailed, train_lora


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
    assert result.final_loss < 0.7 * result.first_loss  # 0.33 to 0.59 over five seeds; untrained, about 1


def test_a_seed_gives_the_same_run_whatever_ran_before(tiny_model_dir, tmp_path):
    runs = []
    for draws in (0, 7):
        torch.rand(draws)  # the process's random state differs before each run
        model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
        result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(),
                            config=replace(FAST, epochs=2), progress=False)
        runs.append((result.final_loss, [p.detach().clone() for n, p in result.model.named_parameters()
                                         if "lora_" in n]))
    (first_loss, first_weights), (second_loss, second_weights) = runs
    assert first_loss == second_loss
    assert all(torch.equal(a, b) for a, b in zip(first_weights, second_weights, strict=True))


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


def test_training_examples_per_second_is_reported(tiny):
    model, tokenizer = tiny
    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES[:8], prompt=PromptFormat(),
                        config=replace(FAST, epochs=1), progress=False)
    assert result.steps == 2 and math.isfinite(result.final_loss) and result.examples_per_second > 0


def test_the_label_vocabulary_loss_trains_the_scores_classification_reads(tiny):
    model, tokenizer = tiny
    from classifier.routing.router import LoraRouter

    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(),
                        config=replace(FAST, loss_vocabulary="labels", learning_rate=3e-2), progress=False)
    assert result.final_loss < 0.6 * result.first_loss
    router = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer,
                        labels=["Billing", "Orders", "Shipping"], prompt=PromptFormat(), name="t")
    predicted = [c.department for c in router.classify_batch([t for t, _ in EXAMPLES])]
    assert sum(p == y for p, (_, y) in zip(predicted, EXAMPLES, strict=True)) >= 0.9 * len(EXAMPLES)


def test_an_unknown_loss_vocabulary_is_refused_before_training(tiny):
    model, tokenizer = tiny
    with pytest.raises(TrainingFailed, match="loss_vocabulary"):
        train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, prompt=PromptFormat(),
                   config=replace(FAST, loss_vocabulary="everything"), progress=False)


@pytest.mark.parametrize(("n", "batch", "epochs"), [(80, 2, 6.0), (146, 3, 5.0), (770, 16, 5.0), (10_003, 16, 3.0)])
def test_small_data_gets_small_batches_and_enough_steps(n, batch, epochs):
    resolved = TrainConfig().for_examples(n)
    assert (resolved.batch_size, resolved.epochs) == (batch, epochs)
    assert resolved.epochs * -(-n // batch) >= TrainConfig().min_steps


def test_an_explicit_batch_size_and_no_minimum_steps_are_kept():
    assert TrainConfig(batch_size=4, epochs=2, min_steps=0).for_examples(80) == TrainConfig(batch_size=4, epochs=2,
                                                                                            min_steps=0)
