"""The bot's copies of a customer's message in department and triage channels, and their edits.

A copy quotes the question with a link back to it. Where the customer's thread shows only the
acknowledgement (bot/replies.py), the copies carry the agents' view under the quote: the verdict, its
confidence and model, the relabel legend and the audit or ask buttons. A reaction or a button on a
copy acts on the customer's message (the copy's post records which message it is about).

When the label in force changes, every copy is edited: the copy in the channel of the department
that has the question now shows the agents' view; a copy anywhere else says where the question moved
and who moved it, and loses its buttons.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.deps import BotDeps
from bot.posting import marked
from bot.replies import agents_in_thread, agents_view, team_in_force
from store.examples import list_departments
from store.posts import Holder, check_held, copies_of
from store.slack import StandingLabel, prediction_of, standing_label
from store.tables import Department, Prediction, SlackMessage

log = logging.getLogger(__name__)
GONE = ("message_not_found", "channel_not_found", "cant_update_message", "is_archived")


def copy_view(deps: BotDeps, message: SlackMessage, prediction: Prediction | None,
              standing: StandingLabel | None, departments: Sequence[Department]) -> blocks.Blocks:
    """The agents' view a copy carries under its quote (none when the customer's thread shows it)."""
    if agents_in_thread(deps.rules, message):
        return []
    return agents_view(message, prediction, standing, departments,
                       out_of_scope_emoji=deps.rules.out_of_scope_emoji).blocks


def copy_view_now(deps: BotDeps, message: SlackMessage) -> blocks.Blocks:
    """`copy_view` of the message as the store holds it now (a reroute's new copy)."""
    with deps.sessions() as session:
        standing = standing_label(session, query_id=message.query_id)
        prediction = prediction_of(session, message)
        departments = list_departments(session)
    return copy_view(deps, message, prediction, standing, departments)


def update_copies(deps: BotDeps, client: WebClient, holder: Holder, message: SlackMessage, *, text: str,
                  prediction: Prediction | None, standing: StandingLabel | None,
                  departments: Sequence[Department]) -> None:
    """Edits every copy of `message` to show the label in force (see the module's docstring)."""
    assert message.id is not None
    with deps.sessions() as session:
        copies = copies_of(session, message.id)
    if not copies:
        return
    team = team_in_force(message, standing)
    home = next((d.channel for d in departments if d.name == team), None) if team else deps.rules.triage_channel
    view = copy_view(deps, message, prediction, standing, departments)
    permalink = _permalink(client, message)
    for post in copies:
        assert post.ts is not None
        here = _department_of(post.channel, departments, deps.rules.triage_channel)
        if post.channel == home:
            head, body = blocks.forwarded(here, user=message.user, channel=message.channel, text=text,
                                          permalink=permalink, why="")
            body = body + view
        else:
            mover = f" by <@{standing.author}>" if standing is not None and standing.author else ""
            head, body = blocks.forwarded(here, user=message.user, channel=message.channel, text=text,
                                          permalink=permalink, why=f"moved to {team or 'triage'}{mover}")
        check_held(deps.sessions, holder)
        try:
            client.chat_update(channel=post.channel, ts=post.ts, text=head, blocks=marked(post.key, head, body))
        except SlackApiError as exc:
            if exc.response.get("error") not in GONE:
                raise
            log.info("the copy %s/%s is gone (%s): not edited", post.channel, post.ts, exc.response.get("error"))


def _department_of(channel: str, departments: Sequence[Department], triage_channel: str | None) -> str:
    names = [d.name for d in departments if d.channel == channel]
    return names[0] if names else "triage" if channel == triage_channel else "this channel"


def _permalink(client: WebClient, message: SlackMessage) -> str | None:
    try:
        return client.chat_getPermalink(channel=message.channel, message_ts=message.ts).get("permalink")
    except SlackApiError as exc:
        log.warning("no permalink for %s/%s (%s)", message.channel, message.ts, exc.response.get("error"))
        return None
