"""Entry point: parses arguments, builds the settings once, migrates the store, runs one command.

User mistakes become one line on stderr and exit code 2; nothing else prints a traceback
unless SWITCHBOARD_DEBUG is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cli import (
    commands_baseline,
    commands_cost,
    commands_data,
    commands_eval,
    commands_export,
    commands_labels,
    commands_model,
    commands_privacy,
    commands_serve,
    commands_trainer,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Route support questions to departments with a LoRA-tuned small LLM that learns from "
        "agents' corrections. Settings come from the environment and ./.env (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands_data.register(sub)
    commands_cost.register(sub)
    commands_baseline.register(sub)
    commands_model.register(sub)
    commands_labels.register(sub)
    commands_eval.register(sub)
    commands_export.register(sub)
    commands_privacy.register(sub)
    commands_serve.register(sub)
    commands_trainer.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("switchboard: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("SWITCHBOARD_DEBUG"):
            raise
        message = _user_message(exc)
        if message is None:
            print(f"switchboard: internal error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
            return 1
        print(f"switchboard: {message}", file=sys.stderr)
        return 2


def _user_message(exc: Exception) -> str | None:
    """The one-line message for the errors a user can cause or must act on; None for a bug."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from core.errors import SwitchboardError

    if isinstance(exc, SwitchboardError):
        return exc.user_message()
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"bad setting {'.'.join(map(str, error['loc']))}: {error['msg']}"
    if isinstance(exc, OperationalError):  # refused, a wrong password, a missing file: the driver's own words
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        return f"the store's database (DATABASE_URL) failed: {reason}"
    if isinstance(exc, OSError) and exc.filename:  # SWITCHBOARD_HOME unwritable, a file where a folder must be
        return f"cannot use {exc.filename}: {exc.strerror} (running as uid {os.getuid()}; check SWITCHBOARD_HOME)"
    return None


if __name__ == "__main__":
    sys.exit(main())
