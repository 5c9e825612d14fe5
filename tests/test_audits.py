"""Audits: a random sample of routed messages asks agents to check the route; their answers may judge models.

Through the real Bolt app over HTTP with the loopback Slack and the scripted router of tests/support.py;
clicks are `block_actions` payloads built from the reply exactly as it was posted (or last edited).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter

import pytest
from sqlmodel import col, select

from bot.audits import THIN_HOLDOUT, audit_probability, should_audit
from classifier.routing.router import Classification, Usage
from classifier.serving.active_router import NoActiveModel
from fakes.bot_server import reaction
from store.db import transaction
from store.examples import add_examples, get_department, label_query, labelled_examples, upsert_department
from store.slack import holdout_counts
from store.tables import OUT_OF_SCOPE, LabelSource, Query, SlackMessage, Split
from tests.support import (
    AGENT,
    OTHER_AGENT,
    STRANGER,
    ScriptedRouter,
    actions,
    answer,
    label_rows,
    labels,
    posts,
    route,
    stored_message,
    text_of,
)


class Draws(random.Random):
    """An rng whose `random()` returns the given draws in turn, over and over."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self.draws = itertools.cycle(draws)

    def random(self) -> float:
        return next(self.draws)


def test_audit_probability_is_the_rate_boosted_while_a_departments_holdout_is_thin():
    counts = {"Billing": THIN_HOLDOUT, "Shipping": THIN_HOLDOUT - 1, "Refunds": 0}
    assert audit_probability("Billing", counts, 0.1) == pytest.approx(0.1)
    assert audit_probability("Shipping", counts, 0.1) == pytest.approx(0.3)
    assert audit_probability("Sales", counts, 0.1) == pytest.approx(0.3)  # not even named: no holdout at all
    assert audit_probability("Shipping", counts, 0.5) == 1.0
    assert audit_probability(None, counts, 0.1) == pytest.approx(0.3)  # no model yet: any thin department boosts
    assert audit_probability(None, {"Billing": 25, "Shipping": 20}, 0.1) == pytest.approx(0.1)
    assert audit_probability(None, {}, 0.1) == pytest.approx(0.3)
    assert audit_probability("Billing", counts, 0.1, cold_start_rate=0.5) == pytest.approx(0.5)  # the baseline routed
    assert audit_probability("Shipping", counts, 0.2, cold_start_rate=0.5) == pytest.approx(0.6)  # never below thin's
    assert audit_probability("Billing", counts, 0.0, cold_start_rate=0.5) == 0.0  # audits off stay off
    assert {audit_probability(d, counts, 0.0) for d in ("Billing", "Shipping", None)} == {0.0}

    rng = random.Random(7)
    shipping, billing = (Classification(d, 0.9, {d: 0.9}, "model 1", 1.0) for d in ("Shipping", "Billing"))
    paid = Usage("gpt-4o", 120, 2, 0.0003, "prompt-v1")
    by_baseline = dataclasses.replace(billing, model_name="baseline gpt-4o", usage=paid)

    def share(result: Classification | None, rate: float, n: int = 10_000) -> float:
        return sum(should_audit(rng, result, counts, rate, cold_start_rate=0.5) for _ in range(n)) / n

    assert 0.27 < share(shipping, 0.1) < 0.33 and 0.08 < share(billing, 0.1) < 0.12
    assert 0.46 < share(by_baseline, 0.1) < 0.54  # the baseline routed: the cold start's rate
    assert 0.27 < share(None, 0.1) < 0.33  # nothing routed it: thin while any department is
    assert share(shipping, 0.0, 1_000) == 0.0 and share(by_baseline, 0.0, 1_000) == 0.0
    assert share(billing, 1.0, 1_000) == 1.0


def test_holdout_counts_name_every_department_and_follow_the_label_in_force(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"invoice question {i}", "Billing") for i in range(40)]
                     + [(f"parcel question {i}", "Shipping") for i in range(15)])
        upsert_department(session, name="Refunds")
    with sessions() as session:
        counts = holdout_counts(session)
        expected = Counter(e.label for e in labelled_examples(session, split=Split.HOLDOUT))
        moved = session.exec(select(Query).where(Query.split == Split.HOLDOUT, col(Query.text).startswith("invoice"))
                             ).first()
    assert dict(counts) == {**expected, "Refunds": 0} and counts["Billing"] >= 6 and counts["Shipping"] >= 2
    with transaction(sessions) as session:
        label_query(session, query=session.get(Query, moved.id), department=get_department(session, name="Refunds"),
                    source=LabelSource.AUDIT, author=AGENT)
    with sessions() as session:
        assert holdout_counts(session) == counts - Counter({"Billing": 1}) + Counter({"Refunds": 1})


def test_at_rate_one_every_routed_or_triaged_reply_asks_for_an_audit(audited, sessions):
    reply = route(audited, "charged twice", ts="20.0")
    stored = stored_message(sessions, "20.0")
    assert stored.audit_requested
    assert "Quality check: is this right? Agents answer here" in text_of(reply)
    [block] = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert block["block_id"] == f"audit:{stored.id}"
    button, menu, none = block["elements"]
    assert (button["action_id"], button["value"], button["style"]) == ("audit_right", "Billing", "primary")
    assert (none["action_id"], none["value"], none["text"]["text"]) == ("audit_none", OUT_OF_SCOPE, "🚫 None of these")
    assert button["text"]["text"] == "✅ Right"
    assert menu["type"] == "static_select" and menu["action_id"] == "audit_department"
    assert menu["placeholder"]["text"] == "Right department…" and "initial_option" not in menu
    assert [(o["text"]["text"], o["value"]) for o in menu["options"]] == [
        ("Billing", "Billing"), ("Refunds", "Refunds"), ("Shipping", "Shipping")]

    triaged = route(audited, "unsure what this is about", ts="20.1")
    assert "Needs triage" in text_of(triaged) and stored_message(sessions, "20.1").audit_requested
    assert [e["action_id"] for e in actions(triaged)] == ["audit_department", "audit_none"]  # no route to call right


def test_before_any_model_the_audit_offers_the_menu_only_and_an_answer_routes_the_query(audited, sessions):
    def no_model(text: str) -> Classification:
        raise NoActiveModel("no model yet")

    audited.deps.router.classify = no_model  # type: ignore[method-assign]
    reply = route(audited, "charged twice", ts="20.5")
    assert "no model is trained yet" in text_of(reply) and stored_message(sessions, "20.5").prediction_id is None
    assert [e["action_id"] for e in actions(reply)] == ["audit_department", "audit_none"]
    update = answer(audited, "audit_department", user=AGENT, ts="20.5", updates=1, selected="Billing")
    assert "Audited by <@UAGENT1>: *Billing*" in text_of(update)
    assert label_rows(sessions) == [("Billing", LabelSource.AUDIT, AGENT, False, False)]
    forwarded = audited.slack.wait_for("chat.postMessage", 3)[-1].body  # reply, triage post, Billing post
    assert forwarded["channel"] == "CBILLING" and "rerouted by <@UAGENT1>" in text_of(forwarded)


def test_at_rate_zero_no_reply_asks(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", audit_rng=Draws(0.0))
    for i, text in enumerate(["charged twice", "unsure what this is about", "my parcel is late", "refund please"]):
        reply = route(bot, text, ts=f"21.{i}")
        assert actions(reply) == [] and "Quality check" not in text_of(reply)
    with sessions() as session:
        assert [m.audit_requested for m in session.exec(select(SlackMessage))] == [False] * 4


def test_thin_departments_are_sampled_more_until_their_holdout_fills(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0.2", audit_rng=Draws(0.5))  # 0.5: under 0.6 (thin), over 0.2
    route(bot, "charged twice", ts="22.0")
    assert stored_message(sessions, "22.0").audit_requested
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"invoice question {i}", "Billing") for i in range(150)])
    with sessions() as session:
        assert holdout_counts(session)["Billing"] >= THIN_HOLDOUT
    route(bot, "charged three times", ts="22.1")
    route(bot, "unsure what this is about", ts="22.2")  # triage, but most likely Billing: its stratum
    route(bot, "my parcel is late", ts="22.3")
    assert [stored_message(sessions, ts).audit_requested for ts in ("22.1", "22.2", "22.3")] == [False, False, True]


class ColdStartScripted(ScriptedRouter):
    """The scripted answers, given as the cold-start baseline gives them (no registry model, a paid
    request's usage) while `baseline_routes` holds."""

    baseline_routes = False

    def classify(self, text: str) -> Classification:
        answer = super().classify(text)
        if not self.baseline_routes:
            return answer
        return dataclasses.replace(answer, model_name="baseline gpt-4o", model_id=None,
                                   usage=Usage("gpt-4o", 120, 2, 0.0003, "prompt-v1"))


def test_while_the_baseline_routes_messages_are_sampled_at_the_cold_start_rate(start_bot, sessions):
    router = ColdStartScripted()
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0.1", SWITCHBOARD_COLD_START_AUDIT_RATE="0.6", audit_rng=Draws(0.5),
                    router=router)  # 0.5: under the cold start's 0.6, over the plain 0.1
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"{topic} question {i}", department) for i in range(150)
                                        for topic, department in (("invoice", "Billing"), ("parcel", "Shipping"))])
    with sessions() as session:
        assert min(holdout_counts(session)[d] for d in ("Billing", "Shipping")) >= THIN_HOLDOUT
    route(bot, "charged three times", ts="26.0")  # the fine-tuned model routes: the plain rate
    router.baseline_routes = True
    route(bot, "charged four times", ts="26.1")
    route(bot, "my parcel is late", ts="26.2")
    assert [stored_message(sessions, ts).audit_requested for ts in ("26.0", "26.1", "26.2")] == [False, True, True]
    assert stored_message(sessions, "26.1").prediction_id is not None


def test_an_agents_right_click_stores_an_audit_of_the_route_and_edits_the_reply(audited, sessions):
    route(audited, "charged twice", ts="23.0")
    update = answer(audited, "audit_right", user=AGENT, ts="23.0", updates=1)
    assert "Audited by <@UAGENT1>: *Billing*" in text_of(update)
    assert [e["action_id"] for e in actions(update)] == ["audit_right", "audit_department", "audit_none"]
    assert actions(update)[1]["initial_option"]["value"] == "Billing"
    assert label_rows(sessions) == [("Billing", LabelSource.AUDIT, AGENT, False, False)]
    assert len(posts(audited.slack)) == 2  # the reply and the Billing forward: a confirmation forwards nothing


def test_the_department_menu_stores_the_chosen_department_and_forwards_the_query(audited, sessions):
    route(audited, "charged twice", ts="24.0")
    update = answer(audited, "audit_department", user=AGENT, ts="24.0", updates=1, selected="Shipping")
    assert "Audited by <@UAGENT1>: *Shipping*" in text_of(update)
    assert actions(update)[1]["initial_option"]["value"] == "Shipping"
    assert label_rows(sessions) == [("Shipping", LabelSource.AUDIT, AGENT, False, False)]
    forwarded = audited.slack.wait_for("chat.postMessage", 3)[-1].body
    assert forwarded["channel"] == "CSHIPPING" and "rerouted by <@UAGENT1>" in text_of(forwarded)


def test_a_non_agents_click_is_refused_privately_and_changes_nothing(audited, sessions):
    route(audited, "charged twice", ts="25.0")
    reply_ts = stored_message(sessions, "25.0").reply_ts
    assert audited.action("audit_right", user=STRANGER, ts=reply_ts).status == 200
    assert audited.action("audit_department", user=STRANGER, ts=reply_ts, selected="Refunds").status == 200
    for refusal in audited.slack.wait_for("chat.postEphemeral", 2):
        assert (refusal.body["channel"], refusal.body["user"], refusal.body["thread_ts"]) == (
            "CSUPPORT", STRANGER, "25.0")
        assert "Only agents answer audits" in refusal.body["text"]
    route(audited, "another question", ts="25.1")  # handled after the clicks
    assert labels(sessions) == [] and audited.slack.calls_to("chat.update") == []


def test_a_second_answer_supersedes_the_first_and_both_are_kept(audited, sessions):
    route(audited, "charged twice", ts="26.0")
    answer(audited, "audit_right", user=AGENT, ts="26.0", updates=1)
    update = answer(audited, "audit_department", user=OTHER_AGENT, ts="26.0", updates=2, selected="Refunds")
    assert "Audited by <@UAGENT2>: *Refunds*" in text_of(update)
    first, second = labels(sessions)
    assert first.superseded_by == second.id and second.superseded_by is None
    answer(audited, "audit_department", user=AGENT, ts="26.0", updates=3, selected="Shipping")  # same agent again
    assert [row[:3] for row in label_rows(sessions)] == [("Billing", LabelSource.AUDIT, AGENT),
                                                        ("Refunds", LabelSource.AUDIT, OTHER_AGENT),
                                                        ("Shipping", LabelSource.AUDIT, AGENT)]
    assert [row[3] for row in label_rows(sessions)] == [True, True, False]
    with sessions() as session:
        [example] = labelled_examples(session)
    assert (example.label, example.source) == ("Shipping", LabelSource.AUDIT)


def test_an_answer_finds_its_message_by_the_block_id_when_the_replys_ts_was_lost(audited, sessions):
    route(audited, "charged twice", ts="27.0")
    reply_ts = stored_message(sessions, "27.0").reply_ts
    with transaction(sessions) as session:
        message = session.exec(select(SlackMessage).where(SlackMessage.ts == "27.0")).one()
        message.reply_ts = None
        session.add(message)
    assert audited.action("audit_right", user=AGENT, ts=reply_ts).status == 200
    assert "Audited by <@UAGENT1>" in text_of(audited.slack.wait_for("chat.update")[-1].body)
    assert stored_message(sessions, "27.0").reply_ts == reply_ts
    assert label_rows(sessions) == [("Billing", LabelSource.AUDIT, AGENT, False, False)]


def test_an_agents_emoji_is_the_audit_on_an_audited_message_and_a_correction_otherwise(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0.2", audit_rng=Draws(0.0, 0.99))  # the first message only
    route(bot, "charged twice", ts="28.0")
    route(bot, "charged once more", ts="28.1")
    assert [stored_message(sessions, ts).audit_requested for ts in ("28.0", "28.1")] == [True, False]
    bot.event(reaction("reaction_added", "package", user=AGENT, ts=stored_message(sessions, "28.0").reply_ts))
    audited_update = bot.slack.wait_for("chat.update")[-1].body
    assert "Audited by <@UAGENT1>: *Shipping*" in text_of(audited_update)
    assert actions(audited_update)[1]["initial_option"]["value"] == "Shipping"
    bot.event(reaction("reaction_added", "package", user=AGENT, ts="28.1"))
    plain_update = bot.slack.wait_for("chat.update", 2)[-1].body
    assert "Rerouted to *Shipping* by <@UAGENT1>" in text_of(plain_update) and actions(plain_update) == []
    assert label_rows(sessions) == [("Shipping", LabelSource.AUDIT, AGENT, False, False),
                                    ("Shipping", LabelSource.AGENT, AGENT, False, False)]

    bot.event(reaction("reaction_removed", "package", user=AGENT, ts="28.0"))
    restored = bot.slack.wait_for("chat.update", 3)[-1].body
    assert "Routed to *Billing* (92% confident)" in text_of(restored)
    assert [e["action_id"] for e in actions(restored)] == ["audit_right", "audit_department", "audit_none"]
    assert "initial_option" not in actions(restored)[1]
    assert [row[4] for row in label_rows(sessions)] == [True, False]  # the audit withdrawn, the correction stands


def test_audits_can_land_in_the_holdout_while_agent_corrections_always_train(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0.2", audit_rng=Draws(0.0, 0.99))  # every other message
    for i in range(24):
        ts = f"29.{i:02d}"
        route(bot, f"charged twice for order {i}", ts=ts)
        if i % 2 == 0:
            answer(bot, "audit_right", user=AGENT, ts=ts, updates=i + 1)
        else:
            bot.event(reaction("reaction_added", "package", user=AGENT, ts=ts))
            bot.slack.wait_for("chat.update", i + 1)
    with sessions() as session:
        splits = {m.audit_requested: [] for m in session.exec(select(SlackMessage))}
        for message in session.exec(select(SlackMessage)):
            splits[message.audit_requested].append(session.get(Query, message.query_id).split)
    assert len(splits[True]) == len(splits[False]) == 12
    assert splits[False] == [Split.TRAIN] * 12
    assert 3 <= splits[True].count(Split.HOLDOUT) <= 7  # half of the audits, held within one of its share
