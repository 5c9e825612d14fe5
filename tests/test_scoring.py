"""The fast scoring path (length-sorted batches, the prompts' cache reused for deeper branches)
gives the plain path's departments and probabilities on the BANKING77 test set."""

from __future__ import annotations

import pytest

from classifier.model.base_model import load_base_model
from classifier.routing.prompt import PromptFormat, label_ids, prefix_ids, prompt_ids
from classifier.routing.scoring import LabelTrie, score_labels, score_labels_plain, shared_prefix
from tests.support import banking77


def assert_same(model, tokenizer, texts: list[str], labels: list[str]) -> None:
    prompt = PromptFormat()
    trie = LabelTrie({label: label_ids(tokenizer, prompt, label) for label in labels})
    prompts = [prompt_ids(tokenizer, prompt, text) for text in texts]
    fast = score_labels(model, trie, prompts, pad_token_id=tokenizer.pad_token_id, batch_size=32)
    cached = score_labels(model, trie, prompts, pad_token_id=tokenizer.pad_token_id, batch_size=32,
                          prefix=shared_prefix(model, prefix_ids(tokenizer, prompt)))
    plain = score_labels_plain(model, trie, prompts, pad_token_id=tokenizer.pad_token_id)
    assert fast.shape == cached.shape == plain.shape == (len(texts), len(labels))
    assert (fast - plain).abs().max().item() < 1e-5
    assert (cached - plain).abs().max().item() < 1e-5
    top2 = plain.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-5  # an exact tie may break either way
    assert clear.sum() > 0.9 * len(texts)
    assert (fast.argmax(1)[clear] == plain.argmax(1)[clear]).all()
    assert (cached.argmax(1)[clear] == plain.argmax(1)[clear]).all()


def test_departments_on_the_whole_test_set_match_the_plain_path(tiny_model_dir, tmp_path):
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    texts, labels = banking77("departments")
    assert len(texts) == 3080
    assert_same(model, tokenizer, texts, labels)


def test_intents_whose_tokens_branch_deep_match_the_plain_path(tiny_model_dir, tmp_path):
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    texts, labels = banking77("intents")
    trie = LabelTrie({label: label_ids(tokenizer, PromptFormat(), label) for label in labels})
    assert sum(1 for prefix in trie.branches if prefix) > 10  # the cache path really runs
    assert_same(model, tokenizer, texts[::20], labels)


@pytest.mark.slow
def test_the_embedded_model_matches_the_plain_path(embedded_cache):
    model, tokenizer = load_base_model("smollm2-135m", cache_dir=embedded_cache)
    texts, labels = banking77("departments")
    assert_same(model, tokenizer, texts[::40], labels)  # 77 queries: bench/speed.py checks its own 100 too
    texts, labels = banking77("intents")
    assert_same(model, tokenizer, texts[::308], labels)  # 10 queries x 77 labels, each label a plain pass


def test_the_pooled_state_is_each_prompts_own_tokens_averaged_whatever_its_batch_padding(tiny_model_dir, tmp_path):
    import torch

    from classifier.routing.scoring import score_labels_detailed

    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    texts, labels = banking77("departments")
    texts = sorted(texts[:40], key=len)[::8]  # lengths far apart: the short ones are padded in the batch
    prompt = PromptFormat()
    trie = LabelTrie({label: label_ids(tokenizer, prompt, label) for label in labels})
    prompts = [prompt_ids(tokenizer, prompt, text) for text in texts]
    start = len(prefix_ids(tokenizer, prompt))
    with torch.inference_mode():
        alone = [model.get_decoder()(input_ids=torch.tensor([p])).last_hidden_state[0] for p in prompts]
    for prefix, skip in ((None, 0), (shared_prefix(model, prefix_ids(tokenizer, prompt)), start)):
        assert score_labels_detailed(model, trie, prompts, pad_token_id=tokenizer.pad_token_id).pooled is None
        scores = score_labels_detailed(model, trie, prompts, pad_token_id=tokenizer.pad_token_id, prefix=prefix,
                                       pool=True)
        assert scores.pooled is not None
        expected = torch.stack([states[skip:].mean(0) for states in alone])
        assert (scores.pooled - expected).abs().max().item() < 1e-4
        assert (scores.pooled[0] - scores.pooled[-1]).abs().max().item() > 1e-3
