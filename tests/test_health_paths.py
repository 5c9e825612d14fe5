"""`/healthz` says why the registry's model is not served without a file path (the port may be public);
the log keeps the paths."""

from __future__ import annotations

import json
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bot.server import HttpServer
from classifier.model.base_model import load_base_model
from classifier.routing.adapters import META_FILE, PEFT_FILES
from classifier.serving.active_router import ActiveModelRouter, RegistryWatcher
from classifier.serving.public_text import without_paths
from store.db import transaction
from store.registry import promote, register_model, registry_lookup


def missing(folder: Path) -> None:
    shutil.rmtree(folder)


def corrupt_meta(folder: Path) -> None:
    (folder / META_FILE).write_text("{not json")


def corrupt_weights(folder: Path) -> None:
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 64)


def an_adapter_folder(folder: Path) -> Path:
    """The files a registered adapter has, readable as far as the weights (which a damage may break)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / META_FILE).write_text(json.dumps({"labels": ["Billing", "Shipping"], "prompt": {},
                                                "base_model": "tiny"}))
    assert "adapter_model.safetensors" in PEFT_FILES
    save_file({"x": torch.zeros(1)}, str(folder / "adapter_model.safetensors"))
    return folder


def get_health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(("damage", "said"), [(missing, "adapter folder is missing"),
                                              (corrupt_meta, "adapter folder is corrupt"),
                                              (corrupt_weights, "adapter_model.safetensors is corrupt")],
                         ids=["missing", "corrupt meta", "corrupt weights"])
def test_healthz_says_what_is_wrong_with_the_model_and_names_no_path(home, sessions, tiny_model_dir, settings, caplog,
                                                                     damage, said):
    folder = an_adapter_folder(home / "adapters" / "0001 with a space")
    damage(folder)
    with transaction(sessions) as session:
        model = register_model(session, adapter_path=str(folder), base_model=str(tiny_model_dir),
                               labels=["Billing", "Shipping"], hyperparameters={}, metrics={}, parent_id=None)
        promote(session, model_id=model.id, by="test")
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=3600)
    server = HttpServer(None, router.health, host="127.0.0.1", port=0).start()
    try:
        with caplog.at_level(logging.ERROR):
            assert router.refresh() is False
        status, health = get_health(server.port)
    finally:
        server.stop()
        router.stop()
    assert status == 503 and health["status"] == "degraded" and health["registry_model"] == model.id
    assert len(health["reasons"]) == 1 and said in health["reasons"][0]
    assert health["reasons"][0].startswith(f"serving no model, registry says {model.id}: ")
    body = json.dumps(health)
    assert str(home) not in body and "0001 with a space" not in body and "/" not in body and "\\" not in body
    assert str(folder) in caplog.text  # the operator's log has the full story


def test_a_model_of_another_base_is_named_by_its_last_part_only(tmp_path, tiny_model_dir, caplog):
    other = tmp_path / "models" / "llama-3-8b"
    lookup = lambda: (7, str(tmp_path / "adapters" / "0007"), str(other))  # noqa: E731
    watcher = RegistryWatcher(lookup, base_model_name=str(tiny_model_dir), serving=lambda: 6,
                              load=lambda *_: None, poll_seconds=3600, where="this process")
    with caplog.at_level(logging.ERROR):
        assert watcher.refresh() is False
    problem = watcher.problem()
    assert problem == f"serving model 6, registry says 7: it was trained on llama-3-8b, but this process serves " \
                      f"{Path(tiny_model_dir).name}"
    assert str(other) in caplog.text


def test_a_failure_from_the_engine_or_a_swap_loses_its_paths_too(tmp_path):
    folder = str(tmp_path / "adapters" / "0003")
    failures = iter([f"{folder}: the base model has no module model.layers.0.q_proj",
                     "the swap failed and was undone (OSError: [Errno 28] No space left: '/var/tmp/x/y.bin')"])
    served = {"id": 2}
    watcher = RegistryWatcher(lambda: (3, folder, "tiny"), base_model_name="tiny", serving=lambda: served["id"],
                              load=lambda *_: next(failures), poll_seconds=3600, where="the engine")
    watcher.refresh()
    assert watcher.problem() == ("serving model 2, registry says 3: the adapter folder: the base model has no "
                                 "module model.layers.0.q_proj")
    served["id"] = 3  # the pointer moved on and came back: the next failure is said afresh
    watcher.refresh()
    served["id"] = 2
    watcher.refresh()
    assert watcher.problem() == ("serving model 2, registry says 3: the swap failed and was undone (OSError: "
                                 "[Errno 28] No space left: 'y.bin')")


@pytest.mark.parametrize(("text", "public"), [
    ("adapter folder {f} is incomplete: switchboard.json is missing or empty",
     "adapter folder is incomplete: switchboard.json is missing or empty"),
    ("{f}/scope_bank.safetensors is corrupt: header too large", "scope_bank.safetensors is corrupt: header too large"),
    ("{f} is not a plain LoRA adapter (dora)", "the adapter folder is not a plain LoRA adapter (dora)"),
    ("cannot open C:\\Users\\ann\\base\\model.bin", "cannot open model.bin"),
    ("the inference engine answered HTTP 404", "the inference engine answered HTTP 404"),
])
def test_without_paths(tmp_path, text, public):
    folder = str(tmp_path / "my adapters" / "0002")
    assert without_paths(text.format(f=folder), folders=[folder]) == public
