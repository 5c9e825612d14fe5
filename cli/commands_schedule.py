"""`switchboard schedule`: the retraining schedule in the foreground, for a host that trains but does
not serve Slack (e.g. a GPU box beside a CPU bot). `switchboard serve` runs the same schedule."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from cli.context import open_context


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schedule", help="retrain on the cron and when enough new labels wait, until stopped")
    p.add_argument("--check-seconds", type=float, default=60.0, help="how often to count new labels")
    p.set_defaults(handler=schedule)


def schedule(args: argparse.Namespace) -> int:
    from trainer.pipeline import run_training
    from trainer.schedule import ScheduleConfig, build_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = open_context()
    settings = ctx.settings

    def run_now(trigger: str) -> dict[str, Any]:
        from cli.commands_model import run_options

        return run_training(settings, ctx.sessions, run_options(settings, trigger=trigger, progress=False))

    config = ScheduleConfig(cron=settings.retrain_cron, label_threshold=settings.retrain_after_labels,
                            check_seconds=args.check_seconds)
    scheduler = build_scheduler(ctx.sessions, run_now, config)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    scheduler.start()
    logging.getLogger("switchboard").info("retraining at '%s' UTC and after %d new labels",
                                          config.cron, config.label_threshold)
    try:
        stopped.wait()
    finally:
        scheduler.shutdown(wait=True)
    return 0
