"""The Slack bot end to end: the real Bolt app over HTTP, signed requests, a loopback Slack Web API.

The model here is a scripted router (the classifier has its own tests); the hot-swap and retrain
cases in test_bot_model.py use the real one.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.deps import BotDeps
from classifier.routing.router import Classification
from core.settings import Settings
from fakes.bot_server import BotServer, message, reaction
from store.db import transaction
from store.tables import LabelSource, Prediction, SlackEvent, SlackMessage, utcnow
from tests.support import (
    ADMIN,
    AGENT,
    CUSTOMER,
    OTHER_AGENT,
    STRANGER,
    ScriptedRouter,
    labels,
    posts,
    route,
    scripted_bot,
    stored_message,
    text_of,
    wait_until,
)


def test_a_message_is_answered_in_its_thread_and_forwarded_to_its_department(bot, slack, sessions):
    reply = route(bot, "I was charged twice this month", ts="1700000000.000100")
    assert reply["thread_ts"] == "1700000000.000100"
    assert "Routed to *Billing* (92% confident)" in text_of(reply)
    assert ":package: Shipping" in text_of(reply) and ":white_check_mark:" in text_of(reply)
    forwarded = slack.wait_for("chat.postMessage", 2)[-1].body
    assert forwarded["channel"] == "CBILLING"
    assert "archives/CSUPPORT/p1700000000000100" in text_of(forwarded)
    assert "I was charged twice" in text_of(forwarded)
    stored = stored_message(sessions, "1700000000.000100")
    assert stored.routed_to == "Billing" and stored.reply_ts and stored.user == CUSTOMER
    with sessions() as session:
        prediction = session.get(Prediction, stored.prediction_id)
    assert prediction.model_version_id == 1 and prediction.scores["Billing"] == pytest.approx(0.92)


def test_low_confidence_goes_to_triage_with_every_emoji(bot, slack, sessions):
    reply = route(bot, "unsure what this is about", ts="1700000000.000200")
    assert "Needs triage" in text_of(reply) and "Billing 40%" in text_of(reply)
    assert ":moneybag: Billing" in text_of(reply) and ":money_with_wings: Refunds" in text_of(reply)
    triage = slack.wait_for("chat.postMessage", 2)[-1].body
    assert triage["channel"] == "CTRIAGE"
    assert stored_message(sessions, "1700000000.000200").routed_to is None


def test_a_close_second_goes_to_triage_even_above_the_threshold(bot, slack):
    reply = route(bot, "either of the two", ts="1700000000.000250")
    assert "Needs triage" in text_of(reply) and "Billing 52%, Shipping 45%" in text_of(reply)


def test_a_department_without_a_channel_gets_the_reply_only(bot, slack):
    reply = route(bot, "refund please", ts="1700000000.000260")
    assert "Routed to *Refunds*" in text_of(reply)
    bot.drain()
    assert len(posts(slack)) == 1


IGNORED = [
    message("hello from a bot", ts="1.1", subtype="bot_message", bot_id="B9"),
    message("a bot without subtype", ts="1.2", bot_id="B9"),
    {"type": "message", "subtype": "message_changed", "channel": "CSUPPORT", "ts": "1.3",
     "message": {"text": "edited", "user": CUSTOMER, "ts": "1.0"}},
    {"type": "message", "subtype": "message_deleted", "channel": "CSUPPORT", "ts": "1.4", "deleted_ts": "1.0"},
    message("a reply in a thread", ts="1.5", thread_ts="1.0"),
    message("<@UCUSTOMER> has joined the channel", ts="1.6", subtype="channel_join"),
    message("", ts="1.7"),
    message("   ", ts="1.8"),
    message(":wave: :tada::skin-tone-2:  👋🏽", ts="1.9"),
    message("a direct message", ts="1.10", channel="DCUSTOMER", channel_type="im"),
    message("agents chatting in the billing channel", ts="1.11", channel="CBILLING"),
    message("my own reply", ts="1.12", user="UBOT", bot_id="BBOT"),
]


@pytest.mark.parametrize("event", IGNORED, ids=lambda e: e.get("subtype") or e.get("text", "")[:20] or "empty")
def test_ignored_messages_get_no_answer_and_store_nothing(bot, slack, sessions, event):
    assert bot.event(event).status == 200
    route(bot, "a real question after it", ts="2.0")  # handled after the ignored one was
    assert [p["thread_ts"] for p in posts(slack, "CSUPPORT")] == ["2.0"]
    assert bot.deps.router.seen == ["a real question after it"]
    with sessions() as session:
        assert [m.ts for m in session.exec(select(SlackMessage))] == ["2.0"]


def test_very_long_text_is_cut_for_the_model_and_still_routed(bot, slack):
    route(bot, "charged " * 10_000, ts="3.0")
    assert len(bot.deps.router.seen[0]) == 2000


def test_an_agent_reroutes_with_an_emoji_on_the_reply(bot, slack, sessions):
    reply = route(bot, "where is my money back", ts="4.0")
    reply_ts = stored_message(sessions, "4.0").reply_ts
    bot.event(reaction("reaction_added", "package", user=AGENT, ts=reply_ts))
    update = slack.wait_for("chat.update")[-1].body
    assert update["ts"] == reply_ts and "Rerouted to *Shipping* by <@UAGENT1>" in text_of(update)
    forwarded = slack.wait_for("chat.postMessage", 3)[-1].body
    assert forwarded["channel"] == "CSHIPPING" and "rerouted by <@UAGENT1>" in text_of(forwarded)
    [label] = labels(sessions)
    assert (label.source, label.author, label.withdrawn_at) == (LabelSource.AGENT, AGENT, None)
    assert "Routed to *Billing*" in text_of(reply)


def test_a_reaction_on_the_customers_message_works_too_and_the_check_mark_confirms(bot, slack, sessions):
    route(bot, "charged twice", ts="5.0")
    bot.event(reaction("reaction_added", "white_check_mark", user=AGENT, ts="5.0"))
    update = slack.wait_for("chat.update")[-1].body
    assert "*Billing* confirmed by <@UAGENT1>" in text_of(update)
    [label] = labels(sessions)
    assert label.source == LabelSource.CONFIRM
    assert len(posts(slack)) == 2  # the reply and the Billing post: a confirmation forwards nothing


@pytest.mark.parametrize("who, emoji, on", [(STRANGER, "package", "reply"), (AGENT, "thumbsup", "reply"),
                                            (AGENT, "package", "elsewhere")])
def test_reactions_that_change_nothing(bot, slack, sessions, who, emoji, on):
    route(bot, "charged twice", ts="6.0")
    ts = stored_message(sessions, "6.0").reply_ts if on == "reply" else "9999.0"
    bot.event(reaction("reaction_added", emoji, user=who, ts=ts))
    bot.drain()
    assert labels(sessions) == [] and slack.calls_to("chat.update") == []


def test_removing_the_reaction_withdraws_the_label_and_restores_the_reply(bot, slack, sessions):
    route(bot, "charged twice", ts="7.0")
    bot.event(reaction("reaction_added", "package", user=AGENT, ts="7.0"))
    slack.wait_for("chat.update")
    bot.event(reaction("reaction_removed", "package", user=AGENT, ts="7.0"))
    restored = slack.wait_for("chat.update", 2)[-1].body
    assert "Routed to *Billing* (92% confident)" in text_of(restored)
    [label] = labels(sessions)
    assert label.withdrawn_at is not None


def test_a_removal_handled_before_its_addition_leaves_no_label_and_a_later_one_counts(bot, slack, sessions):
    route(bot, "charged twice", ts="7.5")
    bot.event({**reaction("reaction_removed", "package", user=AGENT, ts="7.5"), "event_ts": "1700000002.000100"})
    bot.drain()  # the removal is handled first
    bot.event({**reaction("reaction_added", "package", user=AGENT, ts="7.5"), "event_ts": "1700000001.000100"})
    bot.drain()
    assert labels(sessions) == [] and slack.calls_to("chat.update") == []
    bot.event({**reaction("reaction_added", "package", user=AGENT, ts="7.5"), "event_ts": "1700000003.000100"})
    slack.wait_for("chat.update")
    [label] = labels(sessions)
    assert (label.author, label.withdrawn_at) == (AGENT, None)


def test_two_agents_disagree_the_latest_stands_and_both_are_kept(bot, slack, sessions):
    route(bot, "charged twice", ts="8.0")
    bot.event(reaction("reaction_added", "package", user=AGENT, ts="8.0"))
    slack.wait_for("chat.update")
    bot.event(reaction("reaction_added", "money_with_wings", user=OTHER_AGENT, ts="8.0"))
    assert "Rerouted to *Refunds* by <@UAGENT2>" in text_of(slack.wait_for("chat.update", 2)[-1].body)
    first, second = labels(sessions)
    assert (first.author, second.author) == (AGENT, OTHER_AGENT) and first.superseded_by == second.id
    bot.event(reaction("reaction_removed", "money_with_wings", user=OTHER_AGENT, ts="8.0"))
    assert "Rerouted to *Shipping* by <@UAGENT1>" in text_of(slack.wait_for("chat.update", 3)[-1].body)


def test_a_redelivered_event_is_answered_once(bot, slack, sessions):
    event = message("charged twice", ts="9.0")
    assert bot.event(event, event_id="EvSAME").status == 200
    slack.wait_for("chat.postMessage", 2)
    assert bot.event(event, event_id="EvSAME", headers={"X-Slack-Retry-Num": "1",
                                                         "X-Slack-Retry-Reason": "http_timeout"}).status == 200
    assert bot.event(event, event_id="EvOTHER").status == 200  # same message, new id: still once
    route(bot, "a later question", ts="9.1")
    assert [p["thread_ts"] for p in posts(slack, "CSUPPORT")] == ["9.0", "9.1"]


def test_an_event_whose_first_delivery_died_is_handled_on_retry(bot, slack, sessions):
    with transaction(sessions) as session:  # its owner's lease ran out: that process is gone
        session.add(SlackEvent(event_id="EvDIED", claimed_at=utcnow() - timedelta(minutes=5), owner="dead:1",
                               lease_until=utcnow() - timedelta(minutes=4), attempts=1,
                               payload=message("charged twice", ts="10.0")))
    bot.event(message("charged twice", ts="10.0"), event_id="EvDIED", headers={"X-Slack-Retry-Num": "2"})
    assert slack.wait_for("chat.postMessage")[0].body["thread_ts"] == "10.0"


@pytest.mark.parametrize("forgery", ["wrong secret", "stale timestamp"])
def test_forged_or_stale_requests_are_refused_and_store_nothing(bot, slack, sessions, forgery):
    kwargs = {"secret": "not-the-secret"} if forgery == "wrong secret" else {"timestamp": int(time.time()) - 600}
    assert bot.event(message("charged twice", ts="11.0"), **kwargs).status == 401
    assert bot.command("status", user=ADMIN).status == 200  # a properly signed one still works
    bot.drain()
    assert stored_message(sessions, "11.0") is None and posts(slack) == []


def test_rate_limited_replies_are_retried_after_retry_after(bot, slack):
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    reply = route(bot, "charged twice", ts="12.0")
    assert reply["thread_ts"] == "12.0"
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses[:2] == [429, 200]


def test_slash_status_is_open_to_everyone_the_rest_to_admins(bot, slack, sessions):
    status = bot.command("status", user=STRANGER)
    assert status.status == 200 and "active model: none" in status.said
    assert status.seconds < 3
    for action in ("retrain", "rollback", "departments", "departments add Sales :dollar: <#CSALES|sales>"):
        refusal = bot.command(action, user=STRANGER).said
        assert "admins only" in refusal
    with sessions() as session:
        assert len(session.exec(select(SlackEvent)).all()) == 0


def test_admins_list_and_add_departments(bot, sessions):
    added = bot.command("departments add Sales Leads :dollar: <#CSALES|sales>", user=ADMIN).said
    assert "*Sales Leads* saved: :dollar:, <#CSALES>" in added
    listing = bot.command("departments", user=ADMIN).said
    assert "*Sales Leads*: :dollar:, <#CSALES>" in listing and "*Refunds*: :money_with_wings:, no channel" in listing
    taken = bot.command("departments add Other :dollar:", user=ADMIN).said
    assert "Not added" in taken and "already belongs to Sales Leads" in taken


def test_retrain_is_recorded_once_for_the_trainer_service_and_says_whether_one_runs(bot, sessions):
    from datetime import timedelta

    from store.tables import TrainingRequest
    from store.training_requests import answer_request, note_trainer_alive

    first = bot.command("retrain", user=ADMIN, channel="CADMIN").said
    assert "no trainer service is running" in first and "switchboard trainer" in first
    second = bot.command("retrain", user=ADMIN).said
    assert f"asked for by <@{ADMIN}> is already waiting" in second and "<#CADMIN>" in second
    with sessions() as session:
        [request] = session.exec(select(TrainingRequest)).all()
    assert request.requested_by == ADMIN and request.channel == "CADMIN" and request.started_at is None
    answer_request(sessions, request.id, run_id=None, outcome="done")
    note_trainer_alive(sessions, worker="t1", ttl=timedelta(seconds=30))
    assert "the trainer starts it within seconds" in bot.command("retrain", user=ADMIN).said


def test_a_failure_is_told_to_the_customer_in_words_meant_for_them_and_the_reply_follows(home, sessions, slack):
    from classifier.serving.active_router import ModelTimeout

    class StalledOnce(ScriptedRouter):
        def classify(self, text: str) -> Classification:
            if not self.seen:
                self.seen.append(text)
                raise ModelTimeout("the model did not answer within 30 s")
            return super().classify(text)

    server = scripted_bot(home, sessions, slack)
    stalled = BotServer(BotDeps(rules=server.deps.rules, sessions=sessions, router=StalledOnce()), slack)
    server.close()
    try:
        assert stalled.event(message("where is my parcel", ts="40.0"), event_id="EvSTALL").status == 200
        [apology] = slack.wait_for("chat.postMessage")
        assert apology.body["thread_ts"] == "40.0" and apology.body["text"] == (
            "Sorry, I could not route this message just now. I'll try again in a minute.")
        assert "30 s" not in text_of(apology.body)  # the machinery stays in the log
        wait_until(lambda: (e := session_event(sessions, "EvSTALL")) and e.owner is None, what="the release")
        with transaction(sessions) as session:
            session.get(SlackEvent, "EvSTALL").retry_at = utcnow()
        assert stalled.outbox().run_due() == 1
        reply = slack.wait_for("chat.postMessage", 2)[1].body
        assert reply["thread_ts"] == "40.0" and "Shipping" in text_of(reply)
    finally:
        stalled.close()


def session_event(sessions, event_id: str) -> SlackEvent | None:
    with sessions() as session:
        return session.get(SlackEvent, event_id)


def test_rollback_without_history_is_refused_politely(bot):
    assert "Rollback refused: no active model" in bot.command("rollback", user=ADMIN).said


def test_the_home_tab_shows_model_labels_runs_and_departments(bot, slack, sessions):
    route(bot, "charged twice", ts="13.0")
    bot.event(reaction("reaction_added", "package", user=AGENT, ts="13.0"))
    slack.wait_for("chat.update")
    bot.event({"type": "app_home_opened", "user": AGENT, "channel": "DHOME", "tab": "home"})
    view = slack.wait_for("views.publish")[0].body
    assert view["user_id"] == AGENT and view["view"]["type"] == "home"
    shown = " ".join(text_of(b) for b in [{"blocks": view["view"]["blocks"]}])
    assert "No model is active yet" in shown and "*Shipping*: 1 (1 agent)" in shown
    assert ":moneybag: *Billing* → <#CBILLING>" in shown


def test_healthz_names_the_active_model(bot):
    assert bot.get("/healthz").json() == {"status": "ok", "active_model": 1}


def test_empty_lines_copied_from_env_example_mean_not_set(tmp_path):
    (tmp_path / ".env").write_text("SLACK_APP_TOKEN=\nOPENAI_API_KEY=\nSWITCHBOARD_TRIAGE_CHANNEL=\n"
                                   "SLACK_BOT_TOKEN=xoxb-1\n")
    settings = Settings()  # the test runs in tmp_path, so this reads the file above
    assert settings.slack_app_token is None and settings.openai_api_key is None
    assert settings.triage_channel is None and settings.slack_bot_token.get_secret_value() == "xoxb-1"


def test_every_setting_is_listed_in_env_example():
    listed = {line.split("=", 1)[0].lstrip("# ") for line in
              (Path(__file__).resolve().parents[1] / ".env.example").read_text().splitlines() if "=" in line}
    names = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}  # type: ignore[union-attr]
    assert names - listed == set()


def test_only_the_contracts_variable_names_are_read(monkeypatch):
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("BASE_MODEL", "not-this-one")
    monkeypatch.setenv("AGENTS", "UNOBODY")
    settings = Settings()
    assert settings.home == Path(".switchboard").resolve() and settings.base_model == "smollm2-135m"
    assert settings.agents == frozenset()


def test_a_help_line_with_many_departments_stays_within_slacks_limit():
    from bot.blocks import reroute_help, routed
    from store.tables import Department

    many = [Department(name=f"Department number {i} with a long name", emoji=f"emoji_number_{i}") for i in range(60)]
    text = reroute_help(many)
    assert len(text) < 2000 and ":emoji_number_0:" in text and "more (the app's Home tab lists them all)" in text
    shown = text.count(":emoji_number_")
    assert f"and {60 - shown} more" in text
    assert all(len(e["text"]) <= 2000 for block in routed("X", 0.9, many, "1") if block["type"] == "context"
               for e in block["elements"])
    assert "more" not in reroute_help(many[:3])  # a few: every one listed
