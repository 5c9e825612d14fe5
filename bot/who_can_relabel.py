"""The note a person who is not an agent gets when their relabelling reaction changed nothing: who can relabel,
and whom to ask.

Only a reaction that would have relabelled, had an agent added it, earns the note: a department's
emoji, the check mark or the out-of-scope emoji, on a message the bot knows (the customer's message,
the bot's reply, or its copy in a department's or the triage channel). It is one ephemeral line in
that channel, at most once a day per person whichever replica handles the reaction: the post
ledger holds its key, and never repeats an ephemeral once its intent is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.deps import BotDeps
from bot.posting import post_once
from bot.roster import Roster
from store.examples import list_departments
from store.posts import Holder
from store.slack import department_for_emoji, find_message

log = logging.getLogger(__name__)

MAX_NAMED = 3  # admins named in the note; the rest are "…"


def tell_who_can_relabel(deps: BotDeps, client: WebClient, event: dict[str, Any], holder: Holder, *,
                         reserved_emoji: Collection[str]) -> None:
    """`event`: a `reaction_added` by someone who is not an agent. `reserved_emoji`: those that relabel
    besides the departments' (the check mark, the out-of-scope emoji). A note Slack refuses is logged."""
    item, user = event.get("item") or {}, event.get("user")
    channel, ts = item.get("channel"), item.get("ts")
    emoji = (event.get("reaction") or "").split("::")[0]
    if not user or item.get("type") != "message" or not channel or not ts or not emoji:
        return
    with deps.sessions() as session:
        message = find_message(session, channel=channel, ts=ts)
        if message is None or (emoji not in reserved_emoji and department_for_emoji(session, emoji=emoji) is None):
            return
        channels = [d.channel for d in list_departments(session) if d.channel]
    roster = deps.roster or Roster()
    text = note(roster, emoji, department_channels=channels if roster.from_department_channels else [])
    in_thread = message.ts if (channel, ts) == (message.channel, message.reply_ts) else None  # the bot's reply
    day = datetime.now(UTC).date().isoformat()
    try:
        post_once(client, deps.sessions, holder, key=f"who-can-relabel:{user}:{day}", channel=channel, text=text,
                  thread_ts=in_thread, ephemeral_user=user, verify=False)
    except SlackApiError as exc:  # a courtesy: the reaction is done with either way
        log.warning("could not tell %s who can relabel (%s)", user, exc.response.get("error"))


def note(roster: Roster, emoji: str, *, department_channels: list[str]) -> str:
    """"Only Switchboard agents …": the agents' user groups and department channels, and the admins to ask."""
    admins = [f"<@{a}>" for a in sorted(roster.admin_ids)] + [f"<!subteam^{g}>" for g in sorted(roster.admin_groups)]
    ask = (" or ".join(admins[:MAX_NAMED]) + (" (or another admin)" if len(admins) > MAX_NAMED else "")
           if admins else "a Switchboard admin")
    groups = [f"<!subteam^{g}>" for g in sorted(roster.agent_groups)]
    become = f"ask {ask} to add you to {' or '.join(groups) if groups else 'the agents'}"
    if department_channels:
        become += f"; members of the department channels {', '.join(f'<#{c}>' for c in department_channels)} " \
                  "are agents too"
    return f"Only Switchboard agents can reroute or relabel a question, so your :{emoji}: changed nothing. " \
           f"To become one, {become}."
