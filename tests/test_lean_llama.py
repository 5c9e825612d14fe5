"""The lean Llama that serving runs gives transformers' probabilities, and serves without importing it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from classifier.model.base_model import LoadOptions, load_base_model
from classifier.model.lean_llama import LeanLlama
from classifier.model.serving_model import LeanTokenizer, lean_unavailable, load_serving_model
from classifier.routing.prompt import PromptFormat, label_ids, prefix_ids, prompt_ids
from classifier.routing.scoring import LabelTrie, score_labels, score_labels_plain, shared_prefix
from tests.support import ROOT, banking77


def assert_lean_matches(folder, texts: list[str], labels: list[str]) -> None:
    lean, lean_tokenizer = load_serving_model(str(folder), cache_dir=folder)
    hf, hf_tokenizer = load_base_model(str(folder), cache_dir=folder)
    assert isinstance(lean, LeanLlama) and isinstance(lean_tokenizer, LeanTokenizer)
    prompt = PromptFormat()
    prompts = [prompt_ids(lean_tokenizer, prompt, text) for text in texts]
    assert prompts == [prompt_ids(hf_tokenizer, prompt, text) for text in texts]
    assert lean_tokenizer.pad_token_id == hf_tokenizer.pad_token_id
    trie = LabelTrie({label: label_ids(lean_tokenizer, prompt, label) for label in labels})
    assert trie.paths == LabelTrie({label: label_ids(hf_tokenizer, prompt, label) for label in labels}).paths
    served = score_labels(lean, trie, prompts, pad_token_id=lean_tokenizer.pad_token_id,
                          prefix=shared_prefix(lean, prefix_ids(lean_tokenizer, prompt)))
    reference = score_labels_plain(hf, trie, prompts, pad_token_id=hf_tokenizer.pad_token_id)
    assert (served - reference).abs().max().item() < 1e-5
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-5
    assert clear.sum() > 0.9 * len(texts)
    assert (served.argmax(1)[clear] == reference.argmax(1)[clear]).all()


def test_departments_on_the_whole_test_set_match_transformers(tiny_model_dir):
    texts, labels = banking77("departments")
    assert_lean_matches(tiny_model_dir, texts, labels)


def test_intents_scored_on_the_lean_cache_match_transformers(tiny_model_dir):
    texts, labels = banking77("intents")
    assert_lean_matches(tiny_model_dir, texts[::25], labels)


@pytest.mark.parametrize("variant", [
    {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
    {"tie_word_embeddings": False, "num_key_value_heads": 4},
], ids=["llama3-rope", "untied-head-no-gqa"])
def test_other_llama_shapes_match_transformers(tiny_model_dir, tmp_path, variant):
    """Llama 3.2's rotary scaling and an untied head, on a padded batch, with and without a cache."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = LlamaConfig.from_pretrained(tmp_path / "m")
    for key, value in variant.items():
        setattr(config, key, value)
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    hf, _ = load_base_model(str(tmp_path / "m"), cache_dir=tmp_path)
    lean, _ = load_serving_model(str(tmp_path / "m"), cache_dir=tmp_path)
    assert isinstance(lean, LeanLlama)
    ids = torch.randint(4, 300, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    mask[2, 12:] = 0
    with torch.inference_mode():
        want = hf.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        got = lean.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        head = lean.get_decoder()(input_ids=ids[:, :5], use_cache=True).past_key_values
        tail = lean.get_decoder()(input_ids=ids[:, 5:], attention_mask=mask, past_key_values=head).last_hidden_state
    real = mask.bool()
    assert (got - want).abs()[real].max().item() < 1e-5
    assert (tail - want[:, 5:]).abs()[real[:, 5:]].max().item() < 1e-5


def test_what_the_lean_model_cannot_run_goes_through_transformers(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(config | {"attention_bias": True}))
    assert lean_unavailable(str(tmp_path / "m"), LoadOptions()) == "attention or MLP bias"
    assert lean_unavailable(str(tiny_model_dir), LoadOptions(precision="4bit")) is not None
    assert lean_unavailable("HuggingFaceTB/SmolLM2-135M-Instruct", LoadOptions()) is not None
    (tmp_path / "m" / "config.json").write_text(json.dumps(config | {"hidden_act": "gelu"}))
    model, _ = load_serving_model(str(tmp_path / "m"), cache_dir=tmp_path)
    assert not isinstance(model, LeanLlama)


def test_a_served_router_does_not_import_transformers(tiny_model_dir, tmp_path):
    """What keeps `switchboard classify` and `serve` starting fast: transformers' import is most of it."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from classifier.model.serving_model import load_serving_model\n"
        f"model, tokenizer = load_serving_model({str(tiny_model_dir)!r}, cache_dir=Path({str(tmp_path)!r}))\n"
        "from classifier.routing.router import LoraRouter\n"
        "from classifier.routing.prompt import PromptFormat\n"
        "router = LoraRouter(model=model, tokenizer=tokenizer, labels=['Cards', 'Transfers'], prompt=PromptFormat(),\n"
        "                    name='t', cache_prefix=True)\n"
        "print(router.classify('my card is lost').department, 'transformers' in sys.modules, 'peft' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    department, transformers_loaded, peft_loaded = out.stdout.split()
    assert department in ("Cards", "Transfers")
    assert (transformers_loaded, peft_loaded) == ("False", "False")


@pytest.mark.slow
def test_the_embedded_model_serves_lean_with_transformers_results(embedded_cache):
    from classifier.model.base_model import embedded_model_dir

    folder = embedded_model_dir(embedded_cache)
    texts, labels = banking77("departments")
    hf_tokenizer = load_base_model("smollm2-135m", cache_dir=embedded_cache)[1]
    lean_tokenizer = LeanTokenizer(folder)
    assert all(lean_tokenizer(t, add_special_tokens=False)["input_ids"]
               == hf_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts)
    assert_lean_matches(folder, texts[::20], labels)
