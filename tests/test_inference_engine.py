"""Classifying through a vLLM server (classifier/serving/engine_router.py), against a loopback vLLM of the same
endpoints (fakes/vllm_api.py) running the tiny Llama with real PEFT adapters trained here."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from classifier.model.base_model import LoadOptions, load_base_model, model_source
from classifier.routing.router import LoraRouter
from classifier.serving.active_router import NoActiveModel
from classifier.serving.engine_router import SERVED_PREFIX, EngineClient, EngineError, make_engine_router
from core.settings import Settings
from fakes.vllm_api import FakeVLLM
from store.db import transaction
from store.examples import add_examples
from store.registry import promote, register_model, registry_lookup
from tests.support import EXAMPLES, FAST, trainer_deps, wait_until
from trainer import evaluation
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training
from trainer.snapshot import take_snapshot

# On a GPU host with vLLM 0.34.0: SWITCHBOARD_TEST_VLLM="vllm serve" runs the last test against the real server.
# SWITCHBOARD_TEST_VLLM=".venv/bin/python fakes/vllm_api.py" runs it against this fake as a process.
REAL_VLLM = os.environ.get("SWITCHBOARD_TEST_VLLM")
LABEL_SCORES = replace(FAST, learning_rate=3e-2, head=False)  # what the engine serves: the label scores alone
WEAK = replace(FAST, learning_rate=1e-6, epochs=1, head=False)
MORE = [(f"{word} request {i}", label) for i in range(8)
        for word, label in (("alpha", "Orders"), ("beta", "Billing"), ("gamma", "Shipping"))]
QUERIES = [*(text for text, _ in EXAMPLES[::4]), "where is my parcel", "I was charged twice", "alpha beta",
           "gamma gamma gamma", "cancel the order please", "Customer message:", "Department: Billing",
           "nothing to do with anything", "beta gamma alpha request", "refund", "my account"]


def train(settings, sessions, config=LABEL_SCORES, examples=EXAMPLES):  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        add_examples(session, examples=examples)
    return run_training(trainer_deps(settings, sessions),
                        RunOptions(config=config, progress=False, alternatives=AlternativeSet.NONE))


def first_active_second_trained(settings, sessions):  # type: ignore[no-untyped-def]
    """A weak model 1, active, and a model 2 trained on more examples, registered but not promoted."""
    first = train(settings, sessions, WEAK)
    second = train(settings, sessions, examples=MORE)
    with transaction(sessions) as session:
        promote(session, model_id=first.model_id, by="test")
    return first, second


def served(engine: FakeVLLM) -> list[str]:
    return [card["id"] for card in EngineClient(engine.url).call("/v1/models")["data"]]


def test_every_department_gets_the_in_process_label_score_probability(settings, sessions, tiny_model_dir, tmp_path):
    report = train(settings, sessions, replace(LABEL_SCORES, head=True))  # a head the engine cannot serve
    folder = tmp_path / "calibrated"  # the same weights, with a temperature and a fold's doubts to apply
    shutil.copytree(report.adapter, folder)
    meta = json.loads((folder / "switchboard.json").read_text())
    meta["calibration"]["temperature"] = 1.7
    (folder / "switchboard.json").write_text(json.dumps(meta))
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    local = LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=folder, name="local")
    assert local.head is not None and local.calibration.temperature == 1.7
    local.head = None  # the label scores, temperature applied, as the engine reads them
    here = local.classify_batch(QUERIES)
    ordered = sorted(1 - a.confidence for a in here)
    split = max(range(5, 15), key=lambda j: ordered[j + 1] - ordered[j])
    middle = (ordered[split] + ordered[split + 1]) / 2
    doubts = [middle * i / 19 for i in range(20)]  # a fold as doubtful as the surer of the queries
    meta["calibration"]["reference_doubts"] = doubts
    (folder / "switchboard.json").write_text(json.dumps(meta))
    with FakeVLLM(tiny_model_dir) as engine:
        router = make_engine_router(engine.url + "/v1",
                                    base_model=settings.base_model, cache_dir=settings.cache_dir,
                                    lookup=lambda: (report.model_id, str(folder), str(tiny_model_dir)))
        with pytest.raises(NoActiveModel):
            router.classify("before any model")
        assert router.refresh() is True and router.model_id == report.model_id
        there = router.classify_batch(QUERIES)
    assert len(there) == len(QUERIES) == 20 and len({b.department for b in there}) == 3
    assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(here, there, strict=True) for k in a.scores) < 1e-4
    assert [a.department for a in here] == [b.department for b in there]
    assert {(b.model_id, b.model_name) for b in there} == {(report.model_id, f"model {report.model_id}")}
    # no hidden states through the engine: "none of these" is the doubt, placed among the fold's doubts
    assert [b.none_of_these for b in there] == [1 - a.confidence > middle for a in here]
    assert 5 <= sum(b.none_of_these for b in there) <= 14
    calls = engine.posted("/v1/completions")
    assert len(calls) == 2  # the switch's first answer, then all 20 texts x 3 labels in one request
    assert calls[1]["model"] == f"{SERVED_PREFIX}{report.model_id}" and len(calls[1]["prompt"]) == 60
    assert calls[1]["prompt_logprobs"] == 0 and calls[1]["max_tokens"] == 1
    assert all(isinstance(token, int) for prompt in calls[1]["prompt"] for token in prompt)


def test_a_promotion_loads_the_new_adapter_switches_then_unloads_the_old(settings, sessions, tiny_model_dir):
    first, second = first_active_second_trained(settings, sessions)
    with FakeVLLM(tiny_model_dir) as engine:
        router = make_engine_router(engine.url,
                                    base_model=settings.base_model, cache_dir=settings.cache_dir,
                                    lookup=registry_lookup(sessions), poll_seconds=0.05)
        router.start()
        answers, errors, stop = [], [], threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    answers.append(router.classify("alpha question 3"))
                except Exception as exc:  # any failure during the switch is a dropped request
                    errors.append(exc)

        asker = threading.Thread(target=keep_asking)
        try:
            assert router.model_id == first.model_id
            assert served(engine) == [str(tiny_model_dir), f"{SERVED_PREFIX}{first.model_id}"]
            asker.start()
            wait_until(lambda: len(answers) + len(errors) >= 3, timeout=20, what="answers before the switch")
            with transaction(sessions) as session:
                promote(session, model_id=second.model_id, by="test")
            wait_until(lambda: router.model_id == second.model_id, timeout=20, what="the switch")
            after = len(answers) + len(errors)
            wait_until(lambda: len(answers) + len(errors) >= after + 3, timeout=20, what="answers after the switch")
        finally:
            stop.set()
            if asker.is_alive():
                asker.join()
            router.stop()
        names = served(engine)
    assert errors == [] and router.swaps == 2
    assert names == [str(tiny_model_dir), f"{SERVED_PREFIX}{second.model_id}"]
    old, new = f"{SERVED_PREFIX}{first.model_id}", f"{SERVED_PREFIX}{second.model_id}"
    assert engine.posted("/v1/load_lora_adapter") == [{"lora_name": old, "lora_path": first.adapter},
                                                      {"lora_name": new, "lora_path": second.adapter}]
    assert engine.posted("/v1/unload_lora_adapter") == [{"lora_name": old}]
    posts = [(path, body) for method, path, body in engine.calls if method == "POST"]
    loaded = posts.index(("/v1/load_lora_adapter", {"lora_name": new, "lora_path": second.adapter}))
    first_answer = next(i for i, (path, body) in enumerate(posts) if i > loaded and body.get("model") == new)
    assert first_answer < posts.index(("/v1/unload_lora_adapter", {"lora_name": old}))  # answered, then switched
    models_seen = [a.model_id for a in answers]
    assert models_seen[0] == first.model_id and models_seen[-1] == second.model_id
    assert answers[-1].department == "Orders"


def test_an_adapter_the_engine_cannot_load_leaves_the_old_one_serving(settings, sessions, tiny_model_dir, tmp_path,
                                                                      caplog):
    first = train(settings, sessions)
    too_big = tmp_path / "rank64"  # vLLM refuses a rank above --max-lora-rank with a 500
    shutil.copytree(first.adapter, too_big)
    config = json.loads((too_big / "adapter_config.json").read_text())
    (too_big / "adapter_config.json").write_text(json.dumps({**config, "r": 64}))
    with FakeVLLM(tiny_model_dir) as engine:
        router = make_engine_router(engine.url,
                                    base_model=settings.base_model, cache_dir=settings.cache_dir,
                                    lookup=registry_lookup(sessions))
        router.refresh()
        for folder in (str(tmp_path / "missing"), str(too_big)):
            with transaction(sessions) as session:
                bad = register_model(session, adapter_path=folder, base_model=str(tiny_model_dir),
                                     labels=["Billing", "Orders", "Shipping"], hyperparameters={}, metrics={},
                                     parent_id=None)
                promote(session, model_id=bad.id, by="test")
            assert router.refresh() is False and router.model_id == first.model_id
            assert router.classify("beta question 2").model_id == first.model_id
        assert "cannot serve model" in caplog.text and "greater than max_lora_rank 16" in caplog.text
        assert [b["lora_path"] for b in engine.posted("/v1/load_lora_adapter")] == [first.adapter, str(too_big)]
        assert engine.posted("/v1/unload_lora_adapter") == []
        assert served(engine) == [str(tiny_model_dir), f"{SERVED_PREFIX}{first.model_id}"]

        engine.restart()  # a restarted vLLM has forgotten runtime-loaded adapters: loaded again on a 404
        assert router.classify("beta question 2").model_id == first.model_id
        health = router.health()  # serving, but not the registry's model: said, without the engine's address
        assert health["status"] == "degraded" and health["reasons"] == [
            f"serving model {first.model_id}, registry says {bad.id}: the inference engine refused it "
            "(the inference engine answered HTTP 500)"]
        assert engine.url.split("//")[1] not in json.dumps(health)
        assert served(engine) == [str(tiny_model_dir), f"{SERVED_PREFIX}{first.model_id}"]
    with pytest.raises(EngineError, match="cannot reach"):  # the engine gone: an error, never a made-up answer
        router.classify("beta question 2")
    assert router.health()["status"] == "degraded"


def test_the_gate_scores_both_contenders_through_the_engine_as_in_process(settings, sessions, tiny_model_dir,
                                                                          tmp_path):
    first = train(settings, sessions)
    with FakeVLLM(tiny_model_dir) as engine:
        second = train(settings.model_copy(update={"inference_url": engine.url}), sessions, examples=MORE)
        names = served(engine)
    assert names == [str(tiny_model_dir)]  # both gate adapters unloaded
    loads = engine.posted("/v1/load_lora_adapter")
    assert [b["lora_path"] for b in loads] == [second.adapter, first.adapter]
    assert [b["lora_name"] for b in engine.posted("/v1/unload_lora_adapter")] == [b["lora_name"] for b in loads]
    asked = {body["model"] for body in engine.posted("/v1/completions")}
    assert {b["lora_name"] for b in loads} <= asked  # each contender was scored by the engine
    with sessions() as session:
        snapshot = take_snapshot(session)
    assert snapshot.digest == second.snapshot and len(snapshot.holdout) >= 6  # the holdout the gate judged on
    assert second.candidate is not None and second.current is not None
    mistakes = second.known_mistakes  # None when the holdout shows no earlier mistake: both then get none right
    rights = (mistakes.candidate_correct, mistakes.current_correct) if mistakes else (0, 0)
    for gated, right, folder in ((second.candidate, rights[0], second.adapter),
                                 (second.current, rights[1], first.adapter)):
        base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
        here = evaluation.Evaluated(LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=Path(folder),
                                                            name="here"), snapshot)
        assert here.holdout is not None
        assert (gated.macro_f1, gated.accuracy, gated.n) == (
            here.holdout.metrics["macro_f1"], here.holdout.metrics["accuracy"], here.holdout.metrics["n"])
        assert right == here.mistakes_right


def test_a_candidate_the_engine_refuses_is_not_promoted(settings, sessions, tiny_model_dir):
    with FakeVLLM(tiny_model_dir, max_lora_rank=2) as engine:  # below the candidate's rank: vLLM answers 500
        report = train(settings.model_copy(update={"inference_url": engine.url}), sessions)
    assert report.promoted is False and "the inference engine cannot serve the candidate" in report.reason
    assert "greater than max_lora_rank 2" in report.reason
    assert report.candidate is not None  # scored here all the same, so the report still says how good it was
    with sessions() as session:
        from store.registry import active_model

        assert active_model(session) is None


@pytest.mark.skipif(not REAL_VLLM, reason='needs vLLM: SWITCHBOARD_TEST_VLLM="vllm serve" on a GPU host')
def test_a_real_vllm_serves_and_gates_what_the_in_process_scorer_computes(home, database_url, sessions,
                                                                          embedded_cache, tmp_path):
    """The embedded SmolLM2-135M (vLLM's kernels want real head sizes), served as the README says."""
    settings = Settings(SWITCHBOARD_HOME=home, DATABASE_URL=database_url)
    settings.cache_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.symlink_to(embedded_cache)
    first = train(settings, sessions, WEAK)
    source = model_source(settings.base_model, settings.cache_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*shlex.split(REAL_VLLM or ""), source, "--port", str(port), "--enable-lora", "--max-lora-rank", "16",
               "--max-loras", "3", "--dtype", "float32", "--gpu-memory-utilization", "0.3", "--enforce-eager"]
    engine = subprocess.Popen(command, env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})
    url = f"http://127.0.0.1:{port}"
    try:
        def answering() -> bool:
            assert engine.poll() is None, f"{command} exited with {engine.returncode}"
            try:
                EngineClient(url, timeout_s=2).call("/v1/models")
            except EngineError:
                return False
            return True

        wait_until(answering, timeout=900, what="the engine's start")
        served_there = settings.model_copy(update={"inference_url": url})
        second = train(served_there, sessions, examples=MORE)  # the gate scores both through the engine
        assert second.current is not None and second.candidate is not None
        with transaction(sessions) as session:
            promote(session, model_id=first.model_id, by="test")
        router = make_engine_router(url, registry_lookup(sessions), base_model=settings.base_model,
                                    cache_dir=settings.cache_dir)
        assert router.refresh() and router.model_id == first.model_id
        with transaction(sessions) as session:
            promote(session, model_id=second.model_id, by="test")
        assert router.refresh() and router.model_id == second.model_id
        ids = [card["id"] for card in EngineClient(url).call("/v1/models")["data"]]
        assert ids == [source, f"{SERVED_PREFIX}{second.model_id}"]  # the gate's and the first are unloaded
        there = router.classify_batch(QUERIES)
        base, tokenizer = load_base_model(settings.base_model, cache_dir=settings.cache_dir,
                                          options=LoadOptions(precision="fp32"))
        here = LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=Path(second.adapter),
                                       name="here").classify_batch(QUERIES)
        assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(here, there, strict=True) for k in a.scores) < 1e-3
        assert [a.department for a in here] == [b.department for b in there]
    finally:
        engine.terminate()
        engine.wait(timeout=60)


def test_a_candidate_in_shadow_is_served_by_the_engine_beside_the_active_adapter(settings, sessions, tiny_model_dir):
    from classifier.serving.engine_router import SHADOW_PREFIX

    first, second = first_active_second_trained(settings, sessions)
    with FakeVLLM(tiny_model_dir) as engine:
        router = make_engine_router(engine.url,
                                    base_model=settings.base_model, cache_dir=settings.cache_dir,
                                    lookup=registry_lookup(sessions), poll_seconds=3600)
        assert router.refresh() and router.model_id == first.model_id
        active = router.classify("alpha question 3")
        shadowed = router.classify_shadow(["alpha question 3"], second.model_id, second.adapter)[0]
        assert served(engine) == [str(tiny_model_dir), f"{SERVED_PREFIX}{first.model_id}",
                                  f"{SHADOW_PREFIX}{second.model_id}"]
        again = router.classify_shadow(["beta question 1", "gamma question 2"], second.model_id, second.adapter)
        assert [c.model_id for c in again] == [second.model_id] * 2
        assert len([c for c in engine.posted("/v1/load_lora_adapter")
                    if c["lora_name"] == f"{SHADOW_PREFIX}{second.model_id}"]) == 1  # loaded once
        assert router.classify("alpha question 3").scores == active.scores  # the active adapter still answers
    assert shadowed.model_id == second.model_id and shadowed.scores != active.scores
