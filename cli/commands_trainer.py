"""`switchboard trainer`: the training service (schedule, label-count trigger, admins' retrain
requests) in the foreground, apart from the bot. `switchboard serve --with-trainer` runs the same
service inside the bot's process, for a one-box install."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.context import Context, open_context
from cli.logs import configure_logging

if TYPE_CHECKING:
    from store.run_report import RunReport
    from trainer.service import Post, TrainerService

log = logging.getLogger("switchboard")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trainer", aliases=["schedule"],
                       help="the training service: schedule, label-count trigger and retrain requests, until stopped")
    p.add_argument("--check-seconds", type=float, default=60.0, help="how often to count new labels (default 60)")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for retrain requests (default 2)")
    p.set_defaults(handler=trainer)


def make_run_now(ctx: Context) -> Callable[[str], RunReport]:
    """One retraining run, configured as `switchboard train` configures it; the trigger names who asked."""

    def run_now(trigger: str) -> RunReport:
        from cli.commands_model import run_options
        from trainer.pipeline import run_training

        return run_training(ctx.settings, ctx.sessions, run_options(ctx.settings, trigger=trigger, progress=False))

    return run_now


def slack_poster(ctx: Context) -> Post:
    """Posts a report to the channel that asked, or to the admin directly when the bot is not in it;
    without a Slack token the report is only logged (it is in the store either way)."""
    token = ctx.settings.slack_bot_token
    if token is None:
        return lambda channel, user, text: log.info("no SLACK_BOT_TOKEN: not posting the report\n%s", text)
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=token.get_secret_value(), base_url=ctx.settings.slack_api_url)

    def post(channel: str | None, user: str | None, text: str) -> None:
        for target in (channel, user):
            if not target:
                continue
            try:
                client.chat_postMessage(channel=target, text=text)
                return
            except SlackApiError as exc:
                log.warning("could not post the report to %s: %s", target, exc.response.get("error"))

    return post


def start_trainer_service(ctx: Context, *, check_seconds: float = 60.0, poll_seconds: float = 2.0) -> TrainerService:
    from trainer.schedule import ScheduleConfig
    from trainer.service import TrainerService

    config = ScheduleConfig.of(ctx.settings, check_seconds=check_seconds)
    return TrainerService(ctx.sessions, make_run_now(ctx), post=slack_poster(ctx), schedule=config,
                          poll_seconds=poll_seconds).start()


def wait_for_sigterm() -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()


def trainer(args: argparse.Namespace) -> int:
    ctx = open_context()
    configure_logging(ctx.settings)
    service = start_trainer_service(ctx, check_seconds=args.check_seconds, poll_seconds=args.poll_seconds)
    try:
        wait_for_sigterm()
    finally:
        service.stop()
    return 0
