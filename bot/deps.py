"""What every handler needs, built once by `switchboard serve` (or a test) and passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from bot.metrics import BotMetrics
from bot.roster import Roster
from bot.rules import BotRules
from bot.shadow import ShadowQueue
from classifier.routing.router import Classification
from store.db import SessionFactory


class ServingRouter(Protocol):
    """The active model as the bot sees it: `ActiveModelRouter` in production."""

    @property
    def model_id(self) -> int | None: ...

    def classify(self, text: str) -> Classification: ...


@dataclass(frozen=True)
class BotDeps:
    rules: BotRules
    sessions: SessionFactory
    router: ServingRouter
    audit_rng: random.Random = field(default_factory=random.Random)  # which messages are audited; seed it in tests
    metrics: BotMetrics = field(default_factory=BotMetrics)  # what `/metrics` shows; each BotDeps its own registry
    shadow: ShadowQueue = field(default_factory=ShadowQueue)  # live messages for the candidate in shadow
    roster: Roster | None = None  # who is an agent or admin, resolved live; None: the rules' member ids alone

    def __post_init__(self) -> None:
        if self.roster is None:
            object.__setattr__(self, "roster", Roster(agents=self.rules.agents, admins=self.rules.admins))

    def is_agent(self, user: str | None) -> bool:
        """An agent or an admin (admins may always relabel)."""
        return self.roster is not None and self.roster.is_agent(user)

    def is_admin(self, user: str | None) -> bool:
        return self.roster is not None and self.roster.is_admin(user)
