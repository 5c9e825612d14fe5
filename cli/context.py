"""What every command needs: the settings, built once here, and a migrated store."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import SwitchboardError

if TYPE_CHECKING:
    from core.settings import Settings
    from store.db import SessionFactory


class UserError(SwitchboardError):
    """A mistake the user can fix; shown as one line."""


@dataclass(frozen=True)
class Context:
    settings: Settings
    sessions: SessionFactory


def open_context() -> Context:
    from core.settings import Settings
    from store.db import make_engine, session_factory
    from store.migrations import migrate

    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return Context(settings=settings, sessions=session_factory(engine))


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """Prints one JSON object with --json, or the human text otherwise: never both."""
    if as_json:
        json.dump(payload, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print(text)
