"""Slack's event shapes, built as Slack sends them, for the loopback bot (`BotServer.event`).

Each builder returns the inner `event` of an Events API callback, with the fields Slack's
Events API reference and message-subtype pages (docs.slack.dev/reference/events/message/...) and
@slack/types' `events/message.ts` show; docs/slack-events.md says what the bot does with each.
A message that changes (`message_changed`, `message_deleted`, the tombstone a thread's deleted
parent leaves) is built from the message event it changes, as `fakes.bot_server.message` makes one.
"""

from __future__ import annotations

import itertools
from typing import Any

from fakes.slack_api import TEAM_ID

SLACKBOT = "USLACKBOT"
DELETED = "This message was deleted."
_later = itertools.count(1)


def _event_ts() -> str:
    """A ts for a change event: Slack gives each its own, later than the message it changes."""
    return f"1800000000.{next(_later):06d}"


def _channel(channel: str) -> dict[str, Any]:
    return {"channel": channel, "channel_type": "channel"}


def _inner(event: dict[str, Any]) -> dict[str, Any]:
    """A message event as it appears inside a change: without the channel and the event's own fields."""
    return {k: v for k, v in event.items() if k not in ("channel", "channel_type", "event_ts")}


def _subtyped(subtype: str, text: str, *, user: str, ts: str, channel: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "subtype": subtype, "user": user, "text": text, "ts": ts, "event_ts": ts,
            "team": TEAM_ID, **_channel(channel), **extra}


# -- new top-level messages the bot is not to route

def thread_reply(text: str, *, ts: str, thread_ts: str, user: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return {"type": "message", "user": user, "text": text, "ts": ts, "thread_ts": thread_ts,
            "parent_user_id": user, "team": TEAM_ID, "event_ts": ts, **_channel(channel)}


def thread_broadcast(text: str, *, ts: str, root: dict[str, Any], user: str) -> dict[str, Any]:
    """A thread reply also sent to the channel ("Also send to #channel"): `root` is the thread's parent event."""
    parent = {**_inner(root), "thread_ts": root["ts"], "reply_count": 1, "reply_users_count": 1,
              "latest_reply": ts, "reply_users": [user], "is_locked": False}
    return {"type": "message", "subtype": "thread_broadcast", "text": text, "user": user, "ts": ts,
            "thread_ts": root["ts"], "root": parent, "client_msg_id": f"broadcast-{ts}", "event_ts": ts,
            **_channel(root["channel"])}


def channel_join(user: str, *, ts: str, channel: str = "CSUPPORT", inviter: str | None = None) -> dict[str, Any]:
    invited = {"inviter": inviter} if inviter else {}
    return _subtyped("channel_join", f"<@{user}> has joined the channel", user=user, ts=ts, channel=channel,
                     **invited)


def channel_leave(user: str, *, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return _subtyped("channel_leave", f"<@{user}> has left the channel", user=user, ts=ts, channel=channel)


def channel_topic(topic: str, *, user: str, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return _subtyped("channel_topic", f"set the channel topic: {topic}", user=user, ts=ts, channel=channel,
                     topic=topic)


def channel_purpose(purpose: str, *, user: str, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return _subtyped("channel_purpose", f"set the channel description: {purpose}", user=user, ts=ts,
                     channel=channel, purpose=purpose)


def channel_name(old: str, new: str, *, user: str, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return _subtyped("channel_name", f'has renamed the channel from "{old}" to "{new}"', user=user, ts=ts,
                     channel=channel, old_name=old, name=new)


def pinned_item(pinned: dict[str, Any], *, user: str, ts: str, unpinned: bool = False) -> dict[str, Any]:
    """Someone pinned (or unpinned) the message event `pinned` to its channel."""
    kind = "unpinned_item" if unpinned else "pinned_item"
    verb = "unpinned a message from" if unpinned else "pinned a message to"
    return _subtyped(kind, f"<@{user}> {verb} this channel.", user=user, ts=ts, channel=pinned["channel"],
                     item_type="C", item={**_inner(pinned), "pinned_to": [pinned["channel"]]})


def huddle_thread(*, ts: str, channel: str = "CSUPPORT", started_by: str = "UCUSTOMER") -> dict[str, Any]:
    """The message Slack posts where a huddle starts: its thread holds the huddle's notes and chat."""
    room = {"id": f"R{ts.replace('.', '')[-8:]}", "name": "", "media_server": "", "created_by": started_by,
            "date_start": int(float(ts)), "date_end": 0, "participants": [started_by], "channels": [channel],
            "is_dm_call": False, "was_rejected": False, "was_missed": False, "was_accepted": False,
            "has_ended": False, "call_family": "huddle"}
    return _subtyped("huddle_thread", "", user=SLACKBOT, ts=ts, channel=channel, room=room, no_notifications=True,
                     permalink=f"https://fake.slack.com/call/{room['id']}")


def bot_message(text: str, *, ts: str, channel: str = "CSUPPORT", bot_id: str = "B0DEPLOY") -> dict[str, Any]:
    """An integration's post (an incoming webhook, a legacy bot): no user."""
    event = _subtyped("bot_message", text, user="", ts=ts, channel=channel, bot_id=bot_id, username="Deploy bot")
    del event["user"]
    return event


def workflow_message(text: str, *, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    """A Workflow Builder step's post: a bot message with the workflow's bot profile and app."""
    profile = {"id": "B0WORKFLOW", "app_id": "A0WORKFLOW", "name": "Intake form", "deleted": False,
               "team_id": TEAM_ID}
    return _subtyped("bot_message", text, user="U0WORKFLOW", ts=ts, channel=channel, bot_id="B0WORKFLOW",
                     app_id="A0WORKFLOW", bot_profile=profile)


def app_message(text: str, *, ts: str, user: str = "U0APPUSER", channel: str = "CSUPPORT") -> dict[str, Any]:
    """A post an app made on a person's behalf: a plain message but for the `app_id` it carries."""
    return {"type": "message", "user": user, "text": text, "ts": ts, "app_id": "A0OTHERAPP", "team": TEAM_ID,
            "event_ts": ts, **_channel(channel)}


def connect_message(text: str, *, ts: str, user: str = "UCONNECT", user_team: str = "T0CUSTOMER",
                    channel: str = "CSUPPORT") -> dict[str, Any]:
    """A message from a member of another organisation in a Slack Connect channel."""
    return {"type": "message", "user": user, "text": text, "ts": ts, "team": user_team, "user_team": user_team,
            "source_team": user_team, "client_msg_id": f"connect-{ts}", "event_ts": ts,
            "is_ext_shared_channel": True, **_channel(channel)}


# -- changes to a message

def message_changed(original: dict[str, Any], *, text: str | None = None, by: str | None = None,
                    **changes: Any) -> dict[str, Any]:
    """`original` (a message event) edited to `text`, or changed otherwise (`changes`, e.g. attachments)."""
    ts = _event_ts()
    now = dict(_inner(original), **changes)
    if text is not None:
        now |= {"text": text, "edited": {"user": by or original.get("user"), "ts": ts.split(".")[0] + ".000000"}}
    return {"type": "message", "subtype": "message_changed", "hidden": True, "message": now,
            "previous_message": _inner(original), "ts": ts, "event_ts": ts, **_channel(original["channel"])}


def unfurled(original: dict[str, Any], *, url: str = "https://example.com/order/42") -> dict[str, Any]:
    """Slack adding a link's preview to `original`: the same text, an attachment more."""
    preview = {"from_url": url, "original_url": url, "fallback": "Example: Order 42", "title": "Order 42",
               "title_link": url, "service_name": "Example", "id": 1}
    return message_changed(original, attachments=[preview])


def tombstone(original: dict[str, Any], *, replies: list[str]) -> dict[str, Any]:
    """`original`, a thread's parent, deleted while replies (at these ts) remain: Slack replaces it with a
    tombstone, and says so as a `message_changed`."""
    stone = {"type": "message", "subtype": "tombstone", "text": DELETED, "user": SLACKBOT, "hidden": True,
             "ts": original["ts"], "thread_ts": original["ts"], "parent_user_id": SLACKBOT,
             "reply_count": len(replies), "reply_users_count": 1, "latest_reply": max(replies, default="0"),
             "reply_users": ["UBOT"], "is_locked": False, "subscribed": False}
    ts = _event_ts()
    before = {**_inner(original), "thread_ts": original["ts"], "reply_count": len(replies)}
    return {"type": "message", "subtype": "message_changed", "hidden": True, "message": stone,
            "previous_message": before, "ts": ts, "event_ts": ts, **_channel(original["channel"])}


def message_deleted(original: dict[str, Any]) -> dict[str, Any]:
    ts = _event_ts()
    return {"type": "message", "subtype": "message_deleted", "hidden": True, "deleted_ts": original["ts"],
            "previous_message": _inner(original), "ts": ts, "event_ts": ts, **_channel(original["channel"])}


# -- other events the bot subscribes to

def member_joined_channel(user: str, *, channel: str, inviter: str | None = None, left: bool = False) -> dict[str, Any]:
    event = {"type": "member_left_channel" if left else "member_joined_channel", "user": user, "channel": channel,
             "channel_type": "C", "team": TEAM_ID, "event_ts": _event_ts()}
    return event | ({"inviter": inviter} if inviter and not left else {})


def subteam_members_changed(subteam: str, *, added: list[str], removed: list[str]) -> dict[str, Any]:
    return {"type": "subteam_members_changed", "subteam_id": subteam, "team_id": TEAM_ID,
            "date_previous_update": 1700000000, "date_update": 1700000100, "added_users": added,
            "added_users_count": str(len(added)), "removed_users": removed,
            "removed_users_count": str(len(removed)), "event_ts": _event_ts()}


def app_home_opened(user: str, *, tab: str = "home") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": tab, "event_ts": _event_ts()}
