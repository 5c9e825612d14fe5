"""The order between a message's events (bot/order.py): a reaction, an edit or a deletion that reaches the
bot while the message's own event waits for its retry, or is in hand; and an edit whose own steps fail.
Through the real Bolt app over HTTP, the outbox run by the test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.delivery import DeliveryPolicy
from fakes import slack_events as shapes
from fakes.bot_server import message, reaction
from store.db import transaction
from store.deliveries import RetryPolicy
from store.tables import LabelSource, Query, SlackEvent, SlackMessage, utcnow
from tests.faults import Fault, FaultyRouter
from tests.support import AGENT, ScriptedRouter, labels, posts, scripted_bot, stored_message, text_of, wait_until

POLICY = DeliveryPolicy(lease=timedelta(seconds=5), heartbeat=timedelta(seconds=1), poll=timedelta(hours=1),
                        retry=RetryPolicy(max_attempts=4, first_delay=timedelta(0), max_delay=timedelta(0)))
TS = "1700004000.000100"
CHARGED, PARCEL = "I was charged twice for one order", "my parcel is late"


@pytest.fixture
def failing_once(home, sessions, slack):
    """The bot whose first classification fails: the first message waits for its retry."""
    bot = scripted_bot(home, sessions, slack, policy=POLICY, router=FaultyRouter(ScriptedRouter(), Fault("once")),
                       SWITCHBOARD_AUDIT_RATE="0")
    yield bot
    bot.close()


@pytest.fixture
def fast(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, policy=POLICY, SWITCHBOARD_AUDIT_RATE="0")
    yield bot
    bot.close()


def event_row(sessions, event_id: str) -> SlackEvent | None:
    with sessions() as session:
        return session.get(SlackEvent, event_id)


def waiting(sessions, event_id: str) -> bool:
    """Released for a retry: nobody holds it, not done."""
    row = event_row(sessions, event_id)
    return row is not None and row.owner is None and row.retry_at is not None and row.done_at is None


def settle(bot, sessions) -> None:
    """Runs the outbox until every event is done or handed off."""
    def undone() -> bool:
        with sessions() as session:
            return bool(session.exec(select(SlackEvent).where(SlackEvent.done_at.is_(None),  # type: ignore[union-attr]
                                                              SlackEvent.gave_up_at.is_(None))).first())

    wait_until(lambda: not undone() or (bot.outbox().run_due() and False), timeout=30, what="every event done")


def thread(slack, ts: str) -> list[str]:
    return [text_of(c.body) for c in slack.calls_to("chat.postMessage") if c.ok and c.body.get("thread_ts") == ts]


def test_a_reaction_on_a_message_waiting_for_its_retry_waits_too_and_then_applies(failing_once, slack, sessions):
    bot = failing_once
    assert bot.event(message(CHARGED, ts=TS), event_id="EvMSG").status == 200
    wait_until(lambda: waiting(sessions, "EvMSG"), what="the message's first attempt failed")
    assert bot.event(reaction("reaction_added", "package", user=AGENT, ts=TS), event_id="EvADD").status == 200
    wait_until(lambda: waiting(sessions, "EvADD"), what="the reaction released for a retry")
    assert labels(sessions) == [] and not slack.calls_to("chat.postEphemeral")  # no apology: nothing failed
    settle(bot, sessions)
    [label] = labels(sessions)
    assert (label.author, label.source, label.withdrawn_at) == (AGENT, LabelSource.AGENT, None)
    shown = slack.messages[("CSUPPORT", stored_message(sessions, TS).reply_ts)]
    assert "Rerouted to *Shipping* by <@UAGENT1>" in text_of(shown)
    assert [p["channel"] for p in posts(slack) if not p.get("thread_ts")] == ["CBILLING", "CSHIPPING"]


@pytest.mark.parametrize("deletion", ["message_deleted", "tombstone"])
def test_a_message_deleted_while_it_waits_for_its_retry_is_never_routed_nor_kept(failing_once, slack, sessions,
                                                                                 deletion):
    bot = failing_once
    original = message(CHARGED, ts=TS)
    assert bot.event(original, event_id="EvMSG").status == 200
    wait_until(lambda: waiting(sessions, "EvMSG"), what="the message's first attempt failed")
    [apology] = wait_until(lambda: [c for c in slack.calls_to("chat.postMessage") if c.ok], what="the apology")
    gone = shapes.message_deleted(original) if deletion == "message_deleted" else (
        shapes.tombstone(original, replies=[apology.body["thread_ts"]]))
    assert bot.event(gone, event_id="EvGONE").status == 200
    wait_until(lambda: (e := event_row(sessions, "EvGONE")) and e.done_at, what="the deletion handled")
    assert bot.outbox().run_due() == 0  # the message's retry was cancelled
    assert bot.deps.router.inner.seen == []  # the failed attempt was the only one
    assert [p for p in posts(slack) if "Routed" in text_of(p) or not p.get("thread_ts")] == []  # no reply, no forward
    with sessions() as session:
        assert session.exec(select(SlackMessage)).all() == [] and session.exec(select(Query)).all() == []
        assert not any(CHARGED in repr(e.payload) for e in session.exec(select(SlackEvent)))
    assert all(not m.get("bot_id") for m in slack.messages.values())  # the apology deleted too


def test_a_deletion_while_the_message_is_in_hand_waits_and_then_forgets_what_was_routed(fast, slack, sessions):
    bot = fast
    with transaction(sessions) as session:  # another replica works on the message right now
        session.add(SlackEvent(event_id="EvMSG", claimed_at=utcnow(), attempts=1, owner="replica-b:1:x",
                               lease_until=utcnow() + timedelta(minutes=1), payload=message(CHARGED, ts=TS)))
    slack.add_message("CSUPPORT", message(CHARGED, ts=TS))
    assert bot.event(shapes.message_deleted(message(CHARGED, ts=TS)), event_id="EvGONE").status == 200
    wait_until(lambda: waiting(sessions, "EvGONE"), what="the deletion released to wait")
    assert event_row(sessions, "EvMSG").done_at is None  # not cancelled under its owner
    with transaction(sessions) as session:  # that replica died; its lease ran out
        session.get(SlackEvent, "EvMSG").lease_until = utcnow() - timedelta(seconds=1)
    settle(bot, sessions)
    assert stored_message(sessions, TS) is None
    assert all(not m.get("bot_id") for m in slack.messages.values())  # the reply and the forward, deleted
    assert len(slack.calls_to("chat.delete")) == 2


def test_an_edit_while_the_message_is_in_hand_waits_and_then_applies_as_an_edit(fast, slack, sessions):
    bot = fast
    with transaction(sessions) as session:  # another replica works on the message right now
        session.add(SlackEvent(event_id="EvMSG", claimed_at=utcnow(), attempts=1, owner="replica-b:1:x",
                               lease_until=utcnow() + timedelta(minutes=1), payload=message(CHARGED, ts=TS)))
    assert bot.event(shapes.message_changed(message(CHARGED, ts=TS), text=PARCEL), event_id="EvEDIT").status == 200
    wait_until(lambda: waiting(sessions, "EvEDIT"), what="the edit released to wait")
    assert event_row(sessions, "EvMSG").payload["text"] == CHARGED  # not changed under its owner
    with transaction(sessions) as session:  # that replica died; its lease ran out
        session.get(SlackEvent, "EvMSG").lease_until = utcnow() - timedelta(seconds=1)
    settle(bot, sessions)
    assert stored_message(sessions, TS).routed_to == "Shipping"
    shown = slack.messages[("CSUPPORT", stored_message(sessions, TS).reply_ts)]
    assert "Routed to *Shipping*" in text_of(shown)
    assert [p["channel"] for p in posts(slack) if not p.get("thread_ts")] == ["CBILLING", "CSHIPPING"]
    assert all(CHARGED not in text_of(m) for m in slack.messages.values() if m.get("bot_id"))
    with sessions() as session:
        assert [q.text for q in session.exec(select(Query))] == [PARCEL]


def test_an_edit_while_the_message_waits_for_its_retry_routes_the_new_text(failing_once, slack, sessions):
    bot = failing_once
    original = message(CHARGED, ts=TS)
    assert bot.event(original, event_id="EvMSG").status == 200
    wait_until(lambda: waiting(sessions, "EvMSG"), what="the message's first attempt failed")
    assert bot.event(shapes.message_changed(original, text=PARCEL), event_id="EvEDIT").status == 200
    wait_until(lambda: (e := event_row(sessions, "EvEDIT")) and e.done_at, what="the edit handled")
    settle(bot, sessions)
    assert stored_message(sessions, TS).routed_to == "Shipping"
    [forwarded] = [p for p in posts(slack) if not p.get("thread_ts")]
    assert forwarded["channel"] == "CSHIPPING" and PARCEL in text_of(forwarded) and CHARGED not in text_of(forwarded)
    with sessions() as session:
        assert [q.text for q in session.exec(select(Query))] == [PARCEL]


def test_an_edit_whose_reply_update_failed_is_finished_by_its_retry_and_apologised_for_nowhere(fast, slack, sessions):
    bot = fast
    original = message(PARCEL, ts=TS)
    assert bot.event(original, event_id="EvMSG").status == 200
    wait_until(lambda: posts(slack, "CSHIPPING"), what="the forward")
    settle(bot, sessions)
    slack.fail("chat.update", error="internal_error")
    edit = shapes.message_changed(original, text=CHARGED)
    assert bot.event(edit, event_id="EvEDIT").status == 200
    wait_until(lambda: waiting(sessions, "EvEDIT"), what="the edit's first attempt failed")
    settle(bot, sessions)
    shown = slack.messages[("CSUPPORT", stored_message(sessions, TS).reply_ts)]
    assert "Routed to *Billing*" in text_of(shown) and "Shipping*" not in text_of(shown)
    assert thread(slack, edit["ts"]) == []  # nothing where Slack shows nothing
    assert [said for said in thread(slack, TS) if "Sorry" in said] == []  # the customer has the reply already
    assert [p["channel"] for p in posts(slack) if not p.get("thread_ts")] == ["CSHIPPING", "CBILLING"]


def test_an_agent_whose_label_was_recorded_hears_so_when_only_the_reply_could_not_show_it(fast, slack, sessions):
    bot = fast
    assert bot.event(message(CHARGED, ts=TS), event_id="EvMSG").status == 200
    wait_until(lambda: posts(slack, "CBILLING"), what="the forward")
    settle(bot, sessions)
    slack.fail("chat.update", error="internal_error")
    assert bot.event(reaction("reaction_added", "package", user=AGENT, ts=TS), event_id="EvADD").status == 200
    [note] = wait_until(lambda: slack.calls_to("chat.postEphemeral"), what="the note to the agent")
    assert note.body["user"] == AGENT and "recorded" in note.body["text"]
    assert "could not be recorded" not in note.body["text"] and "could not update" in note.body["text"]
    [label] = labels(sessions)
    assert label.author == AGENT


def test_a_deletion_loses_to_an_outbox_that_took_the_event_after_it_was_read(sessions):
    """The compare-and-set: an outbox take between the deletion's read and its write wins, and the deletion
    then waits for that attempt instead of cancelling an event now in hand."""
    from store.deliveries import due_events, take
    from store.pending import cancel_pending, edit_pending, pending_message

    with transaction(sessions) as session:
        session.add(SlackEvent(event_id="EvMSG", claimed_at=utcnow(), attempts=1, retry_at=utcnow(),
                               payload=message(CHARGED, ts=TS)))
    with sessions() as session:
        pending = pending_message(session, channel="CSUPPORT", ts=TS)
    assert pending is not None and not pending.held
    [due] = due_events(sessions)
    assert take(sessions, due, owner="replica-b", lease=timedelta(minutes=1))
    assert not cancel_pending(sessions, pending) and not edit_pending(sessions, pending, {"text": PARCEL})
    row = event_row(sessions, "EvMSG")
    assert row.done_at is None and row.payload["text"] == CHARGED and row.owner == "replica-b"
    with sessions() as session:
        assert pending_message(session, channel="CSUPPORT", ts=TS).held


def test_an_edit_whose_retries_run_out_is_not_handed_off_as_a_new_message(fast, slack, sessions):
    bot = fast
    original = message(PARCEL, ts=TS)
    assert bot.event(original, event_id="EvMSG").status == 200
    wait_until(lambda: posts(slack, "CSHIPPING"), what="the forward")
    settle(bot, sessions)
    slack.fail("chat.update", error="internal_error", times=100)
    edit = shapes.message_changed(original, text=CHARGED)
    assert bot.event(edit, event_id="EvEDIT").status == 200
    settle(bot, sessions)
    assert event_row(sessions, "EvEDIT").gave_up_at is not None
    assert thread(slack, edit["ts"]) == [] and posts(slack, "CTRIAGE") == []  # no notice, no hand-off to triage
    assert [said for said in thread(slack, TS) if not said.startswith("Routed")] == []
    assert stored_message(sessions, TS).routed_to == "Billing"  # the new text was routed; only the edit lags
