"""What `python -m bench.speed` measures on: the base model, an adapter of the production shape, a store
where that adapter is active, and BANKING77 queries. Built once per run in a work folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bench.harness import ROOT

BUNDLED = ROOT / "data" / "banking77"

# Llama-3.2-1B's published dimensions (config.json of meta-llama/Llama-3.2-1B-Instruct); the weights
# are random, since none can be downloaded here, and speed does not depend on them.
LLAMA_1B_SHAPE = {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True,
                  "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
                  "head_dim": 64}
# The same layout shrunk, to check the GPU path's code on any machine in seconds.
TINY_SHAPE = {**LLAMA_1B_SHAPE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "head_dim": 16}


def queries(data: Path | None = None) -> list[tuple[str, str]]:
    """(text, department) for BANKING77's test split: the bundled copy unless another folder is given."""
    folder = data or BUNDLED
    departments = json.loads((folder / "departments.json").read_text())
    with (folder / "test.csv").open(newline="") as handle:
        return [(row["text"], departments[row["category"]]) for row in csv.DictReader(handle)]


def training_examples(n: int, data: Path | None) -> list[tuple[str, str]]:
    """n labelled examples: BANKING77's training split when there is one, else the test split cycled."""
    folder = data if data and (data / "train.csv").exists() else BUNDLED
    departments = json.loads((folder / "departments.json").read_text())
    name = "train.csv" if (folder / "train.csv").exists() else "test.csv"
    with (folder / name).open(newline="") as handle:
        rows = [(row["text"], departments[row["category"]]) for row in csv.DictReader(handle)]
    return [rows[i % len(rows)] for i in range(n)]


def prepare(work: Path, model: str, cache: Path) -> dict[str, Any]:
    """Writes the base model (random-weight shapes only), an untrained adapter and an active store."""
    from classifier.model.base_model import EMBEDDED_MODEL, embedded_model_dir

    work.mkdir(parents=True, exist_ok=True)
    if model == "embedded":
        base_model, source = EMBEDDED_MODEL, embedded_model_dir(cache)
    else:
        shape = LLAMA_1B_SHAPE if model == "llama-1b-shape" else TINY_SHAPE
        source = _random_llama(work / "base", shape, embedded_model_dir(cache))
        base_model = str(source)
    adapter = _untrained_adapter(source, work / "adapter", base_model)
    home = work / "home"
    _activate(home, cache, adapter, base_model)
    return {"base_model": base_model, "source": str(source), "adapter": str(adapter), "home": str(home)}


def _random_llama(folder: Path, shape: dict[str, Any], tokenizer_source: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)  # SmolLM2's ids all fall inside 128,256
    config = LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).bfloat16().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _untrained_adapter(source: Path, folder: Path, base_model: str) -> Path:
    """A LoRA adapter of the production recipe's shape (r 16, all linear layers), saved as training saves it.

    Its B matrices are random, not zero, so merging it really changes the weights.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from classifier.routing.adapters import AdapterMeta, publish
    from classifier.routing.prompt import PromptFormat
    from trainer.config import TrainConfig

    if folder.exists():
        return folder
    config = TrainConfig()
    model = AutoModelForCausalLM.from_pretrained(source)
    lora = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                                            task_type="CAUSAL_LM", init_lora_weights=False))
    scratch = folder.with_name(folder.name + ".scratch")
    lora.save_pretrained(str(scratch))
    labels = sorted(set(json.loads((BUNDLED / "departments.json").read_text()).values()))
    return publish(scratch, folder, AdapterMeta(labels=labels, prompt=PromptFormat(), base_model=base_model,
                                                hyperparameters=config.to_dict()))


def _activate(home: Path, cache: Path, adapter: Path, base_model: str) -> None:
    from classifier.routing.adapters import check_adapter_dir
    from store.db import make_engine, session_factory, transaction
    from store.migrations import migrate
    from store.registry import active_model, promote, register_model

    home.mkdir(parents=True, exist_ok=True)
    if not (home / "cache").exists():
        (home / "cache").symlink_to(cache.resolve())
    engine = make_engine(f"sqlite:///{home / 'switchboard.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        if active_model(session) is None:
            model = register_model(session, adapter_path=str(adapter), base_model=base_model,
                                   labels=check_adapter_dir(adapter).labels, hyperparameters={}, metrics={},
                                   parent_id=None)
            promote(session, model_id=model.id, by="bench")  # type: ignore[arg-type]
