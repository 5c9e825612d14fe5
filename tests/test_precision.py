"""The training precision is a setting (SWITCHBOARD_TRAIN_PRECISION), recorded in each report; QLoRA's 4-bit is refused
in one line where there is no CUDA; and a hub id as the base model resolves from the Hugging Face cache offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from cli.compose import run_options
from core.settings import Settings
from store.registry import active_model
from tests.support import LOOP, seed, trainer_deps
from trainer.alternatives import AlternativeSet
from trainer.pipeline import run_training

ROOT = Path(__file__).resolve().parent.parent


def settings_with(settings: Settings, precision: str) -> Settings:
    return settings.model_copy(update={"train_precision": Settings(SWITCHBOARD_TRAIN_PRECISION=precision)
                                       .train_precision})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_4bit_is_refused_at_once_in_one_line_on_a_machine_without_cuda(settings, sessions):
    seed(sessions)
    four_bit = settings_with(settings, "4bit")
    options = run_options(four_bit, trigger="test", progress=False, config=LOOP, alternatives=AlternativeSet.NONE)
    assert options.config.precision == "4bit"
    report = run_training(trainer_deps(four_bit, sessions), options)
    assert report.status == "failed" and not report.promoted
    assert report.reason == ("SWITCHBOARD_TRAIN_PRECISION=4bit (QLoRA through bitsandbytes) needs a CUDA GPU and "
                             "this machine has none: use auto, fp32 or bf16")
    with sessions() as session:
        assert active_model(session) is None
    assert not settings.adapters_dir.exists() or not list(settings.adapters_dir.glob("run*"))  # nothing trained


def test_the_precision_trained_at_is_in_the_report(settings, sessions):
    seed(sessions)
    fp32 = settings_with(settings, "fp32")
    report = run_training(trainer_deps(fp32, sessions), run_options(fp32, trigger="test", progress=False, config=LOOP,
                                                                    alternatives=AlternativeSet.NONE))
    assert report.training["precision"] == "fp32"
    with pytest.raises(ValidationError, match="SWITCHBOARD_TRAIN_PRECISION"):
        Settings(SWITCHBOARD_TRAIN_PRECISION="8bit")


def test_compose_trains_on_the_gpu_with_qlora():
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    assert services["trainer-gpu"]["environment"]["SWITCHBOARD_TRAIN_PRECISION"].endswith("4bit}")
    assert "SWITCHBOARD_TRAIN_PRECISION" not in (services["trainer"].get("environment") or {})


def test_a_hub_id_resolves_from_the_hugging_face_cache_offline(tiny_model_dir, tmp_path):
    """The path a GPU host takes (`meta-llama/Llama-3.2-1B-Instruct` from its cache), with the tiny model laid out
    as the hub lays out a download (models--org--name/{refs/main, snapshots/<commit>/...}), in a new process with
    HF_HUB_OFFLINE=1 as the container sets it: the weights load, and a model not in the cache fails in one line."""
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--switchboard-test--tiny-llama"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    code = ("import sys; from pathlib import Path\n"
            "from classifier.model.base_model import load_base_model, ModelLoadError\n"
            "model, tokenizer = load_base_model(sys.argv[1], cache_dir=Path(sys.argv[2]))\n"
            "print(model.config.model_type, len(tokenizer('hello').input_ids))\n"
            "try:\n    load_base_model('switchboard-test/not-cached', cache_dir=Path(sys.argv[2]))\n"
            "except ModelLoadError as exc:\n    print(exc)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code, "switchboard-test/tiny-llama", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, refused = done.stdout.strip().splitlines()
    assert loaded.startswith("llama ")
    assert refused.startswith("cannot load base model 'switchboard-test/not-cached'")
