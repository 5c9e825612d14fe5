"""Cold start on the baseline and the hand-over, and distillation within its budget: the real `openai` client
against the loopback server, the real store, and the tiny real Llama for the hand-over."""

from __future__ import annotations

import math

import pytest
from sqlmodel import select

from bot.baseline_router import BaselineRouter, ColdStartRouter
from classifier.baseline_client import make_openai_client
from classifier.model.base_model import load_base_model
from classifier.serving.active_router import ActiveModelRouter, NoActiveModel
from core.settings import Settings
from fakes.openai_api import FakeOpenAI
from store.db import transaction
from store.examples import add_examples, get_department, label_query, labelled_examples, upsert_department
from store.registry import registry_lookup
from store.slack import query_for_text
from store.tables import BaselinePrediction, Label, LabelSource, Query, Split
from tests.support import LOOP, MORE, TRUTH, seed, trainer_deps
from trainer.alternatives import AlternativeSet
from trainer.baseline import distil, fixed_prompt
from trainer.pipeline import RunOptions, run_training

API_KEY = "sk-test-cold-start"


def client_for(fake):
    return make_openai_client(API_KEY, fake.base_url)


def test_the_baseline_routes_with_the_probability_its_logprobs_give_and_records_the_cost(sessions):
    seed(sessions)
    with FakeOpenAI(lambda text: (TRUTH[text], 0.54)) as fake:
        result = BaselineRouter(client_for(fake), sessions, model="gpt-4o").classify("alpha question 1")
    body = fake.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert result.department == TRUTH["alpha question 1"] and result.confidence == pytest.approx(0.54, abs=1e-6)
    runner_up = sorted(result.scores.values(), reverse=True)[1]
    assert runner_up == pytest.approx(0.46, abs=1e-6)  # the alternative first token names another department
    assert result.model_name == "baseline gpt-4o" and result.model_id is None and result.usage is not None
    assert result.usage.prompt_tokens == fake.usage["prompt_tokens"] > 0
    expected = (result.usage.prompt_tokens * 2.5 + result.usage.completion_tokens * 10) / 1e6
    assert result.usage.cost_usd == pytest.approx(expected)
    from classifier.routing.outcomes import needs_triage

    assert needs_triage(result, threshold=0.5, margin=0.1)  # 0.54 against 0.46: too close to call


def test_a_multi_token_department_multiplies_its_tokens_probabilities(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"lost card {i}", "Identity & Security") for i in range(5)]
                     + [(f"fee {i}", "Fees") for i in range(5)])
    with FakeOpenAI(lambda _text: ("Identity & Security", 0.8)) as fake:
        result = BaselineRouter(client_for(fake), sessions, model="gpt-4o").classify("someone used my card")
    assert result.department == "Identity & Security"
    assert result.confidence == pytest.approx(math.exp(math.log(0.8)), abs=1e-6)


def test_a_department_sharing_the_answers_first_token_is_not_given_its_probability(sessions):
    from classifier.routing.outcomes import needs_triage

    with transaction(sessions) as session:  # "Card" starts both names: the answer's own token is no rival
        add_examples(session, examples=[(f"my card {i}", "Cards") for i in range(5)]
                     + [(f"paid by card {i}", "Card Payments") for i in range(5)] + [(f"top up {i}", "Top-ups")
                                                                                   for i in range(5)])
    with FakeOpenAI(lambda _text: ("Cards", 0.9)) as fake:
        result = BaselineRouter(client_for(fake), sessions, model="gpt-4o").classify("my card is bent")
    assert result.confidence == pytest.approx(0.9, abs=1e-6) and result.scores["Card Payments"] == 0.0
    assert result.scores["Top-ups"] == pytest.approx(0.1, abs=1e-6)
    assert not needs_triage(result, threshold=0.5, margin=0.1)


def test_without_a_baseline_or_a_model_the_message_goes_to_triage(sessions):
    class NoModel:
        model_id = None

        def classify(self, text):
            raise NoActiveModel("none")

    with pytest.raises(NoActiveModel):
        ColdStartRouter(NoModel(), None).classify("hello")
    dead = FakeOpenAI(TRUTH)
    dead.stop()
    seed(sessions)
    with pytest.raises(NoActiveModel):  # an unreachable baseline is triage too, never a crash
        ColdStartRouter(NoModel(), BaselineRouter(client_for(dead), sessions, model="gpt-4o",
                                                  backoff_s=0.0)).classify("hello")


def test_the_first_model_that_beats_the_baseline_takes_over_routing(settings, sessions, tiny_model_dir, tmp_path):
    seed(sessions)
    seed(sessions, MORE)
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    active = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=0.05)
    active.start()
    try:
        with FakeOpenAI(lambda _text: "Orders") as fake:  # a poor baseline: everything is Orders
            router = ColdStartRouter(active, BaselineRouter(client_for(fake), sessions, model="gpt-4o"))
            before = router.classify("beta question 2")
            report = run_training(trainer_deps(settings, sessions, baseline=client_for(fake)),
                                  RunOptions(config=LOOP, progress=False, alternatives=AlternativeSet.NONE))
            assert report.promoted, report.reason
            assert "the gain over the baseline is not noise" in report.reason
            active.refresh()
            after = router.classify("beta question 2")
    finally:
        active.stop()
    assert before.model_name == "baseline gpt-4o" and before.department == "Orders"
    assert after.model_id == report.model_id and after.usage is None


def routed_messages(sessions, texts):
    with transaction(sessions) as session:
        return [query_for_text(session, text=text, channel="C1", ts=f"{i}.5", user="U", event_id=None).id
                for i, text in enumerate(texts)]


def test_distillation_labels_unlabelled_messages_for_training_only_within_its_budget(sessions):
    seed(sessions)
    texts = [f"gamma question {i}" for i in range(12, 40)]
    routed_messages(sessions, texts)
    with FakeOpenAI(lambda _text: "Shipping") as fake:
        client = client_for(fake)
        one_request = distil(client, sessions, model="gpt-4o", departments=["Billing", "Orders", "Shipping"],
                             budget_usd=1.0)
        assert one_request.labelled == len(texts) and one_request.requests == len(texts)
        per_request = one_request.cost_usd / one_request.requests
        routed_messages(sessions, [f"gamma ask {i}" for i in range(20)])
        limited = distil(client, sessions, model="gpt-4o", departments=["Billing", "Orders", "Shipping"],
                         budget_usd=per_request * 5.5)
    assert limited.requests == 5 and limited.labelled == 5 and limited.stopped_by_budget
    assert limited.cost_usd <= per_request * 5.5
    with sessions() as session:
        distilled = [e for e in labelled_examples(session) if e.source == LabelSource.BASELINE]
        assert len(distilled) == len(texts) + 5 and {e.split for e in distilled} == {Split.TRAIN}
        assert {e.label for e in distilled} == {"Shipping"}


def test_distillation_uses_answers_already_paid_for_and_never_overrules_a_person(sessions):
    seed(sessions)
    paid, labelled_by_agent = routed_messages(sessions, ["beta ask 1", "beta ask 2"])
    prompt = fixed_prompt(sessions, ["Billing", "Orders", "Shipping"])
    with transaction(sessions) as session:
        session.add(BaselinePrediction(query_id=paid, prompt_version=prompt.version, model="gpt-4o",
                                       department="Billing", prompt_tokens=100, completion_tokens=5))
    with transaction(sessions) as session:
        label_query(session, query=session.get(Query, labelled_by_agent),
                    department=get_department(session, name="Orders"), source=LabelSource.AGENT, author="U1")
    with FakeOpenAI(lambda _text: "Shipping") as fake:
        result = distil(client_for(fake), sessions, model="gpt-4o", departments=["Billing", "Orders", "Shipping"],
                        budget_usd=0.0)
    assert fake.requests == [] and result.cached == 1 and result.labelled == 1 and result.cost_usd == 0
    with sessions() as session:
        labels = {row.query_id: row.source for row in session.exec(select(Label))}
    assert labels[paid] == LabelSource.BASELINE and labels[labelled_by_agent] == LabelSource.AGENT


def test_in_cold_start_the_bot_routes_with_the_baseline_and_keeps_what_each_message_cost(home, sessions):
    from bot.deps import BotDeps
    from bot.rules import BotRules
    from fakes.bot_server import BotServer
    from fakes.slack_api import FakeSlack
    from store.tables import Prediction, SlackMessage
    from tests.support import DEPARTMENTS, route, text_of

    class NoModelYet:
        model_id = None

        def classify(self, text):
            raise NoActiveModel("none")

    with transaction(sessions) as session:
        for name, emoji, channel in DEPARTMENTS:
            upsert_department(session, name=name, emoji=emoji, channel=channel)
    answers = {"my parcel is late": ("Shipping", 0.97), "a refund or a new one?": ("Refunds", 0.52)}
    with FakeSlack() as slack, FakeOpenAI(answers) as fake:
        settings = Settings(SWITCHBOARD_HOME=home, SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_REPLY_STYLE="internal")
        router = ColdStartRouter(NoModelYet(), BaselineRouter(client_for(fake), sessions, model="gpt-4o"))
        bot = BotServer(BotDeps(rules=BotRules.of(settings), sessions=sessions, router=router), slack)
        try:
            routed = route(bot, "my parcel is late", ts="1700000100.000100")
            unsure = route(bot, "a refund or a new one?", ts="1700000100.000200")
        finally:
            bot.close()
    assert "Routed to *Shipping* (97% confident)" in text_of(routed) and "baseline gpt-4o" in text_of(routed)
    assert "Needs triage" in text_of(unsure)  # the same triage rule, on the logprobs' probability
    with sessions() as session:
        predictions = session.exec(select(Prediction).order_by(Prediction.id)).all()
        messages = session.exec(select(SlackMessage)).all()
        cached = session.exec(select(BaselinePrediction)).all()
    assert [p.baseline_model for p in predictions] == ["gpt-4o", "gpt-4o"]
    assert sum(p.prompt_tokens for p in predictions) == fake.usage["prompt_tokens"]
    assert all(p.cost_usd and p.cost_usd > 0 and p.model_version_id is None for p in predictions)
    assert {m.routed_to for m in messages} == {"Shipping", None}
    assert sorted(c.department for c in cached) == ["Refunds", "Shipping"]  # paid for once, reused by the trainer
