"""Merging an adapter without PEFT gives PEFT's merged weights, undoes exactly, and refuses other kinds."""

from __future__ import annotations

import pytest

from classifier.model.base_model import load_base_model
from classifier.model.lora_merge import AdapterError, read_lora


def save_adapter(tiny_model_dir, cache, folder, **lora):  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model

    model, _ = load_base_model(str(tiny_model_dir), cache_dir=cache)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False, **lora))
    peft_model.save_pretrained(str(folder))
    return peft_model


def test_the_merge_matches_peft_and_comes_out_again(tiny_model_dir, tmp_path):
    peft_merged = save_adapter(tiny_model_dir, tmp_path, tmp_path / "adapter").merge_and_unload().state_dict()
    model, _ = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    deltas = read_lora(tmp_path / "adapter")
    assert len(deltas.factors) == 2 * 7  # every linear layer of both blocks
    deltas.apply(model, sign=+1)
    merged = model.state_dict()
    assert any((merged[k] - original[k]).abs().max() > 1e-3 for k in merged)  # it really changed something
    assert all(torch_close(merged[k], peft_merged[k]) for k in merged)
    deltas.apply(model, sign=-1)
    assert all(torch_close(v, original[k]) for k, v in model.state_dict().items())


def torch_close(a, b) -> bool:  # type: ignore[no-untyped-def]
    return bool((a - b).abs().max() <= 1e-6)


@pytest.mark.parametrize("kind", [{"use_dora": True}, {"use_rslora": True}])
def test_anything_but_plain_lora_is_refused(tiny_model_dir, tmp_path, kind):
    save_adapter(tiny_model_dir, tmp_path, tmp_path / "other", **kind)
    with pytest.raises(AdapterError, match="not a plain LoRA adapter"):
        read_lora(tmp_path / "other")
