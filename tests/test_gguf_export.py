"""`export-model ID --gguf FILE`: a trained adapter merged into a tiny Llama, written as a GGUF, reads
back (gguf's reader, then transformers' GGUF loader) as a router giving the same departments."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from classifier.model.base_model import load_base_model
from classifier.routing.adapters import AdapterMeta, new_adapter_dir, publish
from classifier.routing.prompt import PromptFormat, prompt_ids
from classifier.routing.router import LoraRouter
from cli.main import main
from store.db import transaction
from store.registry import register_model
from trainer.config import TrainConfig
from trainer.lora import train_lora

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
LABELS = ["Accounts", "Billing", "Customer Care", "Orders", "Refunds", "Shipping"]
QUICK = TrainConfig(learning_rate=1e-2, epochs=4, batch_size=8, min_steps=0, lora_r=4, lora_alpha=8, precision="fp32",
                    loss_vocabulary="labels", head=False)
LLAMA_KEYS = ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
              "vocab_size"]


def rows(name: str) -> list[dict[str, str]]:
    with (SAMPLE / name).open() as handle:
        return list(csv.DictReader(handle))


def queries() -> list[str]:
    """100 queries: half training texts, half held-out texts reworded the way customers write."""
    train, held_out = rows("train.csv"), rows("eval.csv")
    return [r["text"] for r in train[::3][:50]] + [
        variant for r in held_out[:17] for variant in (
            f"hi, {r['text'].lower()} please", f"{r['text'].upper()}!!", f"urgent: {r['text']} (order 12345)")][:50]


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A LoRA trained on half the sample for a few seconds, published as a training run publishes it."""
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("cache"))
    examples = [(r["text"], r["label"]) for r in rows("train.csv")[::2]]
    result = train_lora(model=model, tokenizer=tokenizer, examples=examples, prompt=PromptFormat(), config=QUICK,
                        progress=False)
    scratch, final = new_adapter_dir(tmp_path_factory.mktemp("adapters"), name="run0001")
    result.model.save_pretrained(str(scratch))
    return publish(scratch, final, AdapterMeta(labels=LABELS, prompt=PromptFormat(), base_model=str(tiny_model_dir),
                                               hyperparameters=QUICK.to_dict()))


@pytest.fixture
def model_id(trained_adapter, settings, sessions, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    """The trained adapter in this test's store, registered, and the CLI's environment pointing at that store."""
    adapter_dir = Path(shutil.copytree(trained_adapter, settings.adapters_dir / trained_adapter.name))
    with transaction(sessions) as session:
        registered = register_model(session, adapter_path=str(adapter_dir), base_model=settings.base_model,
                                    labels=LABELS, hyperparameters=QUICK.to_dict(), metrics={}, parent_id=None)
    for name, value in (("SWITCHBOARD_HOME", settings.home), ("SWITCHBOARD_BASE_MODEL", settings.base_model),
                        ("DATABASE_URL", settings.database_url)):
        monkeypatch.setenv(name, str(value))
    assert registered.id is not None
    return registered.id


def export(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(["export-model", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_gguf_reads_back_as_the_same_router(settings, model_id, tmp_path, capsys):  # type: ignore[no-untyped-def]
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    file = tmp_path / "out" / "classifier.gguf"
    file.parent.mkdir()
    code, out, err = export(capsys, str(model_id), "--gguf", str(file), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == model_id and report["departments"] == LABELS and report["dtype"] == "f16"
    assert report["bytes"] == file.stat().st_size and [p.name for p in file.parent.iterdir()] == ["classifier.gguf"]

    reader = gguf.GGUFReader(file)
    field = {name: f.contents() for name, f in reader.fields.items()}
    config = json.loads((Path(settings.base_model) / "config.json").read_text())
    assert field["general.architecture"] == "llama" and field["general.name"] == f"switchboard model {model_id}"
    assert all(f"llama.{key}" in field for key in LLAMA_KEYS)
    assert field["llama.block_count"] == 2 and field["llama.attention.head_count_kv"] == 2
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "gpt-2"
    assert len(field["tokenizer.ggml.tokens"]) == config["vocab_size"] == len(field["tokenizer.ggml.token_type"])
    assert field["tokenizer.ggml.merges"] and field["tokenizer.ggml.eos_token_id"] == 2
    assert field["switchboard.labels"] == LABELS and field["switchboard.model_id"] == model_id
    names = {t.name: t.tensor_type.name for t in reader.tensors}
    assert len(names) == 2 + 9 * 2 and "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    assert names["token_embd.weight"] == "F16" and names["blk.0.attn_norm.weight"] == "F32"

    # The merged router in process, and one rebuilt from nothing but the file.
    base, tokenizer = load_base_model(settings.base_model, cache_dir=settings.cache_dir)
    adapter_dir = Path(settings.adapters_dir) / "run0001"
    reference = LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=adapter_dir, name="in process")
    loaded = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    prompt = PromptFormat.from_dict(json.loads(field["switchboard.prompt"]))
    rebuilt = LoraRouter(model=loaded, tokenizer=loaded_tokenizer, labels=field["switchboard.labels"], prompt=prompt,
                         name="from gguf")
    texts = queries()
    assert len(texts) == 100
    assert all(prompt_ids(tokenizer, prompt, t) == prompt_ids(loaded_tokenizer, prompt, t) for t in texts)
    expected, got = reference.classify_batch(texts), rebuilt.classify_batch(texts)
    assert len({c.department for c in expected}) >= 3  # a router that answers one department proves nothing
    assert [c.department for c in got] == [c.department for c in expected]
    assert max(abs(a.confidence - b.confidence) for a, b in zip(got, expected, strict=True)) < 1e-2

    # f32 holds the merged weights exactly: q and k come back through llama.cpp's permutation and its inverse.
    code, out, err = export(capsys, str(model_id), "--gguf", str(file), "--dtype", "f32", "--force")
    assert code == 0, err
    assert out.startswith(f"wrote {file} (") and f"f32, 20 tensors): model {model_id}, departments Accounts, " in out
    exact = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32).state_dict()
    merged = reference.model.state_dict()
    assert exact.keys() == merged.keys()
    assert all(torch.equal(exact[k], merged[k]) for k in merged)


def test_mistakes_are_one_line_and_leave_files_alone(settings, model_id, tmp_path, capsys):  # type: ignore[no-untyped-def]
    existing = tmp_path / "taken.gguf"
    existing.write_text("not yours")
    code, _, err = export(capsys, str(model_id), "--gguf", str(existing))
    assert code == 2 and "exists already; pass --force" in err and len(err.strip().splitlines()) == 1
    assert existing.read_text() == "not yours"

    code, _, err = export(capsys, "999", "--gguf", str(tmp_path / "new.gguf"))
    assert code == 2 and "no model with id 999" in err and len(err.strip().splitlines()) == 1

    adapter_dir = Path(settings.adapters_dir) / "run0001"
    adapter_dir.rename(adapter_dir.with_name("moved"))
    code, _, err = export(capsys, str(model_id), "--gguf", str(tmp_path / "new.gguf"))
    assert code == 2 and "adapter folder" in err and "is missing" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gguf") == ["taken.gguf"]


def test_a_disk_that_fills_while_writing_leaves_no_file(settings, model_id, tmp_path, capsys):  # type: ignore[no-untyped-def]
    """The export runs as a user runs it, in a process allowed files of half the GGUF's size: its writes past
    that fail as they would on a full disk (EFBIG; Python ignores SIGXFSZ)."""
    import os
    import resource
    import subprocess
    import sys

    whole = tmp_path / "whole.gguf"
    code, out, _ = export(capsys, str(model_id), "--gguf", str(whole), "--json")
    assert code == 0
    limit = json.loads(out)["bytes"] // 2
    whole.unlink()

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    folder = tmp_path / "out"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-m", "cli.main", "export-model", str(model_id), "--gguf",
                           str(folder / "classifier.gguf")], env=dict(os.environ), preexec_fn=small_disk,
                          capture_output=True, text=True, timeout=600)
    said = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and said.startswith(f"switchboard: could not write {folder / 'classifier.gguf'}"), said
    assert said.endswith("nothing was written") and list(folder.iterdir()) == []


def test_only_splits_llama_cpp_reproduces_are_named():
    from classifier.serving.gguf_export import ExportError, _pre_tokenizer

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert _pre_tokenizer(byte_level) == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    assert _pre_tokenizer({"type": "Sequence", "pretokenizers": [digits, byte_level]}) == "smollm"
    for other in ({"type": "Metaspace", "replacement": "\u2581"}, {**byte_level, "use_regex": False}, None):
        with pytest.raises(ExportError, match="pre-tokenizer"):
            _pre_tokenizer(other)
