"""What commands say: one JSON object with --json or text for people, and the user's mistakes as one line."""

from __future__ import annotations

import json
import sys
from typing import Any

from core.errors import SwitchboardError


class UserError(SwitchboardError):
    """A mistake the user can fix; shown as one line."""


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """Prints one JSON object with --json, or the human text otherwise: never both."""
    if as_json:
        json.dump(payload, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print(text)
