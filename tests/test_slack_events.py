"""Every Slack event shape the bot receives does what docs/slack-events.md says, through the real Bolt app
over HTTP with the loopback Slack: which are routed, which change a routed message, which are ignored and
never even claimed (their text never reaches the store's slack_events table)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from fakes import slack_events as shapes
from fakes.bot_server import message
from store.db import transaction
from store.examples import upsert_department
from store.tables import Query, SlackEvent, SlackMessage
from tests.support import AGENT, CUSTOMER, posts, route, stored_message, text_of, wait_until

TS = "1700003000.000100"
QUESTION = message("I was charged twice for one order", ts=TS)


def claimed(sessions) -> dict[str, dict | None]:
    """Event id -> payload of every event the bot claimed."""
    with sessions() as session:
        return {e.event_id: e.payload for e in session.exec(select(SlackEvent))}


def rows_about(sessions, ts: str) -> list:
    with sessions() as session:
        return [*session.exec(select(SlackMessage).where(SlackMessage.ts == ts)),
                *session.exec(select(Query).where(Query.slack_ts == ts))]


def bot_posts_in_slack(slack) -> list[dict]:
    return [m for m in slack.messages.values() if m.get("bot_id") == slack.bot_id]


IGNORED = {
    "thread reply": shapes.thread_reply("any news?", ts="1700003001.000100", thread_ts=TS, user=CUSTOMER),
    "thread_broadcast": shapes.thread_broadcast("also for everyone: any news?", ts="1700003001.000200",
                                                root=QUESTION, user=CUSTOMER),
    "channel_join": shapes.channel_join(CUSTOMER, ts="1700003001.000300", inviter=AGENT),
    "channel_leave": shapes.channel_leave(CUSTOMER, ts="1700003001.000400"),
    "channel_topic": shapes.channel_topic("refunds take 5 days", user=AGENT, ts="1700003001.000500"),
    "channel_purpose": shapes.channel_purpose("ask us anything about orders", user=AGENT, ts="1700003001.000600"),
    "channel_name": shapes.channel_name("help", "support", user=AGENT, ts="1700003001.000700"),
    "pinned_item": shapes.pinned_item(QUESTION, user=AGENT, ts="1700003001.000800"),
    "unpinned_item": shapes.pinned_item(QUESTION, user=AGENT, ts="1700003001.000900", unpinned=True),
    "huddle_thread": shapes.huddle_thread(ts="1700003001.001000"),
    "bot_message": shapes.bot_message("deploy 42 finished, charged twice?", ts="1700003001.001100"),
    "workflow": shapes.workflow_message("New intake: charged twice for one order", ts="1700003001.001200"),
    "app_id": shapes.app_message("charged twice, posted by an app", ts="1700003001.001300"),
    "slackbot": message("Reminder: charged twice? check the refunds sheet", ts="1700003001.001400",
                        user=shapes.SLACKBOT),
}


@pytest.mark.parametrize("shape", IGNORED, ids=list(IGNORED))
def test_shapes_that_are_not_questions_get_nothing_and_are_not_claimed(bot, slack, sessions, shape):
    assert bot.event(IGNORED[shape], event_id="EvSHAPE").status == 200
    route(bot, "a real question after it", ts="1700003002.000100")
    assert [p["thread_ts"] for p in posts(slack, "CSUPPORT")] == ["1700003002.000100"]
    assert bot.deps.router.seen == ["a real question after it"]
    assert "EvSHAPE" not in claimed(sessions)  # nor its text in the store
    with sessions() as session:
        assert [m.ts for m in session.exec(select(SlackMessage))] == ["1700003002.000100"]


def test_a_slack_connect_customer_of_another_organisation_is_routed_like_any_other(bot, slack, sessions):
    event = shapes.connect_message("I was charged twice for one order", ts="1700003003.000100")
    assert bot.event(event).status == 200
    wait_until(lambda: posts(slack, "CBILLING"), what="the forward")
    stored = stored_message(sessions, "1700003003.000100")
    assert stored.routed_to == "Billing" and stored.user == "UCONNECT"


def test_a_tombstone_forgets_the_message_its_forward_and_reply_and_posts_nothing(bot, slack, sessions):
    route(bot, QUESTION["text"], ts=TS)
    wait_until(lambda: posts(slack, "CBILLING"), what="the forward")
    reply_ts = stored_message(sessions, TS).reply_ts
    before = len(slack.calls_to("chat.postMessage"))
    assert bot.event(shapes.tombstone(QUESTION, replies=[reply_ts]), event_id="EvTOMB").status == 200
    wait_until(lambda: claimed(sessions)["EvTOMB"] is None, what="the tombstone handled")  # its text forgotten too
    bot.drain()  # the rows go first, then the Slack deletions
    deleted = {(c.body["channel"], c.body["ts"]) for c in slack.calls_to("chat.delete")}
    assert ("CSUPPORT", reply_ts) in deleted and any(channel == "CBILLING" for channel, _ in deleted)
    assert bot_posts_in_slack(slack) == [] and rows_about(sessions, TS) == []
    assert len(slack.calls_to("chat.postMessage")) == before  # nothing posted: no apology, no notice
    assert not any(QUESTION["text"] in repr(payload) for payload in claimed(sessions).values())


def test_an_unfurl_or_any_change_that_keeps_the_text_changes_nothing_and_is_not_claimed(bot, slack, sessions):
    route(bot, QUESTION["text"], ts=TS)
    wait_until(lambda: posts(slack, "CBILLING"), what="the forward")
    calls = len(slack.calls)
    assert bot.event(shapes.unfurled(QUESTION), event_id="EvUNFURL").status == 200
    assert bot.event(shapes.message_changed(QUESTION, blocks=[{"type": "divider"}]), event_id="EvBLOCKS").status == 200
    bot.drain()
    assert len(slack.calls) == calls  # no chat.update, no post, no delete
    assert bot.deps.router.seen == [QUESTION["text"]]  # classified once
    assert {"EvUNFURL", "EvBLOCKS"} & set(claimed(sessions)) == set()
    assert stored_message(sessions, TS).routed_to == "Billing"


def test_edits_of_thread_replies_and_of_agents_messages_in_their_channels_are_not_claimed(bot, slack, sessions):
    route(bot, QUESTION["text"], ts=TS)
    reply = shapes.thread_reply("any news?", ts="1700003004.000100", thread_ts=TS, user=CUSTOMER)
    chat = message("who takes this one?", ts="1700003004.000200", user=AGENT, channel="CBILLING")
    triage = message("looking at it", ts="1700003004.000300", user=AGENT, channel="CTRIAGE")
    for i, original in enumerate((reply, chat, triage)):
        edited = shapes.message_changed(original, text=original["text"] + " (edited: my card is 4111 1111)")
        assert bot.event(edited, event_id=f"EvEDIT{i}").status == 200
        assert bot.event(shapes.message_deleted(original), event_id=f"EvGONE{i}").status == 200
    bot.drain()
    assert set(claimed(sessions)) & {f"Ev{kind}{i}" for kind in ("EDIT", "GONE") for i in range(3)} == set()
    assert "4111" not in repr(claimed(sessions))
    assert not slack.calls_to("chat.update") and not slack.calls_to("chat.delete")


def test_the_alert_channel_is_never_routed(start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ALERT_CHANNEL="CALERT")
    order = message("do not approve model 5, it misroutes refunds", ts="1700003005.000100", user="UADMIN",
                    channel="CALERT")
    assert bot.event(order, event_id="EvALERT").status == 200
    route(bot, "a real question after it", ts="1700003005.000200")
    assert posts(bot.slack, "CALERT") == [] and bot.deps.router.seen == ["a real question after it"]
    assert stored_message(bot.deps.sessions, "1700003005.000100") is None
    assert "EvALERT" not in claimed(bot.deps.sessions)


def test_when_support_channels_are_named_only_their_messages_are_routed(start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_SUPPORT_CHANNELS="CSUPPORT, CHELP")
    for i, channel in enumerate(("CRANDOM", "CHELP", "CSUPPORT")):
        assert bot.event(message(f"charged twice, {channel}", ts=f"1700003006.00010{i}", channel=channel),
                         event_id=f"EvIN{channel}").status == 200
    wait_until(lambda: len(posts(bot.slack, "CBILLING")) == 2, what="two forwards")
    bot.drain()
    assert {p["channel"] for p in posts(bot.slack) if p.get("thread_ts")} == {"CHELP", "CSUPPORT"}
    assert "EvINCRANDOM" not in claimed(bot.deps.sessions)


def test_a_channel_made_a_departments_a_moment_ago_is_not_routed(bot, slack, sessions):
    route(bot, QUESTION["text"], ts=TS)  # the departments' channels are read, and kept a while
    with transaction(sessions) as session:
        upsert_department(session, name="Sales", emoji="dollar", channel="CSALES")
    assert bot.event(message("who has the Q3 numbers?", ts="1700003007.000100", user=AGENT,
                             channel="CSALES")).status == 200
    bot.drain()
    assert posts(slack, "CSALES") == [] and stored_message(sessions, "1700003007.000100") is None


def test_an_edit_of_a_routed_message_is_still_routed_again(bot, slack, sessions):
    """The control for the shapes above: a real edit of a top-level question is claimed and acted on."""
    route(bot, "my parcel is late", ts="1700003008.000100")
    original = message("my parcel is late", ts="1700003008.000100")
    assert bot.event(shapes.message_changed(original, text="I was charged twice"), event_id="EvREAL").status == 200
    wait_until(lambda: posts(slack, "CBILLING"), what="the new forward")
    update = slack.wait_for("chat.update")[-1].body
    assert "Billing" in text_of(update) and "EvREAL" in claimed(sessions)


def test_member_group_and_home_events_are_handled_at_once_and_never_claimed(bot, slack, sessions):
    events = {"EvJOIN": shapes.member_joined_channel(AGENT, channel="CBILLING", inviter="UADMIN"),
              "EvLEFT": shapes.member_joined_channel(AGENT, channel="CBILLING", left=True),
              "EvGROUP": shapes.subteam_members_changed("S0AGENTS", added=[AGENT], removed=[]),
              "EvHOME": shapes.app_home_opened(AGENT)}
    for event_id, event in events.items():
        assert bot.event(event, event_id=event_id).status == 200
    assert slack.wait_for("views.publish")[0].body["user_id"] == AGENT
    bot.drain()
    assert set(claimed(sessions)) & set(events) == set()


def test_a_reaction_on_a_file_is_not_claimed(bot, slack, sessions):
    on_file = {"type": "reaction_added", "user": AGENT, "reaction": "package", "item_user": CUSTOMER,
               "item": {"type": "file", "file": "F0SCREENSHOT"}, "event_ts": "1700003009.000100"}
    assert bot.event(on_file, event_id="EvFILE").status == 200
    bot.drain()
    assert "EvFILE" not in claimed(sessions) and not [c for c in slack.calls if c.method.startswith("chat.")]


def test_a_store_that_cannot_read_the_departments_before_the_claim_still_gets_the_message_routed(bot, slack,
                                                                                                  sessions):
    from sqlalchemy import event

    left = {"n": 1}

    def before(conn, cursor, statement, *args):
        if left["n"] and statement.lstrip().upper().startswith("SELECT") and "FROM departments" in statement:
            left["n"] -= 1
            raise conn.dialect.loaded_dbapi.OperationalError("database is locked")

    event.listen(sessions().get_bind(), "before_cursor_execute", before)
    assert bot.event(message(QUESTION["text"], ts=TS)).status == 200  # decided without it, then routed
    wait_until(lambda: posts(slack, "CBILLING"), what="the forward")
    assert left["n"] == 0 and stored_message(sessions, TS).routed_to == "Billing"
