"""What a department may be called and which emoji may stand for it: checked wherever one is created.

A department's name is shown in every reply's help line and in terminals, so a name Slack would
read as a mention (`<!everyone>`), a link or a control sequence is refused, as is the reserved
out-of-scope class's name; an emoji is a reaction name as Slack sends it. A new name that looks like one
already taken (same look-alike fold: case, width, Cyrillic or Greek letters that look Latin) is refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable

from core.errors import SwitchboardError
from core.lookalike import fold
from store.tables import OUT_OF_SCOPE

MAX_LABEL_CHARS = 100


class BadName(SwitchboardError, ValueError):
    """A department name or emoji that is refused; the message says why, in one line."""


def is_reserved(name: str) -> bool:
    return fold(name) == fold(OUT_OF_SCOPE)


def check_unlike(name: str, *, taken: Iterable[str]) -> None:
    """A BadName naming the department in `taken` that a new `name` could be mistaken for, if there is one."""
    folded = fold(name)
    for other in taken:
        if other != name and fold(other) == folded:
            odd = next((c for c in name if c not in other and not c.isascii()), None)
            why = f" (it has {unicodedata.name(odd, hex(ord(odd)))})" if odd else ""
            raise BadName(f"department name {name!r} looks like the existing department {other!r}{why}; "
                          "use that name, or one that reads differently")


_EMOJI_NAME = re.compile(r"[a-z0-9_+'-]{1,100}")
_SLACK_MARKUP = re.compile(r"[<>]|^[@!#]|@(?:channel|here|everyone)\b", re.IGNORECASE)


def check_department_name(name: str) -> str:
    """The name, stripped, or a BadName saying why Slack or a terminal could not show it safely."""
    name = name.strip()
    if not name or len(name) > MAX_LABEL_CHARS:
        raise BadName(f"department name must be 1 to {MAX_LABEL_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise BadName(f"department name {name!r} contains control characters")
    if _SLACK_MARKUP.search(name):
        raise BadName(f"department name {name!r} would be read by Slack as a mention or a link: "
                      "no '<', '>', leading '@', '!' or '#', or @channel, @here, @everyone")
    if is_reserved(name):
        raise BadName(f"'{OUT_OF_SCOPE}' is reserved for messages that belong to no department")
    return name


def check_emoji(emoji: str, *, reserved: Collection[str] = ()) -> str:
    """A reaction name as Slack sends it (no colons, no skin tone), or a BadName."""
    bare = emoji.strip().strip(":")
    if not _EMOJI_NAME.fullmatch(bare):
        raise BadName(f"emoji {emoji!r} is not a reaction name: lowercase letters, digits, '_', '-', '+', "
                      "without colons or a skin tone")
    if bare in reserved:
        raise BadName(f"emoji :{bare}: already means something to the bot; pick another")
    return bare
