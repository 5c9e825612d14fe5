"""Which channels' top-level messages the bot routes: the support channels, decided in one place.

`SWITCHBOARD_SUPPORT_CHANNELS` names them; unset, every channel the bot is in counts. Either way the
channels the bot posts into (each department's, the triage channel) and the alert channel are never
routed: agents and admins talk there, and an admin writing "do not approve model 5" in the alert
channel is not a customer. Direct messages are never routed (bot/routing.py).

`routes` decides; `SupportChannels` answers it before Slack's acknowledgement (bot/delivery.py's
`wanted`) from the departments' channels read at most once per `ttl`, and `route_message` answers it
again with the departments it reads anyway, so a department channel added a moment ago is never routed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection

from bot.rules import BotRules
from store.db import SessionFactory
from store.examples import list_departments

log = logging.getLogger(__name__)


def routes(rules: BotRules, channel: str, department_channels: Collection[str]) -> bool:
    """Whether a top-level message in `channel` is routed."""
    if not channel or channel in (rules.triage_channel, rules.alert_channel) or channel in department_channels:
        return False
    return not rules.support_channels or channel in rules.support_channels


class SupportChannels:
    """`routes` with the departments' channels cached for `ttl` seconds (a read of the store per message
    otherwise, before the acknowledgement)."""

    def __init__(self, rules: BotRules, sessions: SessionFactory, *, ttl: float = 30.0) -> None:
        self.rules, self.sessions, self.ttl = rules, sessions, ttl
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._departments: frozenset[str] = frozenset()

    def routes(self, channel: str) -> bool:
        if self.rules.support_channels and channel not in self.rules.support_channels:
            return False  # decided without reading the store
        return routes(self.rules, channel, self.department_channels())

    def department_channels(self) -> frozenset[str]:
        """The departments' channels as last read. A store that cannot be read leaves the last known ones
        (none at first): the event is then claimed, or refused with a 503 by a store that cannot take the
        claim either, and `route_message` decides again with the departments it reads."""
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at > self.ttl:
                try:
                    with self.sessions() as session:
                        self._departments = frozenset(d.channel for d in list_departments(session) if d.channel)
                    self._read_at = time.monotonic()
                except Exception:
                    log.warning("could not read the departments' channels: deciding with the last known ones",
                                exc_info=True)
            return self._departments
