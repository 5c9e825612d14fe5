"""Other people's words in Slack's mrkdwn, shown and never acted on: escaped text and quotes.

Shared by the bot's replies (bot/blocks.py) and the trainer's approval request (trainer/approval.py),
which quote customers' messages: `&`, `<` and `>` are escaped, so `<!channel>`, `<!here>`,
`<!subteam^…>` and `<@U…>` are shown, not fired, and bidirectional control characters are dropped
(they can make a quote read as something else).
"""

from __future__ import annotations

_BIDI = dict.fromkeys([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def escape(text: str) -> str:
    """`text` as mrkdwn that Slack shows as written: no mention, link or broadcast fires."""
    return text.translate(_BIDI).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quote(text: str, *, limit: int) -> str:
    """The first `limit` characters of `text`, escaped, as a block quote: every line starts with `>`."""
    return "\n".join(f">{line}" for line in escape(text[:limit]).splitlines() or [""])
