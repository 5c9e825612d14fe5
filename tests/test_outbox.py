"""The outbox: an event whose handling fails after Slack's acknowledgement is retried by the bot itself,
answered exactly once, and given up (and said so) only after repeated failures."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlmodel import select

from bot.app import event_handlers
from bot.outbox import OutboxWorker
from fakes.bot_server import message
from store.db import transaction
from store.outbox import MAX_ATTEMPTS, due_events, take
from store.tables import SlackEvent, utcnow
from tests.support import posts


def worker(bot) -> OutboxWorker:
    return OutboxWorker(bot.deps.sessions, bot.app.client, event_handlers(bot.deps))


def make_due(sessions, event_id: str) -> None:
    with transaction(sessions) as session:
        event = session.get(SlackEvent, event_id)
        event.retry_at = utcnow() - timedelta(seconds=1)
        session.add(event)


def attempts_to_reply(slack) -> list[str]:
    return [c.body["thread_ts"] for c in slack.calls_to("chat.postMessage") if c.body["channel"] == "CSUPPORT"]


def stored(sessions, event_id: str) -> SlackEvent:
    with sessions() as session:
        return session.exec(select(SlackEvent).where(SlackEvent.event_id == event_id)).one()


def test_a_reply_that_failed_after_the_acknowledgement_is_sent_once_by_the_outbox(bot, slack, sessions):
    slack.fail("chat.postMessage", error="internal_error")
    assert bot.event(message("charged twice", ts="20.0"), event_id="EvFAIL").status == 200
    slack.wait_for("chat.postMessage")  # the failed attempt
    deadline = utcnow() + timedelta(seconds=5)
    while stored(sessions, "EvFAIL").attempts == 0 and utcnow() < deadline:
        time.sleep(0.02)
    event = stored(sessions, "EvFAIL")
    assert event.attempts == 1 and event.retry_at is not None and "internal_error" in event.last_error
    assert worker(bot).run_due() == 0  # not due yet
    apology = slack.wait_for("chat.postMessage", 2)[1].body  # the customer is told at once, in the thread
    assert apology["thread_ts"] == "20.0" and apology["text"].startswith("Sorry, I could not route this message")
    assert "something went wrong on our side" in apology["text"] and "try again in a minute" in apology["text"]
    make_due(sessions, "EvFAIL")
    assert worker(bot).run_due() == 1
    assert attempts_to_reply(slack) == ["20.0"] * 3  # the one that failed, the apology, then the outbox's
    assert stored(sessions, "EvFAIL").done_at is not None
    bot.event(message("charged twice", ts="20.0"), event_id="EvFAIL", headers={"X-Slack-Retry-Num": "1"})
    assert worker(bot).run_due() == 0
    assert attempts_to_reply(slack) == ["20.0"] * 3  # answered once: nothing more


def test_events_left_in_hand_by_a_dead_process_are_answered_after_their_claim_expires(bot, slack, sessions):
    with transaction(sessions) as session:
        for i in range(3):
            session.add(SlackEvent(event_id=f"EvDEAD{i}", claimed_at=utcnow() - timedelta(minutes=3),
                                   payload=message(f"question {i} left behind", ts=f"21.{i}")))
    first, second = worker(bot), worker(bot)
    assert first.run_due() + second.run_due() == 3
    assert sorted(p["thread_ts"] for p in posts(slack, "CSUPPORT")) == ["21.0", "21.1", "21.2"]


def test_only_one_replica_takes_a_due_event(bot, sessions):
    with transaction(sessions) as session:
        session.add(SlackEvent(event_id="EvRACE", claimed_at=utcnow() - timedelta(minutes=3),
                               payload=message("race", ts="22.0")))
    [due] = due_events(sessions)
    assert take(sessions, due) is True
    assert take(sessions, due) is False  # read before the first take landed
    assert due_events(sessions) == []  # taken: not due again until the taker's claim expires


def test_an_event_that_keeps_failing_is_given_up_after_the_last_attempt(bot, slack, sessions, caplog):
    with transaction(sessions) as session:
        session.add(SlackEvent(event_id="EvBAD", claimed_at=utcnow() - timedelta(minutes=3),
                               payload=message("always fails", ts="23.0")))
    slack.fail("chat.postMessage", error="internal_error", times=MAX_ATTEMPTS)
    for _ in range(MAX_ATTEMPTS):
        assert worker(bot).run_due() == 0
        if stored(sessions, "EvBAD").gave_up_at is None:
            make_due(sessions, "EvBAD")
    event = stored(sessions, "EvBAD")
    assert event.attempts == MAX_ATTEMPTS and event.gave_up_at is not None and event.done_at is None
    assert due_events(sessions) == [] and "gave up on event EvBAD" in caplog.text
