"""The retraining loop on a tiny real model: warm starts, the GPT-4o gate through a loopback
OpenAI-compatible server, caching, skips, the scheduler's triggers and hot swap in a running router."""

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from classifier.model.base_model import load_base_model
from classifier.serving.active_router import ActiveModelRouter
from core.settings import Settings
from fakes.openai_api import FakeOpenAI
from store.db import transaction
from store.registry import active_model, promote, registry_lookup
from store.run_report import RunReport
from store.runs import TRAINING_LOCK, release_lock, try_acquire_lock
from store.tables import BaselinePrediction
from tests.support import EXAMPLES, FAST, LOOP, MORE, TRUTH, seed, trainer_deps, wait_until
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training
from trainer.schedule import build_scheduler, run_if_enough_labels

WEAK = replace(FAST, learning_rate=1e-6, epochs=1, head=False)  # trains, but learns nothing: a model to beat
def with_openai(settings, fake):
    return settings.model_copy(update={"openai_api_key": Settings(OPENAI_API_KEY="sk-test").openai_api_key,
                                       "openai_base_url": fake.base_url})


def run(settings, sessions, config=LOOP, **kwargs):
    return run_training(trainer_deps(settings, sessions, **kwargs),
                        RunOptions(config=config, progress=False, alternatives=AlternativeSet.NONE))


def test_a_perfect_baseline_keeps_even_a_better_candidate_out(settings, sessions):
    seed(sessions)
    run(settings, sessions, WEAK)
    seed(sessions, MORE)
    with FakeOpenAI(lambda text: TRUTH.get(text) or dict(MORE)[text]) as fake:
        report = run(with_openai(settings, fake), sessions)
    assert report.candidate.macro_f1 > report.current.macro_f1
    assert report.baseline.macro_f1 == 1.0 and report.promoted is False
    assert "does not beat the baseline" in report.reason
    assert report.baseline_cost.requests == report.candidate.n


def test_a_poor_baseline_lets_a_better_candidate_through_warm_started(settings, sessions):
    seed(sessions)
    first = run(settings, sessions, WEAK)
    seed(sessions, MORE)
    with FakeOpenAI(lambda _text: "Orders") as fake:
        report = run(with_openai(settings, fake), sessions)
    assert report.promoted is True, report.reason
    assert report.training["warm_start_model"] == first.model_id
    assert report.training["new"] == sum(1 for e in report_examples(sessions) if e in MORE) > 0
    assert "candidate_vs_baseline" in report.bootstrap_macro_f1_difference
    with sessions() as session:
        assert active_model(session).id == report.model_id


def report_examples(sessions):
    from store.examples import labelled_examples
    from store.tables import Split

    with sessions() as session:
        return [(e.text, e.label) for e in labelled_examples(session, split=Split.TRAIN)]


def test_the_baseline_is_paid_for_once(settings, sessions):
    seed(sessions)
    run(settings, sessions, WEAK)
    seed(sessions, MORE[:12])
    with FakeOpenAI(lambda _text: "Orders") as fake:
        first = run(with_openai(settings, fake), sessions)
        sent = len(fake.requests)
        seed(sessions, MORE[12:] + [(f"zeta ask {i}", "Orders") for i in range(30)])  # shots stay as they were
        second = run(with_openai(settings, fake), sessions)
    assert first.baseline_cost.requests == sent == first.candidate.n
    assert second.baseline_cost.prompt_version == first.baseline_cost.prompt_version
    assert second.baseline_cost.cached == sent  # the shots stayed put, so every old answer is reused
    assert len(fake.requests) - sent == second.baseline_cost.requests == second.candidate.n - sent
    assert second.baseline_cost.cost_usd < first.baseline_cost.cost_usd or sent == second.candidate.n
    with sessions() as session:
        assert len(list(session.exec(select(BaselinePrediction)))) == len(fake.requests)


def test_a_dead_baseline_endpoint_blocks_promotion_and_says_why(settings, sessions):
    seed(sessions)
    dead = FakeOpenAI(lambda _text: "Orders")
    dead.stop()
    report = run(with_openai(settings, dead), sessions)
    assert report.promoted is False and "baseline unavailable" in report.reason
    assert "sk-test" not in report.reason
    with sessions() as session:
        assert active_model(session) is None


def test_a_rate_limited_baseline_is_retried(settings, sessions):
    seed(sessions)
    with FakeOpenAI(TRUTH, failures=[429, 429]) as fake:
        report = run(with_openai(settings, fake), sessions)
    assert report.baseline is not None and report.baseline_cost.retries == 2


def test_nothing_new_labelled_skips_the_run_and_says_so(settings, sessions):
    seed(sessions)
    run(settings, sessions)
    report = run(settings, sessions)
    assert report.promoted is False and report.reason == "nothing new labelled since the last run"


def test_the_report_shows_the_cheap_alternatives_on_the_same_holdout(settings, sessions):
    seed(sessions)
    report = run_training(trainer_deps(settings, sessions),
                          RunOptions(config=LOOP, progress=False, alternatives=AlternativeSet.FAST))
    tfidf = report.alternatives["tfidf_svm"]
    assert tfidf["n"] == report.candidate.n and 0 <= tfidf["macro_f1"] <= 1
    assert set(report.alternatives) == {"tfidf_svm", "minilm_logreg"}  # the fine-tuned encoder: test_alternatives
    assert all(a["n"] == report.candidate.n for a in report.alternatives.values())
    assert report.holdout_sources == {"import": report.candidate.n}  # what the holdout is made of


def test_the_label_count_trigger_runs_only_past_the_threshold_and_never_beside_a_run(settings, sessions):
    seed(sessions)
    calls = []

    def run_now(trigger):
        calls.append(trigger)
        return RunReport(run_id=1, promoted=False, reason="ok")

    assert run_if_enough_labels(sessions, run_now, threshold=len(EXAMPLES) + 1) is None
    assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="other", ttl=__import__("datetime").timedelta(60))
    assert run_if_enough_labels(sessions, run_now, threshold=1) is None
    release_lock(sessions, name=TRAINING_LOCK, owner="other")
    assert run_if_enough_labels(sessions, run_now, threshold=len(EXAMPLES)).reason == "ok"
    assert calls == ["label-threshold"]
    scheduler = build_scheduler(sessions, run_now)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"nightly-retrain", "label-count-retrain"}
    assert "hour='2'" in str(jobs["nightly-retrain"].trigger)


def test_a_running_router_swaps_in_a_promotion_without_dropping_a_request(settings, sessions, tiny_model_dir,
                                                                          tmp_path):
    seed(sessions)
    first = run(settings, sessions, WEAK)
    seed(sessions, MORE)
    second = run(settings, sessions)
    assert second.promoted is True
    with transaction(sessions) as session:
        promote(session, model_id=first.model_id, by="test")
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=0.05)
    router.start()
    try:
        assert router.model_id == first.model_id
        answers, errors, stop = [], [], threading.Event()

        def keep_asking():
            while not stop.is_set():
                try:
                    answers.append(router.classify("alpha question 3"))
                except Exception as exc:  # any failure during the swap is a dropped request
                    errors.append(exc)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        wait_until(lambda: len(answers) + len(errors) >= 3, what="answers before the swap")
        with transaction(sessions) as session:
            promote(session, model_id=second.model_id, by="test")
        wait_until(lambda: router.model_id == second.model_id, what="the swap")
        after = len(answers) + len(errors)
        wait_until(lambda: len(answers) + len(errors) >= after + 3, what="answers after the swap")
        stop.set()
        asker.join()
    finally:
        router.stop()
    assert router.model_id == second.model_id and router.swaps == 2 and errors == []
    models_seen = [a.model_id for a in answers]
    assert models_seen[0] == first.model_id and models_seen[-1] == second.model_id
    assert answers[-1].department == "Orders"


def test_the_merged_served_model_answers_as_a_fresh_load_after_swaps(settings, sessions, tiny_model_dir, tmp_path):
    from classifier.routing.router import LoraRouter

    seed(sessions)
    first = run(settings, sessions, WEAK)
    seed(sessions, MORE)
    second = run(settings, sessions)
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions))
    texts = [text for text, _ in EXAMPLES + MORE]
    for model_id in (first.model_id, second.model_id, first.model_id, second.model_id):
        with transaction(sessions) as session:
            promote(session, model_id=model_id, by="test")
        assert router.refresh()
    served = router.classify_batch(texts)
    fresh_base, _ = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    fresh = LoraRouter.from_adapter(base=fresh_base, tokenizer=tokenizer, name="fresh",
                                    adapter_dir=Path(second.adapter)).classify_batch(texts)
    router.stop()
    assert [a.department for a in served] == [b.department for b in fresh]
    assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(served, fresh, strict=True) for k in a.scores) < 1e-5


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
def test_a_router_keeps_serving_when_the_promoted_adapter_is_unusable(settings, sessions, tiny_model_dir, tmp_path,
                                                                      broken):
    seed(sessions)
    first = run(settings, sessions)
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    target = {"id": None}

    def lookup():
        model_id = target["id"] or first.model_id
        with sessions() as session:
            model = active_model(session)
        return (model_id, model.adapter_path if model_id == first.model_id else str(tmp_path / "nope"),
                model.base_model)

    if broken == "corrupt":
        (tmp_path / "nope").mkdir()
        (tmp_path / "nope" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir), lookup=lookup)
    router.refresh()
    target["id"] = 999
    assert router.refresh() is False and router.model_id == first.model_id
    assert router.classify("beta question 2").model_id == first.model_id


@pytest.mark.slow
def test_switchboard_trainer_retrains_on_labels_and_on_request_and_stops_cleanly(home, tiny_model_dir, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.support import ENV_PREFIXES, run_cli

    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
           "SWITCHBOARD_RETRAIN_AFTER_LABELS": str(len(EXAMPLES))}
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in EXAMPLES))
    assert run_cli("import", str(data), env=env).returncode == 0
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)} | env
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "trainer", "--check-seconds", "0.5",
                                "--poll-seconds", "0.5"],
                               env=full_env, stderr=subprocess.PIPE, text=True)
    try:
        def status_after_a_run() -> dict | None:
            status = json.loads(run_cli("status", "--json", env=env).stdout)
            return status if status["last_run"] is not None else None

        status = wait_until(status_after_a_run, timeout=300, every=1.0, what="the first scheduled run")
        assert status["last_run"]["promoted"] is True and status["active_model"] is not None

        from store.db import make_engine, session_factory
        from store.training_requests import request_training, trainer_running

        store = session_factory(make_engine(f"sqlite:///{home / 'switchboard.db'}"))
        with store() as session:
            assert trainer_running(session)
        request, created = request_training(store, by="UADMIN", channel="CADMIN")
        assert created
        def answered_request():  # type: ignore[no-untyped-def]
            with store() as session:
                answered = session.get(type(request), request.id)
            return answered if answered is not None and answered.finished_at is not None else None

        answered = wait_until(answered_request, timeout=300, every=0.5, what="the retrain request's answer")
        assert answered.run_id == status["last_run"]["run_id"] + 1
        assert answered.outcome.startswith(f"run {answered.run_id}:")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "label-threshold retrain finished" in stderr and "no SLACK_BOT_TOKEN: not posting the report" in stderr
