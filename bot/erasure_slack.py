"""The erasure proof's Slack part: the bot's posts that remain where it posted, searched for a forgotten text's
traces (store/erasure_proof.py searches the store and the files)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from store.erasure_proof import Matcher, Proof, Target, search_values

MAX_PAGES = 20  # of a channel's history, 200 messages a page, from the oldest forgotten message on


def search_slack(client: WebClient, target: Target, proof: Proof) -> None:
    """The bot's posts in every channel it posts into (top-level, since the oldest forgotten message) and in the
    forgotten messages' threads; each post holding a trace is a place ("Slack post C123/1700000000.000100")."""
    matcher = Matcher(target.traces)
    seen: set[tuple[str, str]] = set()
    for channel in target.channels:
        try:
            posts = _history(client, channel, target.oldest)
        except SlackApiError as exc:
            proof.not_searched.append(f"Slack channel {channel}: {exc.response.get('error')}")
            continue
        _search(proof, matcher, channel, posts, seen)
    for channel, ts in target.threads:
        try:
            thread = client.conversations_replies(channel=channel, ts=ts, limit=200).get("messages") or []
        except SlackApiError as exc:
            if exc.response.get("error") not in ("thread_not_found", "message_not_found"):
                proof.not_searched.append(f"Slack thread {channel}/{ts}: {exc.response.get('error')}")
            continue
        _search(proof, matcher, channel, thread, seen)
    proof.searched.append("the bot's posts in Slack")


def _history(client: WebClient, channel: str, oldest: str | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = client.conversations_history(channel=channel, oldest=oldest or "0", limit=200, cursor=cursor)
        found += page.get("messages") or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            break
    return found


def _search(proof: Proof, matcher: Matcher, channel: str, messages: list[dict[str, Any]],
            seen: set[tuple[str, str]]) -> None:
    for message in messages:
        key = (channel, str(message.get("ts")))
        if key in seen or not (message.get("bot_id") or message.get("subtype") == "bot_message"):
            continue  # a customer's own message is theirs to delete
        seen.add(key)
        search_values(proof, f"Slack post {channel}/{key[1]}", [message], matcher)
