"""Agents and admins from Slack: user groups and department channels, resolved live (bot/roster.py), and the note a
person who is not an agent gets when their emoji changed nothing (bot/who_can_relabel.py).

Through the real Bolt app over HTTP on the loopback Slack: the fake answers `usergroups.users.list` and
`conversations.members` from what each test sets, and the roster's clock is the test's.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.deps import BotDeps
from bot.roster import REFRESH_EVERY_S
from fakes.bot_server import BotServer, reaction
from store.tables import Label, SlackEvent
from tests.support import ADMIN, AGENT, ScriptedRouter, labels, route, stored_message

NEWBIE, STRANGER, BOSS = "UNEWBIE", "USTRANGER", "UBOSS"


class Clock:
    """The roster's clock: a test moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def react(bot: BotServer, emoji: str, *, user: str, ts: str, kind: str = "reaction_added",
          channel: str = "CSUPPORT") -> None:
    assert bot.event(reaction(kind, emoji, user=user, ts=ts, channel=channel)).status == 200
    bot.drain()


def event(bot: BotServer, body: dict) -> None:
    assert bot.event(body).status == 200
    bot.drain()


def by(sessions, user: str) -> list[Label]:
    return [label for label in labels(sessions) if label.author == user]


def handled_at_first_try(sessions) -> bool:
    """Every event the bot claimed is done, none failed: nothing was raised into a handler."""
    with sessions() as session:
        return all(e.done_at is not None and e.last_error is None and e.attempts == 1
                   for e in session.exec(select(SlackEvent)))


def reply_ts(bot: BotServer, text: str, ts: str) -> str:
    route(bot, text, ts=ts)
    return stored_message(bot.deps.sessions, ts).reply_ts


def group_changed(group: str, *, added: tuple[str, ...] = (), removed: tuple[str, ...] = ()) -> dict:
    return {"type": "subteam_members_changed", "subteam_id": group, "team_id": "T0FAKE",
            "date_previous_update": 1446670362, "date_update": 1492906952, "added_users": list(added),
            "added_users_count": str(len(added)), "removed_users": list(removed),
            "removed_users_count": str(len(removed))}


def channel_member(kind: str, user: str, channel: str) -> dict:
    return {"type": kind, "user": user, "channel": channel, "channel_type": "C", "team": "T0FAKE"}


def ephemerals(bot: BotServer, user: str) -> list[dict]:
    return [c.body for c in bot.slack.calls_to("chat.postEphemeral") if c.body["user"] == user]


def test_someone_added_to_the_agents_group_relabels_without_a_restart(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS="S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_usergroup("S1", [AGENT])
    ts = reply_ts(bot, "charged twice", "10.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    assert by(sessions, NEWBIE) == []

    bot.slack.set_usergroup("S1", [AGENT, NEWBIE])
    event(bot, group_changed("S1", added=(NEWBIE,)))
    react(bot, "package", user=NEWBIE, ts=ts)
    [label] = by(sessions, NEWBIE)
    assert label.withdrawn_at is None
    assert bot.slack.calls_to("usergroups.users.list")[-1].body["usergroup"] == "S1"


def test_someone_removed_from_the_agents_group_no_longer_relabels(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS="S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_usergroup("S1", [NEWBIE])
    ts = reply_ts(bot, "charged twice", "11.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == 1

    bot.slack.set_usergroup("S1", [])
    event(bot, group_changed("S1", removed=(NEWBIE,)))
    react(bot, "money_with_wings", user=NEWBIE, ts=ts)
    react(bot, "package", user=NEWBIE, ts=ts, kind="reaction_removed")
    [label] = by(sessions, NEWBIE)  # neither the new emoji nor the removal changed anything
    assert label.withdrawn_at is None and label.superseded_by is None


def test_a_group_change_counts_even_when_slack_fails_the_lookup_after_it(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS="S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_usergroup("S1", [])
    ts = reply_ts(bot, "charged twice", "12.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    bot.slack.fail("usergroups.users.list", "internal_error")
    event(bot, group_changed("S1", added=(NEWBIE,)))  # the event's own delta stands
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == 1


@pytest.mark.parametrize("on", [True, False], ids=["setting on", "setting off"])
def test_members_of_a_department_channel_are_agents_only_with_the_setting_on(start_bot, sessions, on):
    bot = start_bot(SWITCHBOARD_AGENTS_FROM_DEPARTMENT_CHANNELS=str(on).lower(), SWITCHBOARD_AUDIT_RATE="0",
                    SWITCHBOARD_ASK_RATE="0")
    crowd = [f"UMEMBER{i:03d}" for i in range(450)]
    bot.slack.set_members("CSHIPPING", ["UBOT", *crowd, NEWBIE])  # three pages of 200
    bot.slack.set_members("CBILLING", [])
    ts = reply_ts(bot, "charged twice", "13.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == (1 if on else 0)
    pages = [c.body for c in bot.slack.calls_to("conversations.members") if c.body["channel"] == "CSHIPPING"]
    if on:
        assert len(pages) == 3 and not pages[0].get("cursor") and pages[1]["cursor"] and pages[2]["cursor"]
        assert all(int(p["limit"]) == 200 for p in pages)
    else:
        assert pages == []


def test_joining_or_leaving_a_department_channel_counts_at_once(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS_FROM_DEPARTMENT_CHANNELS="true", SWITCHBOARD_AUDIT_RATE="0",
                    SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_members("CSHIPPING", [AGENT])
    bot.slack.set_members("CBILLING", [])
    ts = reply_ts(bot, "charged twice", "14.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    assert by(sessions, NEWBIE) == []

    bot.slack.set_members("CBILLING", [NEWBIE])
    event(bot, channel_member("member_joined_channel", NEWBIE, "CBILLING"))
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == 1

    bot.slack.set_members("CBILLING", [])
    event(bot, channel_member("member_left_channel", NEWBIE, "CBILLING"))
    react(bot, "package", user=NEWBIE, ts=ts, kind="reaction_removed")
    [label] = by(sessions, NEWBIE)
    assert label.withdrawn_at is None  # no longer an agent: the removal changed nothing


def test_a_change_slack_sent_no_event_for_counts_within_ten_minutes(start_bot, sessions):
    clock = Clock()
    bot = start_bot(SWITCHBOARD_AGENTS="S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0", clock=clock)
    bot.slack.set_usergroup("S1", [])
    ts = reply_ts(bot, "charged twice", "15.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    bot.slack.set_usergroup("S1", [NEWBIE])  # and Slack's event is lost
    clock.now += REFRESH_EVERY_S - 1
    react(bot, "package", user=NEWBIE, ts=ts)
    assert by(sessions, NEWBIE) == [] and len(bot.slack.calls_to("usergroups.users.list")) == 1

    clock.now += 2
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == 1 and len(bot.slack.calls_to("usergroups.users.list")) == 2


def test_slack_failing_the_lookup_keeps_the_last_known_members(start_bot, sessions):
    clock = Clock()
    bot = start_bot(SWITCHBOARD_AGENTS=f"{AGENT},S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0",
                    clock=clock)
    bot.slack.fail("usergroups.users.list", "internal_error")
    ts = reply_ts(bot, "charged twice", "16.0")
    react(bot, "thumbsup", user=STRANGER, ts=ts)  # the first lookup, which Slack fails
    react(bot, "package", user=AGENT, ts=ts)  # before any answer from Slack, the ids as written count
    assert len(by(sessions, AGENT)) == 1

    clock.now += REFRESH_EVERY_S
    bot.slack.set_usergroup("S1", [NEWBIE])
    react(bot, "package", user=NEWBIE, ts=ts)
    assert len(by(sessions, NEWBIE)) == 1

    clock.now += REFRESH_EVERY_S
    bot.slack.fail("usergroups.users.list", "internal_error", times=5)
    react(bot, "money_with_wings", user=NEWBIE, ts=ts)
    [_, refunds] = by(sessions, NEWBIE)  # still an agent: the last members Slack gave stand
    assert refunds.withdrawn_at is None and len(bot.slack.calls_to("usergroups.users.list")) == 3
    assert handled_at_first_try(sessions)


def test_an_unknown_group_makes_nobody_an_agent_and_breaks_nothing(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS=f"{AGENT},SGONE", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    ts = reply_ts(bot, "charged twice", "17.0")
    react(bot, "package", user=NEWBIE, ts=ts)
    react(bot, "package", user=AGENT, ts=ts)
    assert [label.author for label in labels(sessions)] == [AGENT]
    assert [c.body["usergroup"] for c in bot.slack.calls_to("usergroups.users.list")] == ["SGONE"]
    assert handled_at_first_try(sessions)


def test_an_admin_who_is_not_an_agent_relabels(bot, sessions):
    ts = reply_ts(bot, "charged twice", "18.0")
    react(bot, "package", user=ADMIN, ts=ts)
    [label] = labels(sessions)
    assert label.author == ADMIN


def test_an_admins_group_gives_admin_commands_and_relabelling(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_ADMINS="S2", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_usergroup("S2", [BOSS])
    assert "admins only" in bot.command("departments", user=NEWBIE).said
    assert "admins only" not in bot.command("departments", user=BOSS).said
    ts = reply_ts(bot, "charged twice", "19.0")
    react(bot, "package", user=BOSS, ts=ts)
    assert [label.author for label in labels(sessions)] == [BOSS]


def test_a_stranger_is_told_once_a_day_who_can_relabel(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AGENTS=f"{AGENT},S1", SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    bot.slack.set_usergroup("S1", [])
    ts = reply_ts(bot, "charged twice", "20.0")
    react(bot, "thumbsup", user=STRANGER, ts=ts)  # not an emoji that relabels: no note
    react(bot, "package", user=STRANGER, ts="99.0")  # a message the bot does not know: none either
    assert ephemerals(bot, STRANGER) == []

    react(bot, "package", user=STRANGER, ts=ts)
    react(bot, "white_check_mark", user=STRANGER, ts=ts)
    react(bot, "package", user=STRANGER, ts="20.0")  # the customer's message
    second = BotServer(BotDeps(rules=bot.deps.rules, sessions=sessions, router=ScriptedRouter()), bot.slack)
    try:  # another replica, the same store
        react(second, "no_entry_sign", user=STRANGER, ts=ts)
    finally:
        second.close()
    [note] = ephemerals(bot, STRANGER)
    assert note["channel"] == "CSUPPORT" and note["thread_ts"] == "20.0"  # in the thread of the reply reacted to
    assert "Only Switchboard agents" in note["text"] and ":package:" in note["text"]
    assert "<!subteam^S1>" in note["text"] and f"<@{ADMIN}>" in note["text"]
    assert labels(sessions) == []


def test_a_note_slack_refuses_is_not_retried_or_repeated(start_bot, sessions):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ASK_RATE="0")
    ts = reply_ts(bot, "charged twice", "21.0")
    bot.slack.fail("chat.postEphemeral", "user_not_in_channel")
    react(bot, "package", user=STRANGER, ts=ts)
    assert handled_at_first_try(sessions)
    assert [c.ok for c in bot.slack.calls_to("chat.postEphemeral")] == [False]


def test_a_stranger_reacting_on_the_departments_copy_is_told_there(bot, sessions):
    route(bot, "charged twice", ts="22.0")
    [copy_ts] = [ts for channel, ts in bot.slack.messages if channel == "CBILLING"]
    react(bot, "package", user=STRANGER, ts=copy_ts, channel="CBILLING")
    [note] = ephemerals(bot, STRANGER)
    assert note["channel"] == "CBILLING" and not note.get("thread_ts") and "Only Switchboard agents" in note["text"]
    assert labels(sessions) == []
