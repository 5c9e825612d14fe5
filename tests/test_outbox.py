"""The outbox: an event whose work fails after Slack's acknowledgement is retried by the bot itself and
answered exactly once; a process that died leaves its events for another to finish; an event whose
retries run out is handed to people, never dropped."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.delivery import DeliveryPolicy
from fakes.bot_server import message, reaction
from store.db import transaction
from store.deliveries import RetryPolicy, due_events, take
from store.tables import SlackEvent, utcnow
from tests.support import AGENT, labels, posts, scripted_bot, stored_message, text_of, wait_until

FAST = DeliveryPolicy(lease=timedelta(seconds=5), heartbeat=timedelta(seconds=1),
                      retry=RetryPolicy(max_attempts=3, first_delay=timedelta(0)))


def make_due(sessions, event_id: str) -> None:
    with transaction(sessions) as session:
        event = session.get(SlackEvent, event_id)
        event.retry_at = utcnow() - timedelta(seconds=1)
        session.add(event)


def thread_posts(slack, ts: str) -> list[dict]:
    return [c.body for c in slack.calls_to("chat.postMessage") if c.ok and c.body.get("thread_ts") == ts]


def stored(sessions, event_id: str) -> SlackEvent:
    with sessions() as session:
        return session.exec(select(SlackEvent).where(SlackEvent.event_id == event_id)).one()


def test_a_reply_that_failed_after_the_acknowledgement_is_sent_once_by_the_outbox(bot, slack, sessions):
    slack.fail("chat.postMessage", error="internal_error")
    assert bot.event(message("charged twice", ts="20.0"), event_id="EvFAIL").status == 200
    event = wait_until(lambda: (e := stored(sessions, "EvFAIL")).retry_at and e, what="the failure's retry")
    assert event.attempts == 1 and event.owner is None and "internal_error" in event.last_error
    assert bot.outbox().run_due() == 0  # not due yet
    [apology] = wait_until(lambda: thread_posts(slack, "20.0"), what="the apology")  # told at once, in the thread
    assert apology["text"] == "Sorry, I could not route this message just now. I'll try again in a minute."
    make_due(sessions, "EvFAIL")
    assert bot.outbox().run_due() == 1
    assert [text_of(p).startswith("Routed") for p in thread_posts(slack, "20.0")] == [False, True]
    assert stored(sessions, "EvFAIL").done_at is not None
    bot.event(message("charged twice", ts="20.0"), event_id="EvFAIL", headers={"X-Slack-Retry-Num": "1"})
    assert bot.outbox().run_due() == 0
    assert len(thread_posts(slack, "20.0")) == 2  # answered once: nothing more


def test_events_left_in_hand_by_a_dead_process_are_answered_once_its_lease_runs_out(bot, slack, sessions):
    with transaction(sessions) as session:
        for i in range(3):
            session.add(SlackEvent(event_id=f"EvDEAD{i}", claimed_at=utcnow() - timedelta(minutes=3), attempts=1,
                                   owner="dead-host:1:x", lease_until=utcnow() - timedelta(seconds=1),
                                   payload=message(f"question {i} left behind", ts=f"21.{i}")))
        session.add(SlackEvent(event_id="EvALIVE", claimed_at=utcnow(), attempts=1, owner="live-host:1:x",
                               lease_until=utcnow() + timedelta(minutes=1), payload=message("in hand", ts="21.9")))
    first, second = bot.outbox(), bot.outbox()
    assert first.run_due() + second.run_due() == 3
    assert sorted(p["thread_ts"] for p in posts(slack, "CSUPPORT")) == ["21.0", "21.1", "21.2"]  # not 21.9


def test_only_one_replica_takes_a_due_event(bot, sessions):
    with transaction(sessions) as session:
        session.add(SlackEvent(event_id="EvRACE", claimed_at=utcnow() - timedelta(minutes=3), attempts=1,
                               retry_at=utcnow() - timedelta(seconds=1), payload=message("race", ts="22.0")))
    [due] = due_events(sessions)
    assert take(sessions, due, owner="a", lease=timedelta(minutes=1)) is True
    assert take(sessions, due, owner="b", lease=timedelta(minutes=1)) is False  # read before the first take landed
    assert due_events(sessions) == []  # held: not due again until its lease runs out
    assert stored(sessions, "EvRACE").attempts == 2


def test_a_message_whose_retries_run_out_is_handed_to_triage_and_the_customer_told(home, sessions, slack, caplog):
    bot = scripted_bot(home, sessions, slack, policy=FAST, SWITCHBOARD_AUDIT_RATE="0")
    try:
        slack.fail("chat.postMessage", error="invalid_blocks", times=100, when=lambda b: "Routed to" in str(b))
        bot.event(message("where is my parcel?", ts="23.0"), event_id="EvBAD")
        wait_until(lambda: stored(sessions, "EvBAD").retry_at, what="the first failure")
        while not stored(sessions, "EvBAD").done_at:
            make_due(sessions, "EvBAD")
            bot.outbox().run_due()
        event = stored(sessions, "EvBAD")
        assert event.gave_up_at is not None and event.attempts == 4  # three handlings, then the hand-off
        [handed] = posts(slack, "CTRIAGE")
        assert "where is my parcel?" in text_of(handed) and "could not be routed automatically" in text_of(handed)
        assert "archives/CSUPPORT/p230" in text_of(handed)  # the link back
        apology, notice = thread_posts(slack, "23.0")  # once, after the first failure; then the hand-off
        assert apology["text"].startswith("Sorry") and "a person will answer here" in notice["text"]
        assert stored_message(sessions, "23.0") is not None  # stored: agents' reactions on it still teach the model
        assert due_events(sessions) == [] and "handing it to people" in caplog.text
    finally:
        bot.close()


def test_a_reaction_whose_retries_run_out_is_told_to_its_agent(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, policy=FAST, SWITCHBOARD_AUDIT_RATE="0")
    try:
        bot.event(message("charged twice", ts="24.0"))
        wait_until(lambda: (m := stored_message(sessions, "24.0")) and m.reply_ts, what="the reply")
        slack.fail("chat.update", error="internal_error", times=100)
        bot.event(reaction("reaction_added", "package", user=AGENT, ts="24.0"), event_id="EvREACT")
        wait_until(lambda: stored(sessions, "EvREACT").retry_at, what="the first failure")
        while not stored(sessions, "EvREACT").done_at:
            make_due(sessions, "EvREACT")
            bot.outbox().run_due()
        told = [c.body["text"] for c in slack.calls_to("chat.postEphemeral") if c.body["user"] == AGENT]
        assert told[0].startswith("Your :package: was recorded") and len(told) == 2  # it counts at once
        assert told[0].endswith("I'll try again in a minute.")
        assert told[1] == "Your :package: was recorded, but I could not update my reply to show it."
        assert [(lab.author, lab.withdrawn_at) for lab in labels(sessions)] == [(AGENT, None)]  # it does count
    finally:
        bot.close()
