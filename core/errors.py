"""The one error type every product error derives from.

A `SwitchboardError`'s message is written for the person who caused it or must act on it: the
CLI prints exactly these as one line (exit code 2) and the bot says them, politely, in the thread
or to the admin. Anything else is a bug: the CLI says "internal error", the bot says something
went wrong on its side, and both log the traceback.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """A failure with a message fit for a user."""

    def user_message(self) -> str:
        return (str(self).splitlines() or [type(self).__name__])[0]
