"""The audit menu's departments served as the agent types, for workspaces with more than a static menu holds.

Past `MAX_OPTIONS` departments the audit question's menu is an `external_select` (bot/blocks.py): Slack
sends a `block_suggestion` with what the agent has typed so far, and the answer is at most
`MAX_OPTIONS` departments whose names hold every typed word, the exact name first, then names that
start with it, each group in name order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.blocks import MAX_OPTIONS, option
from bot.deps import BotDeps
from store.examples import list_departments


def matching(names: Sequence[str], typed: str) -> list[dict[str, Any]]:
    """The options for what was typed: every name when nothing was, else the names holding each typed word."""
    wanted = typed.casefold().strip()
    words = wanted.split()
    found = [n for n in names if all(w in n.casefold() for w in words)]
    found.sort(key=lambda n: (n.casefold() != wanted, not n.casefold().startswith(wanted)))  # stable: name order
    return [option(n) for n in found[:MAX_OPTIONS]]


def suggest(deps: BotDeps, ack: Callable[..., None], body: dict[str, Any]) -> None:
    """Answers a `block_suggestion` on the audit menu with the departments that match what was typed."""
    with deps.sessions() as session:
        names = [d.name for d in list_departments(session)]
    ack(options=matching(names, str(body.get("value") or "")))
