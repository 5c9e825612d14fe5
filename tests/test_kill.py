"""kill -9 at each step of a training run, of an import and of a migration; then the next command.

Each case runs the real `switchboard` in its own process, which a profile hook SIGKILLs when one step's
function is called or returns (nothing is patched and nothing in the product knows about it), then runs the
next command as a user would:
every label is still there, the active model is unchanged or the new one complete, nothing is stuck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.routing.adapters import check_adapter_dir
from tests.support import ENV_PREFIXES, EXAMPLES, run_cli

pytestmark = pytest.mark.slow

KILLER = """
import importlib, os, signal, sys, threading
module_name, attr, when = sys.argv[1], sys.argv[2], sys.argv[3]
step = getattr(importlib.import_module(module_name), attr).__code__
event = "call" if when == "before" else "return"
def kill_at_the_step(frame, what, arg):
    if what == event and frame.f_code is step:
        os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(kill_at_the_step)
threading.setprofile(kill_at_the_step)
from cli.main import main
sys.exit(main(sys.argv[4:]))
"""

def killed_at(module: str, attr: str, when: str, *args: str, env: dict[str, str]) -> int:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)} | env
    return subprocess.run([sys.executable, "-c", KILLER, module, attr, when, *args], env=full_env,
                          capture_output=True, text=True, cwd=os.getcwd(), timeout=600).returncode


@pytest.fixture
def env(home, tiny_model_dir, tmp_path):
    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir)}
    data = tmp_path / "labels.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in EXAMPLES))
    assert run_cli("import", str(data), env=env).returncode == 0
    return env


def status(env) -> dict:
    answer = run_cli("status", "--json", env=env)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def train(env) -> dict:
    answer = run_cli("train", "--json", "--epochs", "1", "--alternatives", "none", env=env)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


@pytest.mark.parametrize(("module", "attr", "when"), [
    ("trainer.pipeline", "take_snapshot", "before"),  # the snapshot
    ("trainer.candidate", "train_lora", "before"),  # training
    ("trainer.pipeline", "publish", "after"),  # the adapter renamed into place, not yet registered
    ("trainer.pipeline", "register_model", "before"),  # inside the transaction that registers and promotes
])
def test_a_run_killed_at_any_step_leaves_labels_and_model_and_the_next_run_completes(env, module, attr, when,
                                                                                     tmp_path):
    first = train(env)
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"text": "delta question 9", "label": "Orders"}))
    assert run_cli("import", str(more), env=env).returncode == 0  # something new, so the run trains
    before = status(env)
    assert killed_at(module, attr, when, "train", "--epochs", "1", "--alternatives", "none", env=env) == -9
    after = status(env)
    assert after["examples"] == before["examples"] and after["active_model"]["id"] == first["model_id"]
    assert train(env)["status"] in ("promoted", "not_promoted")  # not stuck behind the dead run's lock
    final = status(env)
    assert [final["examples"][k] for k in ("train", "holdout")] == [before["examples"][k] for k in ("train", "holdout")]
    assert final["training"] is False
    check_adapter_dir(Path(final["active_model"]["adapter"]))  # unchanged, or the new one complete


def test_an_import_killed_before_it_commits_stores_nothing_and_the_next_one_stores_everything(home, tiny_model_dir,
                                                                                              tmp_path):
    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir)}
    data = tmp_path / "labels.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in EXAMPLES))
    assert killed_at("store.examples", "add_examples", "after", "import", str(data), env=env) == -9
    assert sum(status(env)["examples"][k] for k in ("train", "holdout")) == 0
    assert run_cli("import", str(data), env=env).returncode == 0
    assert sum(status(env)["examples"][k] for k in ("train", "holdout")) == len(EXAMPLES)


def test_a_store_whose_first_migration_was_killed_opens_on_the_next_command(home, tiny_model_dir):
    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir)}
    assert killed_at("store.migrations", "_add_columns", "after", "status", env=env) == -9  # in migration 4
    assert status(env)["examples"]["train"] == 0


def test_a_first_run_killed_while_promoting_leaves_no_model_and_the_next_one_promotes(env):
    before = status(env)
    assert killed_at("trainer.pipeline", "promote", "before", "train", "--epochs", "1", "--alternatives", "none",
                     env=env) == -9
    after = status(env)
    assert after["active_model"] is None and after["examples"] == before["examples"]
    report = train(env)
    assert report["status"] == "promoted"
    check_adapter_dir(Path(status(env)["active_model"]["adapter"]))
