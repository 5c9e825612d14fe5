"""The message path's promises, one defect at a time (issue 22): each test failed on the code before the
path became a durable sequence of steps. The fault matrix (test_fault_matrix.py) crosses every step with
every failure; these pin the cases found in review, through the real Bolt app over HTTP."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot.delivery import DeliveryPolicy
from classifier.serving.engine_router import EngineClient, EngineRouter
from cli.compose import Context, slack_poster
from core.settings import Settings
from fakes.bot_server import message, reaction
from store.deliveries import RetryPolicy
from store.tables import SlackEvent, TrainingRequest
from store.training_requests import request_training
from tests.support import AGENT, ScriptedRouter, labels, posts, route, scripted_bot, stored_message, text_of, wait_until

POLICY = DeliveryPolicy(lease=timedelta(seconds=2), heartbeat=timedelta(seconds=0.3),
                        retry=RetryPolicy(max_attempts=3, first_delay=timedelta(0)))


def failing_statements(sessions, starts: str, *, times: int | None = None) -> dict[str, Any]:
    """The store refuses statements beginning with `starts` (as a full disk would) while `state["full"]`,
    or only the next `times` of them."""
    state: dict[str, Any] = {"full": True, "left": times}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if state["full"] and statement.lstrip().upper().startswith(starts.upper()):
            if state["left"] is not None:
                state["left"] -= 1
                state["full"] = state["left"] > 0
            raise conn.dialect.loaded_dbapi.OperationalError("database or disk is full")

    event.listen(sessions().get_bind(), "before_cursor_execute", before)
    return state


def settle(bot, sessions) -> None:
    """Runs the outbox until no event is left undone."""
    def undone() -> list:
        with sessions() as session:
            return list(session.exec(select(SlackEvent).where(SlackEvent.done_at.is_(None),  # type: ignore[union-attr]
                                                              SlackEvent.gave_up_at.is_(None))))

    wait_until(lambda: not undone() or (bot.outbox().run_due() and False), timeout=30, what="every event done")


def thread(slack, ts: str) -> list[str]:
    return [text_of(c.body) for c in slack.calls_to("chat.postMessage") if c.ok and c.body.get("thread_ts") == ts]


def test_a_store_that_cannot_take_the_claim_gets_slack_to_send_the_event_again(bot, slack, sessions):
    full = failing_statements(sessions, "INSERT INTO slack_events")
    assert bot.event(message("charged twice", ts="30.0"), event_id="EvFULL").status == 503
    assert posts(slack) == [] and stored_message(sessions, "30.0") is None
    full["full"] = False  # space freed: Slack's retry is answered, once
    assert bot.event(message("charged twice", ts="30.0"), event_id="EvFULL",
                     headers={"X-Slack-Retry-Num": "1"}).status == 200
    wait_until(lambda: len(posts(slack)) == 2, what="the reply and the forward")
    assert [p["channel"] for p in posts(slack)] == ["CSUPPORT", "CBILLING"]


def test_a_reply_whose_ts_could_not_be_stored_is_not_posted_again_nor_apologised_for(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, policy=POLICY, SWITCHBOARD_AUDIT_RATE="0")
    try:
        failing_statements(sessions, "UPDATE slack_messages SET reply_ts", times=3)  # the attempt's every try
        bot.event(message("charged twice", ts="31.0"), event_id="EvTS")
        settle(bot, sessions)
        assert [said.startswith("Routed to") for said in thread(slack, "31.0")] == [True]
        assert [p["channel"] for p in posts(slack) if not p.get("thread_ts")] == ["CBILLING"]
        assert stored_message(sessions, "31.0").reply_ts  # found in the thread and recorded
    finally:
        bot.close()


def test_a_permalink_that_fails_still_forwards_the_message_once(bot, slack, sessions):
    slack.fail("chat.getPermalink", error="internal_error")
    route(bot, "charged twice", ts="32.0")
    settle(bot, sessions)
    [forwarded] = [p for p in posts(slack) if p["channel"] == "CBILLING"]
    assert "charged twice" in text_of(forwarded) and "<#CSUPPORT>" in text_of(forwarded)
    assert [said.startswith("Routed to") for said in thread(slack, "32.0")] == [True]  # no apology


def test_a_retried_reaction_labels_once_and_its_removal_leaves_no_label(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, policy=POLICY, SWITCHBOARD_AUDIT_RATE="0")
    try:
        route(bot, "charged twice", ts="33.0")
        reply_ts = stored_message(sessions, "33.0").reply_ts
        slack.fail("chat.update", error="internal_error")
        bot.event(reaction("reaction_added", "package", user=AGENT, ts=reply_ts), event_id="EvADD")
        settle(bot, sessions)
        bot.event(reaction("reaction_removed", "package", user=AGENT, ts=reply_ts), event_id="EvDEL")
        settle(bot, sessions)
        assert [(lab.author, lab.withdrawn_at is not None) for lab in labels(sessions)] == [(AGENT, True)]
        assert "Routed to *Billing*" in text_of(slack.messages[("CSUPPORT", reply_ts)])
        assert [p["channel"] for p in posts(slack) if not p.get("thread_ts")] == ["CBILLING", "CSHIPPING"]
    finally:
        bot.close()


def test_a_customer_cannot_ping_a_channel_or_hide_words_through_the_forward(bot, slack, sessions):
    route(bot, "charged <!channel> <!here> <!subteam^S123|@support> \u202eevil\u202c & more", ts="34.0")
    settle(bot, sessions)
    [forwarded] = [p for p in posts(slack) if p["channel"] == "CBILLING"]
    shown = text_of(forwarded)
    for ping in ("<!channel>", "<!here>", "<!subteam^S123|@support>"):
        assert ping not in shown
    assert "&lt;!channel&gt;" in shown and "&amp; more" in shown and "\u202e" not in shown


def test_a_message_with_a_file_is_routed_by_its_text_and_a_file_alone_goes_to_triage(bot, slack, sessions):
    screenshot = [{"id": "F1", "name": "screenshot.png", "mimetype": "image/png"}]
    assert bot.event(message("charged twice, see the screenshot", ts="35.0", subtype="file_share",
                             files=screenshot)).status == 200
    assert bot.event(message("", ts="35.1", subtype="file_share", files=screenshot)).status == 200
    wait_until(lambda: len(posts(slack)) == 4, what="two replies and two forwards")
    settle(bot, sessions)
    assert stored_message(sessions, "35.0").routed_to == "Billing"
    [alone] = [p for p in posts(slack, "CSUPPORT") if p.get("thread_ts") == "35.1"]
    assert "Needs triage" in text_of(alone) and "a file with no question" in text_of(alone)
    assert "screenshot.png" in text_of(posts(slack, "CTRIAGE")[0])
    assert bot.deps.router.seen == ["charged twice, see the screenshot"]


def test_admins_asking_to_retrain_at_the_same_instant_record_one_request(sessions):
    def slow_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM training_requests" in statement:
            time.sleep(0.05)  # every asker has read "none waiting" before any of them writes

    event.listen(sessions().get_bind(), "after_cursor_execute", slow_reads)
    start, created = threading.Barrier(8), []

    def ask(i: int) -> None:
        start.wait()
        created.append(request_training(sessions, by=f"UADMIN{i}", channel="C1")[1])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with sessions() as session:
        assert len(session.exec(select(TrainingRequest)).all()) == 1
    assert created.count(True) == 1


def test_customers_hear_plain_words_and_health_shows_no_internal_address(home, sessions, slack):
    class Unreachable(ScriptedRouter):
        def classify(self, text: str) -> Any:
            raise OSError("cannot reach http://10.1.2.3:8000/v1: connection refused")

    bot = scripted_bot(home, sessions, slack, router=Unreachable(), SWITCHBOARD_AUDIT_RATE="0")
    try:
        bot.event(message("charged twice", ts="36.0"))
        [apology] = wait_until(lambda: thread(slack, "36.0"), what="the apology")
        assert apology.startswith("Sorry, I could not route this message just now.")
        assert "10.1.2.3" not in apology and "connection" not in apology
    finally:
        bot.close()
    engine = EngineRouter(client=EngineClient("http://10.1.2.3:8000/v1", timeout_s=0.1), tokenizer=None,
                          base_model_name="m", lookup=lambda: None)
    assert "10.1.2.3" not in str(engine.health())


def test_the_trainers_report_waits_out_a_rate_limit(slack, home):
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    settings = Settings(SWITCHBOARD_HOME=home, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.base_url)
    slack_poster(Context(settings=settings, sessions=lambda: None))("CADMIN", "UADMIN", "run 7 promoted")  # type: ignore[arg-type, return-value]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]


@pytest.mark.parametrize("who", ["agent", "stranger"])
def test_a_reaction_delivered_twice_writes_one_label(bot, slack, sessions, who):
    route(bot, "charged twice", ts="37.0")
    reply_ts = stored_message(sessions, "37.0").reply_ts
    user = AGENT if who == "agent" else "USTRANGER"
    for retry in range(2):
        bot.event(reaction("reaction_added", "package", user=user, ts=reply_ts), event_id="EvTWICE",
                  headers={"X-Slack-Retry-Num": str(retry)} if retry else None)
    settle(bot, sessions)
    assert len(labels(sessions)) == (1 if who == "agent" else 0)
