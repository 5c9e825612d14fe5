"""`forget … --verify`: what to look for, collected before the rows go, and the erasure proof run after
(store/erasure_proof.py for the store and the files, bot/erasure_slack.py for Slack)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cli.compose import Context, slack_web_client

if TYPE_CHECKING:
    from store.erasure_proof import Proof, Target


def collect(ctx: Context, *, user: str | None, channel: str | None = None, ts: str | None = None) -> Target:
    from store.erasure_proof import target_of
    from store.forget import messages_at, messages_of_user

    with ctx.sessions() as session:
        messages = messages_of_user(session, user) if user else messages_at(session, ts=ts or "", channel=channel)
        return target_of(session, messages, user=user, home=ctx.settings.home)


def prove(ctx: Context, target: Target) -> Proof:
    from bot.erasure_slack import search_slack
    from store.erasure_proof import prove as prove_store

    with ctx.sessions() as session:
        proof = prove_store(session, home=ctx.settings.home, traces=target.traces, query_ids=target.query_ids)
    client = slack_web_client(ctx)
    if client is None:
        proof.not_searched.append("Slack: no SLACK_BOT_TOKEN to read the channels with")
    elif target.traces:
        search_slack(client, target, proof)
    if not target.traces and not target.query_ids:
        proof.not_searched.append("nothing: no stored text of theirs was left to look for")
    return proof
