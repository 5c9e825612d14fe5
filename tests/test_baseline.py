"""The few-shot baseline through the real `openai` client against a loopback server, with the real store."""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from classifier.baseline_client import INVALID, BaselineUnavailable, make_openai_client
from core.settings import Settings
from fakes.openai_api import FakeOpenAI
from store.db import transaction
from store.examples import add_examples, labelled_examples, upsert_department
from store.shots import reset_shots
from store.tables import BaselinePrediction, Split
from tests.support import schema_version
from trainer.baseline import score_baseline

API_KEY = "sk-test-0123456789abcdefSECRET"
TOPICS = {
    "Billing": ["charged twice for {}", "refund the fee on {}", "invoice for {} is wrong", "card declined on {}"],
    "Orders": ["cancel my order of {}", "change the size of {}", "add {} to my order", "where is my receipt for {}"],
    "Shipping": ["{} has not arrived", "track the parcel with {}", "deliver {} to my office", "{} arrived damaged"],
}
ITEMS = ["the blue kettle", "two lamps", "a sofa"]
DESCRIPTIONS = {"Billing": "payments, fees and invoices", "Orders": None, "Shipping": "delivery and tracking"}


@pytest.fixture
def examples(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[(t.format(i), label) for label, ts in TOPICS.items() for t in ts
                                        for i in ITEMS])
        for name, description in DESCRIPTIONS.items():
            upsert_department(session, name=name, description=description)
    with sessions() as session:
        found = labelled_examples(session)
    train, holdout = [e for e in found if e.split == Split.TRAIN], [e for e in found if e.split == Split.HOLDOUT]
    assert {e.label for e in holdout} == set(TOPICS)
    return train, holdout


@pytest.fixture
def truth(examples):
    return {e.text: e.label for group in examples for e in group}


def score(fake, sessions, examples, *, model="gpt-4o", api_key=API_KEY, **kwargs):
    _train, holdout = examples
    client = make_openai_client(api_key, fake.base_url)
    kwargs.setdefault("sleep", lambda _s: None)
    return score_baseline(client, sessions, model=model, departments=list(DESCRIPTIONS), holdout=holdout, **kwargs)


def test_a_perfect_baseline_scores_every_holdout_example_right(sessions, examples, truth):
    with FakeOpenAI(truth) as fake:
        result = score(fake, sessions, examples)
    holdout = examples[1]
    assert result.predictions == {e.query_id: e.label for e in holdout}
    assert result.requests == len(holdout) == len(fake.requests) and result.cached == 0 and result.invalid == 0


def test_the_request_is_deterministic_constrained_and_shows_only_training_examples(sessions, examples, truth):
    train, holdout = examples
    with FakeOpenAI(truth) as fake:
        score(fake, sessions, examples)
    first = fake.requests[0]
    assert first["temperature"] == 0 and first["model"] == "gpt-4o"
    schema = first["response_format"]["json_schema"]
    assert first["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert schema["schema"]["properties"]["department"]["enum"] == list(DESCRIPTIONS)
    assert schema["schema"]["required"] == ["department"] and schema["schema"]["additionalProperties"] is False
    for body, example in zip(fake.requests, holdout, strict=True):
        system, question = body["messages"]
        assert question == {"role": "user", "content": example.text}
        assert system["role"] == "system" and "payments, fees and invoices" in system["content"]
        assert not any(e.text in system["content"] for e in holdout)
    system = fake.requests[0]["messages"][0]["content"]
    shown = [e for e in train if json.dumps(e.text) in system]
    assert sorted(e.label for e in shown) == sorted([*DESCRIPTIONS] * 3)


def test_a_second_run_answers_from_the_cache_and_costs_nothing(sessions, examples, truth):
    with FakeOpenAI(truth) as fake:
        first = score(fake, sessions, examples)
        second = score(fake, sessions, examples)
    assert len(fake.requests) == len(examples[1])
    assert second.requests == 0 and second.cached == len(examples[1]) and second.cost_usd == 0
    assert second.predictions == first.predictions and second.prompt_version == first.prompt_version
    with sessions() as session:
        rows = session.exec(select(BaselinePrediction)).all()
    assert len(rows) == len(examples[1]) and all(r.created_at.tzinfo is not None for r in rows)


def test_the_cache_is_per_model(sessions, examples, truth):
    with FakeOpenAI(truth) as fake:
        score(fake, sessions, examples, model="gpt-4o")
        other = score(fake, sessions, examples, model="gpt-4o-mini")
    assert other.requests == len(examples[1]) and other.cached == 0


def test_rate_limits_are_retried_and_each_example_counted_once(sessions, examples, truth):
    delays = []
    with FakeOpenAI(truth, failures=[429, 429, 503]) as fake:
        result = score(fake, sessions, examples, sleep=delays.append)
    assert result.requests == len(examples[1]) and result.retries == 3
    assert len(fake.requests) == len(examples[1]) + 3
    assert delays == [0.0, 0.0, 4.0]  # Retry-After: 0 honoured twice, then backoff 1 s * 2**2
    assert result.predictions == {e.query_id: e.label for e in examples[1]}


def test_a_server_that_stays_down_makes_the_baseline_unavailable(sessions, examples, truth):
    fake = FakeOpenAI(truth).start()
    fake.stop()
    with pytest.raises(BaselineUnavailable) as caught:
        score(fake, sessions, examples, max_attempts=3)
    message = str(caught.value)
    assert message.startswith("baseline unavailable: cannot connect to 127.0.0.1:") and "(3 attempts)" in message
    assert "\n" not in message and API_KEY not in message


def test_persistent_rate_limits_give_up_after_max_attempts(sessions, examples, truth):
    reason = r"^baseline unavailable: HTTP 429: Rate limit .* \(4 attempts\)$"
    with FakeOpenAI(truth, failures=[429] * 10) as fake, pytest.raises(BaselineUnavailable, match=reason):
        score(fake, sessions, examples, max_attempts=4)
    assert len(fake.requests) == 4


def test_a_wrong_key_fails_at_once_without_showing_the_key(sessions, examples, truth):
    with FakeOpenAI(truth, api_key="sk-the-right-one") as fake, pytest.raises(BaselineUnavailable) as caught:
        score(fake, sessions, examples)
    message = str(caught.value)
    assert len(fake.requests) == 1
    assert message.startswith("baseline unavailable: HTTP 401: Incorrect API key provided")
    assert API_KEY not in message and API_KEY[-4:] not in message and "\n" not in message


def test_the_cost_comes_from_the_usage_this_run(sessions, examples, truth):
    with FakeOpenAI(truth) as fake:
        result = score(fake, sessions, examples)
    assert result.prompt_tokens == fake.usage["prompt_tokens"] > 0
    assert result.completion_tokens == fake.usage["completion_tokens"] > 0
    expected = (result.prompt_tokens * 2.50 + result.completion_tokens * 10.00) / 1_000_000
    assert result.cost_usd == pytest.approx(expected)
    assert result.cost().cost_usd == result.cost_usd and result.cost().requests == result.requests


def test_an_unknown_model_has_no_price(sessions, examples, truth):
    with FakeOpenAI(truth) as fake:
        result = score(fake, sessions, examples, model="llama-3-70b")
    assert result.cost_usd is None and result.prompt_tokens > 0


def test_an_answer_outside_the_departments_is_wrong_and_not_cached(sessions, examples):
    with FakeOpenAI(lambda _text: "Marketing") as fake:
        first = score(fake, sessions, examples)
        second = score(fake, sessions, examples)
    assert set(first.predictions.values()) == {INVALID} and first.invalid == len(examples[1])
    assert second.requests == len(examples[1]) and second.cached == 0


def test_the_shots_are_kept_as_data_grows_so_a_later_run_never_pays_twice(sessions, examples, truth):
    _train, holdout = examples
    with FakeOpenAI(truth) as fake:
        first = score(fake, sessions, examples)
        with transaction(sessions) as session:  # many new training examples, some would outrank today's shots
            add_examples(session, examples=more_examples())
        truth |= dict(more_examples())
        with sessions() as session:
            grown_holdout = labelled_examples(session, split=Split.HOLDOUT)
        grown = score(fake, sessions, ([], grown_holdout))
    assert grown.prompt_version == first.prompt_version
    assert grown.cached == len(holdout) and grown.requests == len(grown_holdout) - len(holdout)
    assert len(fake.requests) == len(grown_holdout)


def more_examples():
    return [(f"{t.format(i)} please, it is urgent", label) for label, ts in TOPICS.items() for t in ts for i in ITEMS]


def test_a_new_department_adds_its_shots_and_reset_picks_them_again(sessions, examples, truth):
    client_settings = Settings(OPENAI_API_KEY=API_KEY)
    with FakeOpenAI(truth) as fake:
        client = make_openai_client(client_settings.openai_api_key, fake.base_url)
        first = score(fake, sessions, examples)
        with transaction(sessions) as session:
            add_examples(session, examples=[(f"I want to talk about my data, item {i}", "Privacy") for i in range(6)]
                         + more_examples())
        with sessions() as session:
            holdout = labelled_examples(session, split=Split.HOLDOUT)
        truth |= {e.text: e.label for e in holdout}
        widened = score_baseline(client, sessions, model="gpt-4o", departments=[*DESCRIPTIONS, "Privacy"],
                                 holdout=holdout, sleep=lambda _s: None)
        system = fake.requests[-1]["messages"][0]["content"]
        with transaction(sessions) as session:
            assert reset_shots(session) == 3 * 4
        repicked = score_baseline(client, sessions, model="gpt-4o", departments=[*DESCRIPTIONS, "Privacy"],
                                  holdout=holdout, sleep=lambda _s: None)
    assert widened.prompt_version != first.prompt_version and "I want to talk about my data" in system
    first_shots = re.findall(r'Message: "([^"]+)"', fake.requests[0]["messages"][0]["content"])
    assert first_shots and all(f'"{t}"' in system for t in first_shots)  # the old shots stayed until the reset
    assert repicked.prompt_version != widened.prompt_version and repicked.requests == len(holdout)


def test_settings_decide_whether_a_baseline_is_configured():
    assert not Settings().baseline_configured
    assert Settings(OPENAI_API_KEY="sk-x").baseline_configured
    local = Settings(OPENAI_BASE_URL="http://127.0.0.1:1/v1")
    assert local.baseline_configured
    client = make_openai_client(local.openai_api_key, local.openai_base_url)
    assert client.api_key == "unused" and client.max_retries == 0
    assert str(client.base_url).rstrip("/") == local.openai_base_url


def test_a_store_from_before_the_baseline_gains_its_table(tmp_path):
    from sqlalchemy import inspect

    from store import migrations
    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrations.migrate(engine, migrations.MIGRATIONS[:1]) == [1]
    assert not inspect(engine).has_table("baseline_predictions")
    assert migrations.migrate(engine) == list(range(2, len(migrations.MIGRATIONS) + 1))
    assert schema_version(engine) == len(migrations.MIGRATIONS)
    unique = inspect(engine).get_unique_constraints("baseline_predictions")
    assert [c["column_names"] for c in unique] == [["query_id", "prompt_version", "model"]]
