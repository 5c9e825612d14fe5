"""`switchboard trainer`: the training service (schedule, label-count trigger, admins' retrain
requests) in the foreground, apart from the bot. `switchboard serve --with-trainer` runs the same
service inside the bot's process, for a one-box install."""

from __future__ import annotations

import argparse

from cli.compose import open_context, start_trainer_service, wait_for_sigterm
from cli.logs import configure_logging


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trainer", aliases=["schedule"],
                       help="the training service: schedule, label-count trigger and retrain requests, until stopped")
    p.add_argument("--check-seconds", type=float, default=60.0, help="how often to count new labels (default 60)")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for retrain requests (default 2)")
    p.set_defaults(handler=trainer)


def trainer(args: argparse.Namespace) -> int:
    ctx = open_context()
    configure_logging(ctx.settings)
    service = start_trainer_service(ctx, check_seconds=args.check_seconds, poll_seconds=args.poll_seconds)
    try:
        wait_for_sigterm()
    finally:
        service.stop()
    return 0
