"""Slack's events as stored for retries keep no text once they are done: a message's event, an edit's (old and new
text) and a deletion's, whether the message is then deleted in Slack or forgotten with `forget --message`; on SQLite
and PostgreSQL."""

from __future__ import annotations

import json

from sqlmodel import select

from fakes.bot_server import message, reaction
from store.tables import SlackEvent
from tests.support import AGENT, route, run_cli, stored_message, wait_until

OLD = "the gazebo voucher was charged twice"
NEW = "the pergola voucher was charged twice, card 4111 1111 1111 1111"


def payloads(sessions) -> str:
    with sessions() as session:
        return json.dumps([e.payload for e in session.exec(select(SlackEvent))])


def edited(text: str, ts: str, *, event_ts: str) -> dict:
    return {"type": "message", "subtype": "message_changed", "channel": "CSUPPORT", "channel_type": "channel",
            "hidden": True, "ts": event_ts,
            "message": {"type": "message", "user": "UCUSTOMER", "text": text, "ts": ts,
                        "edited": {"user": "UCUSTOMER"}},
            "previous_message": {"type": "message", "user": "UCUSTOMER", "text": OLD, "ts": ts}}


def test_a_finished_events_payload_goes_when_it_is_done(sessions, start_bot):
    """A redelivery is known by the event's id alone: the text is not kept a day for it."""
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, OLD, ts="1700002000.000100")
    with sessions() as session:
        [event] = session.exec(select(SlackEvent)).all()
    assert event.done_at is not None and event.payload is None
    assert bot.event(message(OLD, ts="1700002000.000100"), event_id=event.event_id).status == 200  # Slack's retry
    bot.drain()
    assert len(bot.slack.calls_to("chat.postMessage")) == 2  # the reply and the forward, once


def test_an_edited_message_deleted_in_slack_leaves_neither_text_in_any_event(sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, OLD, ts="1700002100.000100")
    assert bot.event(edited(NEW, "1700002100.000100", event_ts="1700002101.000000")).status == 200
    bot.drain()
    wait_until(lambda: "pergola" in json.dumps(list(bot.slack.messages.values())), what="the new text's forward")
    deleted = {"type": "message", "subtype": "message_deleted", "channel": "CSUPPORT", "channel_type": "channel",
               "hidden": True, "deleted_ts": "1700002100.000100", "ts": "1700002102.000000",
               "previous_message": {"type": "message", "user": "UCUSTOMER", "text": NEW, "ts": "1700002100.000100"}}
    assert bot.event(deleted).status == 200
    bot.drain()
    wait_until(lambda: stored_message(sessions, "1700002100.000100") is None, what="the message forgotten")
    stored = payloads(sessions)
    assert "gazebo" not in stored and "pergola" not in stored and "4111" not in stored


def test_forget_message_after_an_edit_of_a_labelled_message_leaves_no_text_in_any_event(
        home, database_url, sessions, start_bot):
    """A labelled message's edit is not routed again: its event is done at once, with both texts in it."""
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, OLD, ts="1700002200.000100")
    assert bot.event(reaction("reaction_added", "package", user=AGENT, ts="1700002200.000100")).status == 200
    bot.drain()
    assert bot.event(edited(NEW, "1700002200.000100", event_ts="1700002201.000000")).status == 200
    bot.drain()
    stored = payloads(sessions)
    assert "gazebo" not in stored and "pergola" not in stored  # done: nothing kept for a day
    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test",
           "SLACK_API_URL": bot.slack.base_url}
    done = run_cli("forget", "--message", "1700002200.000100", env=env)
    assert done.returncode == 0, done.stderr
    assert stored_message(sessions, "1700002200.000100") is None
    stored = payloads(sessions)
    assert "gazebo" not in stored and "pergola" not in stored
