"""A hot swap is all or nothing: an adapter that does not fit the base, or a damaged one, is refused before
any weight is touched, is not tried again at every poll, and `/healthz` and `/metrics` say that the
served model is not the registry's, and why, until the registry moves."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bot.metrics import BotMetrics
from classifier.model.base_model import load_base_model
from classifier.model.lora_merge import LoraDeltas, read_lora, swap
from classifier.routing.adapters import check_adapter_path
from classifier.serving.active_router import ActiveModelRouter, ModelTimeout
from store.db import transaction
from store.registry import active_model, promote, register_model, registry_lookup, rollback_checked
from tests.support import EXAMPLES, FAST, seed, trainer_deps, wait_until
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training

TEXTS = [text for text, _ in EXAMPLES[:12]]


def wrongly_shaped(folder: Path) -> None:
    """One lora_B factor one row short: what a mixed-up export or a base of another size gives."""
    file = folder / "adapter_model.safetensors"
    tensors = load_file(str(file))
    name = sorted(k for k in tensors if k.endswith("lora_B.weight"))[-1]
    tensors[name] = tensors[name][:-1].contiguous()
    save_file(tensors, str(file))


def truncated(folder: Path) -> None:
    file = folder / "adapter_model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


@pytest.fixture
def serving(settings, sessions, tiny_model_dir):
    """Model 1 trained and active, served by an ActiveModelRouter that polls only when told."""
    seed(sessions)
    assert run_training(trainer_deps(settings, sessions),
                        RunOptions(config=FAST, progress=False, alternatives=AlternativeSet.NONE)).promoted
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=3600)
    assert router.refresh() and router.model_id == 1
    yield router, base
    router.stop()


def test_a_stuck_model_thread_times_callers_out_and_health_says_degraded_until_it_recovers(serving, tiny_model_dir,
                                                                                        settings, sessions):
    # Model 1 from the fixture, served by a router of its own that says "stalled" after 0.2 s and gives up at 0.3.
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=3600, timeout_s=0.3, stalled_after_s=0.2)
    released = threading.Event()
    assert router.refresh()
    hang = base.get_input_embeddings().register_forward_pre_hook(lambda *_: released.wait() and None)  # hangs
    try:
        with pytest.raises(ModelTimeout, match="did not answer within"):
            router.classify("where is my parcel?")
        health = wait_until(lambda: (h := router.health())["status"] == "degraded" and h, what="degraded health")
        assert "on one request" in health["reasons"][0]
        released.set()
        wait_until(lambda: router.health()["status"] == "ok", what="health back to ok")
        assert router.health()["backlog"] == 0 and router.classify("where is my parcel?").department
    finally:
        released.set()
        hang.remove()
        router.stop()


@pytest.mark.parametrize("damage", [wrongly_shaped, truncated], ids=["wrongly shaped", "truncated"])
def test_an_adapter_that_cannot_be_served_leaves_the_model_exact_and_health_says_why(serving, sessions, tmp_path,
                                                                                      damage, caplog):
    router, base = serving
    weights = {k: v.clone() for k, v in base.state_dict().items()}
    answers = [(a.department, a.scores) for a in router.classify_batch(TEXTS)]
    with sessions() as session:
        first = active_model(session)
    folder = tmp_path / "model-2"
    shutil.copytree(first.adapter_path, folder)
    damage(folder)
    with transaction(sessions) as session:
        bad = register_model(session, adapter_path=str(folder), base_model=first.base_model, labels=first.labels,
                             hyperparameters={}, metrics={}, parent_id=first.id)
        promote(session, model_id=bad.id, by="test")
    with caplog.at_level(logging.ERROR):
        assert [router.refresh() for _ in range(5)] == [False] * 5
    assert caplog.text.count("cannot serve model 2") == 1  # said once, not at every poll
    assert all(torch.equal(v, weights[k]) for k, v in base.state_dict().items())  # not one weight moved
    assert [(a.department, a.scores) for a in router.classify_batch(TEXTS)] == answers
    health = router.health()
    assert health["status"] == "degraded" and health["active_model"] == 1 and health["registry_model"] == 2
    assert health["reasons"][0].startswith("serving model 1, registry says 2: ")
    metrics = BotMetrics().watch(health=router.health, sessions=sessions).exposition().decode()
    assert "switchboard_degraded 1.0" in metrics and "switchboard_registry_model 2.0" in metrics
    rollback_checked(sessions, by="admin", check=check_adapter_path)  # the admin rolls back: all is well again
    router.refresh()
    assert router.health()["status"] == "ok" and router.model_id == 1


def test_a_swap_that_fails_half_way_is_undone(serving, sessions):
    _, base = serving
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with sessions() as session:
        good = read_lora(Path(active_model(session).adapter_path))
    names = list(good.factors)
    a, b = good.factors[names[-1]]
    broken = LoraDeltas(factors={**good.factors, names[-1]: (a, b[:-1])}, scale=good.scale)  # the last one fails
    with pytest.raises(RuntimeError):
        swap(base, old=good, new=broken)
    after = base.state_dict()
    assert max(float((after[k] - v).abs().max()) for k, v in before.items()) < 1e-6


def test_a_candidate_in_shadow_scores_as_if_merged_and_leaves_the_active_model_exact(serving, sessions, tmp_path,
                                                                                     tiny_model_dir, settings):
    from classifier.routing.router import LoraRouter

    router, base = serving
    with sessions() as session:
        active_folder = Path(active_model(session).adapter_path)
    candidate = tmp_path / "candidate"
    shutil.copytree(active_folder, candidate)
    tensors = load_file(str(candidate / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in tensors.items()},
              str(candidate / "adapter_model.safetensors"))
    texts = [e[0] for e in EXAMPLES[:4]]
    served_before = [router.classify(t).scores for t in texts]
    weights_before = {k: v.clone() for k, v in base.state_dict().items()}

    shadowed = [c.scores for c in router.classify_shadow(texts, 99, str(candidate))]
    fresh, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    merged = LoraRouter.from_adapter(base=fresh, tokenizer=tokenizer, adapter_dir=candidate, name="merged")
    expected = [merged.classify(t).scores for t in texts]
    for got, want in zip(shadowed, expected, strict=True):
        assert got.keys() == want.keys() and max(abs(got[k] - want[k]) for k in got) < 1e-4
    assert any(max(abs(s[k] - b[k]) for k in s) > 1e-3 for s, b in zip(shadowed, served_before, strict=True))

    assert [router.classify(t).scores for t in texts] == served_before  # the hooks are gone after each call
    after = base.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights_before.items())
