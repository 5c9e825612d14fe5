"""`switchboard serve`: the Slack bot and its hot-swapping model. It never trains (nor imports the
training libraries) unless started with `--with-trainer`; `switchboard trainer` is the training service."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from cli.compose import bot_deps, open_context, serving_router, start_trainer_service, wait_for_sigterm
from cli.logs import configure_logging
from cli.output import UserError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the Slack bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP)")
    p.add_argument("--http", action="store_true", help="serve HTTP at /slack/events even if SLACK_APP_TOKEN is set")
    p.add_argument("--port", type=int, default=3000, help="HTTP port for /slack/events and /healthz (default 3000)")
    p.add_argument("--with-trainer", action="store_true",
                   help="also run the training service in this process (one-box mode; else run `switchboard trainer`)")
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    from bot.app import build_app
    from bot.delivery import Delivery
    from bot.metrics import BotMetrics
    from bot.outbox import OutboxWorker
    from bot.server import HttpServer, start_socket_mode
    from bot.slack_client import make_client

    ctx = open_context()
    configure_logging(ctx.settings)
    log = logging.getLogger("switchboard")
    settings = ctx.settings
    socket_mode = settings.slack_app_token is not None and not args.http
    if settings.slack_bot_token is None:
        raise UserError("SLACK_BOT_TOKEN is not set (see .env.example)")
    if not socket_mode and settings.slack_signing_secret is None:
        raise UserError("SLACK_SIGNING_SECRET is not set: HTTP mode must check Slack's signatures")
    if not settings.admins:
        log.warning("SWITCHBOARD_ADMINS is empty: nobody can administer")
    if not (settings.agents or settings.admins or settings.agents_from_department_channels):
        log.warning("SWITCHBOARD_AGENTS and SWITCHBOARD_ADMINS are empty and department channels' members are not "
                    "agents (SWITCHBOARD_AGENTS_FROM_DEPARTMENT_CHANNELS): nobody can relabel")

    router = serving_router(ctx)
    router.start()
    metrics = BotMetrics().watch(health=router.health, sessions=ctx.sessions)
    deps = bot_deps(ctx, router, metrics)
    client = make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    delivery = Delivery(deps, client)
    app = build_app(deps, client=client, signing_secret=None if socket_mode else secret, delivery=delivery)

    def health() -> dict[str, Any]:
        return {**router.health(), "mode": "socket" if socket_mode else "http"}

    server = HttpServer(None if socket_mode else app, health, port=args.port, metrics=metrics.exposition).start()
    outbox = OutboxWorker(delivery).start()
    socket = start_socket_mode(app, settings.slack_app_token.get_secret_value()) if socket_mode else None  # type: ignore[union-attr]
    trainer = start_trainer_service(ctx) if args.with_trainer else None
    log.info("serving model %s over %s; /healthz on port %d",
             router.model_id or (f"none yet: the baseline {settings.baseline_model} routes"
                                 if settings.baseline_configured else "none"),
             "Socket Mode" if socket_mode else f"HTTP at :{server.port}/slack/events", server.port)
    try:
        wait_for_sigterm()
    finally:
        outbox.stop()
        if trainer is not None:
            trainer.stop()
        if socket is not None:
            socket.close()
        server.stop()
        delivery.close()
        router.stop()
    return 0
