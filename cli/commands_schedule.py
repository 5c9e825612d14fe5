"""`switchboard schedule`: the retraining schedule in the foreground, for a host that trains but does
not serve Slack (e.g. a GPU box beside a CPU bot). `switchboard serve` runs the same schedule."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from cli.context import Context, open_context
from store.run_report import RunReport


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schedule", help="retrain on the cron and when enough new labels wait, until stopped")
    p.add_argument("--check-seconds", type=float, default=60.0, help="how often to count new labels")
    p.set_defaults(handler=schedule)


def make_run_now(ctx: Context) -> Callable[[str], RunReport]:
    """One retraining run, configured as `switchboard train` configures it; the trigger names who asked."""

    def run_now(trigger: str) -> RunReport:
        from cli.commands_model import run_options
        from trainer.pipeline import run_training

        return run_training(ctx.settings, ctx.sessions, run_options(ctx.settings, trigger=trigger, progress=False))

    return run_now


def start_schedule(ctx: Context, run_now: Callable[[str], RunReport], *, check_seconds: float = 60.0) -> Any:
    """Starts the cron and label-count triggers in background threads; `shutdown()` the result to stop."""
    from trainer.schedule import ScheduleConfig, build_scheduler

    config = ScheduleConfig(cron=ctx.settings.retrain_cron, label_threshold=ctx.settings.retrain_after_labels,
                            check_seconds=check_seconds)
    scheduler = build_scheduler(ctx.sessions, run_now, config)
    scheduler.start()
    logging.getLogger("switchboard").info("retraining at '%s' UTC and after %d new labels",
                                          config.cron, config.label_threshold)
    return scheduler


def wait_for_sigterm() -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()


def schedule(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = open_context()
    scheduler = start_schedule(ctx, make_run_now(ctx), check_seconds=args.check_seconds)
    try:
        wait_for_sigterm()
    finally:
        scheduler.shutdown(wait=True)
    return 0
