"""The loop learns from everything it sees: implicit labels, the baseline's answers already paid for (and new
ones within a budget), the bot's questions, weighted training and the best checkpoint on the fold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.asks import MIN_HISTORY, should_ask
from classifier.model.base_model import load_base_model
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import LoraRouter
from core.settings import Settings
from fakes.bot_server import reaction
from fakes.openai_api import FakeOpenAI
from store.db import transaction
from store.examples import count_labels_since, get_department, label_query, labelled_examples
from store.implicit import add_implicit_labels
from store.overview import status
from store.registry import promote, register_model
from store.routed import Verdict, record_routed_message
from store.tables import Label, LabelSource, Prediction, Query, SlackMessage, Split
from tests.support import (
    AGENT,
    EXAMPLES,
    FAST,
    LOOP,
    actions,
    answer,
    label_rows,
    route,
    seed,
    stored_message,
    text_of,
    trainer_deps,
)
from trainer.alternatives import AlternativeSet
from trainer.baseline import fixed_prompt
from trainer.lora import train_lora
from trainer.pipeline import RunOptions, run_training

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(hours=30)


def routed(sessions, text, *, ts, department="Billing", confidence=0.95, model_id=None, baseline=False,
           routed_to="", audit=False, ask=False, at=LONG_AGO):
    """A message the bot routed (or triaged: `routed_to=None`) at `at`, as `record_routed_message` stores it."""
    other = "Orders" if department != "Orders" else "Billing"
    verdict = Verdict(department=department, confidence=confidence, latency_ms=1.0, model_id=model_id,
                      scores={department: confidence, other: round(1 - confidence, 4)},
                      baseline_model="gpt-4o" if baseline else None,
                      prompt_version=fixed_prompt(sessions, ["Billing", "Orders", "Shipping"]).version if baseline
                      else None)
    message = record_routed_message(sessions, text=text, channel="CSUPPORT", ts=ts, user="U", event_id=None,
                                    verdict=verdict, routed_to=department if routed_to == "" else routed_to,
                                    audit=audit, ask=ask, cache_answer=baseline)
    with transaction(sessions) as session:
        stored, query = session.get(SlackMessage, message.id), session.get(Query, message.query_id)
        stored.created_at = query.received_at = at
        session.add_all([stored, query])
    return message


def active(sessions) -> int:
    with transaction(sessions) as session:
        model = register_model(session, adapter_path="m", base_model="b", labels=["Billing", "Orders", "Shipping"],
                               hyperparameters={}, metrics={}, parent_id=None)
        promote(session, model_id=model.id)
        return model.id


def standing(sessions) -> dict[str, tuple[str, LabelSource, Split]]:
    with sessions() as session:
        return {e.text: (e.label, e.source, e.split) for e in labelled_examples(session)}


def test_a_route_no_one_corrected_within_the_grace_window_becomes_an_implicit_training_label(sessions):
    seed(sessions)
    model_id = active(sessions)
    seeded = datetime.now(UTC)
    routed(sessions, "baseline sure", ts="1.0", baseline=True, confidence=0.7)
    routed(sessions, "model sure", ts="2.0", model_id=model_id, confidence=0.95, department="Shipping")
    routed(sessions, "model unsure", ts="3.0", model_id=model_id, confidence=0.8)
    routed(sessions, "triaged", ts="4.0", model_id=model_id, routed_to=None)
    routed(sessions, "audited", ts="5.0", model_id=model_id, audit=True)
    routed(sessions, "asked", ts="6.0", model_id=model_id, ask=True)
    routed(sessions, "just now", ts="7.0", model_id=model_id, at=NOW)
    corrected = routed(sessions, "corrected", ts="8.0", model_id=model_id)
    with transaction(sessions) as session:
        label_query(session, query=session.get(Query, corrected.query_id),
                    department=get_department(session, name="Orders"), source=LabelSource.AGENT, author=AGENT)
    before = NOW - timedelta(hours=24)

    with transaction(sessions) as session:
        written = add_implicit_labels(session, routed_before=before, active_model_id=model_id,
                                      min_model_confidence=0.9)
    with transaction(sessions) as session:
        again = add_implicit_labels(session, routed_before=before, active_model_id=model_id, min_model_confidence=0.9)
    labels = standing(sessions)
    assert written == 2 and again == 0
    assert labels["baseline sure"] == ("Billing", LabelSource.IMPLICIT, Split.TRAIN)
    assert labels["model sure"] == ("Shipping", LabelSource.IMPLICIT, Split.TRAIN)
    assert labels["corrected"] == ("Orders", LabelSource.AGENT, Split.TRAIN)
    assert not {"model unsure", "triaged", "audited", "asked", "just now"} & set(labels)

    with transaction(sessions) as session:  # an agent's later reaction supersedes it
        query = session.exec(select(Query).where(Query.text == "model sure")).one()
        label_query(session, query=query, department=get_department(session, name="Billing"),
                    source=LabelSource.AGENT, author=AGENT)
    with sessions() as session:
        assert standing(sessions)["model sure"] == ("Billing", LabelSource.AGENT, Split.TRAIN)
        assert count_labels_since(session, seeded, by_people=True) == 2  # the two agents' (what triggers a run)
        assert count_labels_since(session, seeded) == 4
        examples = status(session, pricing=None)["examples"]
    assert examples["inferred"] == {"implicit": 1, "baseline": 0}


def test_a_run_learns_from_silent_routes_and_cached_answers_for_free(settings, sessions):
    seed(sessions)
    for i in range(6):  # routed by the baseline in cold start: its answers are cached
        routed(sessions, f"alpha silent {i}", ts=f"1{i}.0", department="Orders", baseline=True)
    for i in range(4):  # the baseline was unsure: triaged, but its cached answer still teaches
        routed(sessions, f"gamma unsure {i}", ts=f"2{i}.0", department="Shipping", baseline=True, routed_to=None)
    routed(sessions, "beta recent", ts="30.0", department="Billing", baseline=True, at=NOW)
    report = run_training(trainer_deps(settings, sessions, clock=lambda: NOW),
                          RunOptions(config=LOOP, progress=False, alternatives=AlternativeSet.NONE))
    assert report.implicit_labels == 6, report.reason
    assert report.distillation is not None and report.distillation.cached == 4 and report.distillation.requests == 0
    assert report.train_sources["implicit"] == 6 and report.train_sources["baseline"] == 4
    assert "implicit" not in report.holdout_sources and "baseline" not in report.holdout_sources
    assert "beta recent" not in standing(sessions)  # inside the grace window: agents may still correct it
    assert report.training["fold_loss_curve"] == []  # under 50 examples there is no fold to watch


def test_a_run_with_a_distillation_budget_asks_the_baseline_through_the_trainer(home, tiny_model_dir, database_url,
                                                                                sessions):
    seed(sessions)
    for i in range(5):  # triaged before any baseline: nothing cached
        routed(sessions, f"delta parcel {i}", ts=f"4{i}.0", department="Orders", routed_to=None)
    with FakeOpenAI(lambda _text: "Shipping") as fake:
        settings = Settings(SWITCHBOARD_HOME=home, SWITCHBOARD_BASE_MODEL=str(tiny_model_dir),
                            DATABASE_URL=database_url, OPENAI_API_KEY="sk-loopback", OPENAI_BASE_URL=fake.base_url,
                            SWITCHBOARD_DISTIL_BUDGET_USD="1.0")
        report = run_training(trainer_deps(settings, sessions, clock=lambda: NOW),
                              RunOptions(config=LOOP, progress=False, alternatives=AlternativeSet.NONE))
    distilled = report.distillation
    assert distilled is not None and distilled.requests == 5 and distilled.labelled == 5
    assert 0 < distilled.cost_usd <= 1.0 and not distilled.stopped_by_budget
    assert {text: label for text, label in standing(sessions).items() if text.startswith("delta parcel")} == {
        f"delta parcel {i}": ("Shipping", LabelSource.BASELINE, Split.TRAIN) for i in range(5)}
    assert report.baseline is not None  # the same loopback baseline was scored by the gate


def test_the_bot_asks_about_the_least_sure_share_of_recent_routes():
    margins = [0.5 + i / 100 for i in range(40)]
    assert should_ask(0.4, margins, asked_recently=0, rate=0.05)
    assert should_ask(0.505, margins, asked_recently=1, rate=0.05)  # second lowest of 40 at 5%: two may be asked
    assert not should_ask(0.52, margins, asked_recently=0, rate=0.05)
    assert not should_ask(0.4, margins, asked_recently=2, rate=0.05)  # the cap: 5% of 40 asked already
    assert not should_ask(0.4, margins[: MIN_HISTORY - 1], asked_recently=0, rate=0.05)
    assert not should_ask(0.4, margins, asked_recently=0, rate=0.0)
    assert not should_ask(1.0, [1.0] * 40, asked_recently=0, rate=0.05)  # the baseline's ties: nobody is least sure


def test_an_asked_message_gets_the_question_and_its_answers_train_only(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0.05")
    for i in range(MIN_HISTORY):  # earlier routes the scripted model was sure of (Billing at 0.92)
        routed(sessions, f"an earlier question {i}", ts=f"9{i}.0", model_id=1, confidence=0.92,
               department="Billing")
    with transaction(sessions) as session:
        for prediction in session.exec(select(Prediction)):
            prediction.scores = {"Billing": 0.92, "Shipping": 0.04, "Refunds": 0.04}
            session.add(prediction)
    reply = route(bot, "my parcel is late", ts="50.0")  # Shipping at 0.90: the least sure route of all
    stored = stored_message(sessions, "50.0")
    assert stored.ask_requested and not stored.audit_requested
    assert "Not sure about this one" in text_of(reply)
    [block] = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert block["block_id"] == f"ask:{stored.id}"
    assert [e["action_id"] for e in actions(reply)] == ["audit_right", "audit_department", "audit_none"]

    update = answer(bot, "audit_department", user=AGENT, ts="50.0", updates=1, selected="Refunds")
    assert "Answered by <@UAGENT1>: *Refunds*" in text_of(update)
    assert label_rows(sessions)[-1] == ("Refunds", LabelSource.ASKED, AGENT, False, False)
    assert standing(sessions)["my parcel is late"] == ("Refunds", LabelSource.ASKED, Split.TRAIN)

    assert bot.event(reaction("reaction_added", "package", ts="50.0", user=AGENT)).status == 200  # answered too
    bot.slack.wait_for("chat.update", 2)
    assert label_rows(sessions)[-1] == ("Shipping", LabelSource.ASKED, AGENT, False, False)

    sure = route(bot, "charged twice", ts="51.0")  # Billing at 0.92, as sure as the rest: not asked
    assert not stored_message(sessions, "51.0").ask_requested and "Not sure" not in text_of(sure)


@pytest.fixture
def tiny(tiny_model_dir, tmp_path):
    return load_base_model(str(tiny_model_dir), cache_dir=tmp_path)


def test_an_examples_weight_is_its_share_of_the_loss(tiny_model_dir, tmp_path):
    """The same texts labelled twice, one label weighing 1 and the other 0.05: the weighty label wins,
    whichever it is."""
    examples = [(text, "Orders") for text, _ in EXAMPLES] + [(text, "Shipping") for text, _ in EXAMPLES]
    texts = [text for text, _ in EXAMPLES]
    answers = {}
    for heavy in ("Orders", "Shipping"):
        model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
        weights = [1.0 if label == heavy else 0.05 for _, label in examples]
        result = train_lora(model=model, tokenizer=tokenizer, examples=examples, weights=weights,
                            prompt=PromptFormat(), config=replace(FAST, loss_vocabulary="labels",
                                                                  learning_rate=3e-2, best_on_fold=False),
                            progress=False)
        router = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer,
                            labels=["Billing", "Orders", "Shipping"], prompt=PromptFormat(), name=heavy)
        answers[heavy] = [c.department for c in router.classify_batch(texts)]
    assert answers["Orders"].count("Orders") >= 0.9 * len(texts)
    assert answers["Shipping"].count("Shipping") >= 0.9 * len(texts)


def test_training_keeps_the_adapter_where_the_folds_loss_was_lowest_and_stops_after_patience(tiny):
    """A fold that contradicts the training labels: its loss only rises once training learns them, so the
    best checkpoint is an early one, training stops `patience` measurements later, and the kept adapter
    scores the fold at its lowest loss."""
    model, tokenizer = tiny
    contradicting = [(text, {"Billing": "Orders", "Orders": "Shipping", "Shipping": "Billing"}[label])
                     for text, label in EXAMPLES]
    config = replace(FAST, learning_rate=3e-2, loss_vocabulary="labels", fold_evaluations=12, patience=2,
                     min_fold=len(contradicting))
    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, watch=contradicting,
                        prompt=PromptFormat(), config=config, progress=False)
    losses = [point["fold_loss"] for point in result.curve]
    planned = config.for_examples(len(EXAMPLES))
    total = -(-len(EXAMPLES) // planned.batch_size) * int(planned.epochs)
    assert result.best_step == min(result.curve, key=lambda p: p["fold_loss"])["step"]
    assert result.best_step < result.curve[-1]["step"] and result.steps < total
    assert len(losses) - 1 - losses.index(min(losses)) == config.patience
    router = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer,
                        labels=["Billing", "Orders", "Shipping"], prompt=PromptFormat(), name="best")
    wrong_now = sum(c.department != y for c, (_, y) in zip(router.classify_batch([t for t, _ in EXAMPLES]),
                                                           EXAMPLES, strict=True))
    assert wrong_now > 0  # the early weights: it had not yet learnt every training label


def test_the_labels_no_person_gave_never_reach_the_fold_or_the_holdout(sessions):
    from trainer.calibrate import split_fold
    from trainer.snapshot import take_snapshot

    seed(sessions)
    for i in range(40):
        routed(sessions, f"alpha silent {i}", ts=f"6{i}.0", department="Orders", baseline=True)
    with transaction(sessions) as session:
        add_implicit_labels(session, routed_before=NOW, active_model_id=None, min_model_confidence=0.9)
    with sessions() as session:
        snapshot = take_snapshot(session)
        implicit = [e for e in snapshot.train if e.source == LabelSource.IMPLICIT]
        assert len(implicit) == 40 and not [e for e in snapshot.holdout if not e.source.by_a_person]
        _, fold = split_fold(snapshot.train)
        assert fold and all(e.source.by_a_person for e in fold)
        assert session.exec(select(Label).where(Label.source == LabelSource.IMPLICIT)).all()


def test_a_fold_too_small_to_tell_epochs_apart_is_not_watched(tiny):
    """The same contradicting fold, one example short of `min_fold`: training runs its full course."""
    model, tokenizer = tiny
    contradicting = [(text, {"Billing": "Orders", "Orders": "Shipping", "Shipping": "Billing"}[label])
                     for text, label in EXAMPLES]
    config = replace(FAST, learning_rate=3e-2, loss_vocabulary="labels", fold_evaluations=12, patience=2,
                     min_fold=len(contradicting) + 1)
    result = train_lora(model=model, tokenizer=tokenizer, examples=EXAMPLES, watch=contradicting,
                        prompt=PromptFormat(), config=config, progress=False)
    planned = config.for_examples(len(EXAMPLES))
    assert result.curve == [] and result.best_step is None
    assert result.steps == -(-len(EXAMPLES) // planned.batch_size) * int(planned.epochs)
