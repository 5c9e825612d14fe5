"""The composition root: the only place that builds the settings, the store, the routers, the bot's
dependencies and the training service, and hands each its collaborators. Command modules call
these and import nothing from one another; nothing outside `cli/` imports this.

Heavy libraries (torch, transformers, Slack) are imported inside the functions that need them,
so `switchboard --help` and the store commands start in a fraction of a second.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.output import UserError
from core.redact import redactor_of

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.deps import BotDeps
    from bot.metrics import BotMetrics
    from classifier.routing.router import LoraRouter
    from classifier.serving.active_router import ActiveModelRouter
    from classifier.serving.engine_router import EngineRouter
    from core.settings import Settings
    from store.db import SessionFactory
    from store.run_report import RunReport
    from store.tables import ModelVersion
    from trainer.alternatives import AlternativeSet
    from trainer.approval import Ask
    from trainer.config import TrainConfig
    from trainer.deps import TrainerDeps
    from trainer.pipeline import RunOptions
    from trainer.service import Post, RunNow, TrainerService

log = logging.getLogger("switchboard")


@dataclass(frozen=True)
class Context:
    settings: Settings
    sessions: SessionFactory


def open_context() -> Context:
    """The settings, built once from the environment and `.env`, and a migrated store."""
    from core.settings import Settings
    from store.db import make_engine, session_factory
    from store.migrations import migrate

    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return Context(settings=settings, sessions=session_factory(engine))


def run_options(settings: Settings, *, trigger: str, progress: bool, config: TrainConfig | None = None,
                alternatives: AlternativeSet | None = None) -> RunOptions:
    """The one way every entry point (command, schedule, retrain request) configures a run."""
    from trainer.alternatives import AlternativeSet
    from trainer.config import TrainConfig
    from trainer.pipeline import RunOptions

    config = replace(config or TrainConfig(), precision=settings.train_precision)
    return RunOptions(config=config, trigger=trigger, progress=progress,
                      alternatives=alternatives or AlternativeSet.FAST)


def trainer_deps(ctx: Context) -> TrainerDeps:
    """What every run is handed: the store, the settings' trainer slice and the baseline's client, if any."""
    from trainer.deps import TrainerConfig, TrainerDeps

    return TrainerDeps(sessions=ctx.sessions, config=TrainerConfig.of(ctx.settings), baseline=baseline_client(ctx))


def baseline_client(ctx: Context) -> Any | None:
    """The OpenAI-compatible client of the few-shot baseline, or None when no baseline is configured."""
    from classifier.baseline_client import make_openai_client

    settings = ctx.settings
    return make_openai_client(settings.openai_api_key, settings.openai_base_url) if settings.baseline_configured \
        else None


def make_run_now(ctx: Context) -> RunNow:
    """One retraining run, configured as `switchboard train` configures it but with the fast alternatives
    (seconds, not the minutes a fine-tuned encoder takes on a CPU); the trigger names who asked."""
    deps = trainer_deps(ctx)

    def run_now(trigger: str) -> RunReport:
        from trainer.pipeline import run_training

        return run_training(deps, run_options(ctx.settings, trigger=trigger, progress=False))

    return run_now


def router_for(ctx: Context, model_id: int | None) -> tuple[ModelVersion, LoraRouter]:
    """Model `model_id` (the active one when None) loaded for classifying in this process."""
    from classifier.routing.router import load_router
    from store.registry import active_model, get_model

    with ctx.sessions() as session:
        model = get_model(session, model_id=model_id) if model_id is not None else active_model(session)
    if model is None:
        raise UserError("no active model yet: run `switchboard train` first")
    return model, load_router(model.base_model, cache_dir=ctx.settings.cache_dir,
                              adapter_dir=Path(model.adapter_path), name=f"model {model.id}", model_id=model.id)


def slack_web_client(ctx: Context) -> WebClient | None:
    """The bot's Slack client (it waits out rate limits), or None without SLACK_BOT_TOKEN."""
    token = ctx.settings.slack_bot_token
    if token is None:
        return None
    from bot.slack_client import make_client

    return make_client(token.get_secret_value(), ctx.settings.slack_api_url)


def slack_poster(ctx: Context) -> Post:
    """Posts a report to the channel that asked, or to the admin directly when the bot is not in it;
    without a Slack token the report is only logged (it is in the store either way)."""
    client = slack_web_client(ctx)
    if client is None:
        return lambda channel, user, text: log.info("no SLACK_BOT_TOKEN: not posting the report\n%s", text)

    def post(channel: str | None, user: str | None, text: str) -> None:
        post_to(client, [channel, user], text=text, what="the report", every=False)

    return post


def post_to(client: WebClient, targets: Sequence[str | None], *, text: str, what: str, every: bool,
            blocks: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """Posts to each target (`every`) or to the first that takes it; a refusal is logged, never raised.
    Returns (channel, ts) of each post made."""
    from slack_sdk.errors import SlackApiError

    places = []
    for target in filter(None, targets):
        try:
            answer = client.chat_postMessage(channel=target, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning("could not post %s to %s: %s", what, target, exc.response.get("error"))
            continue
        places.append((str(answer.get("channel") or target), str(answer.get("ts"))))
        if not every:
            break
    return places


def start_trainer_service(ctx: Context, *, check_seconds: float = 60.0, poll_seconds: float = 2.0) -> TrainerService:
    from trainer.gate import GateRules
    from trainer.schedule import ScheduleConfig
    from trainer.service import TrainerService

    return TrainerService(ctx.sessions, make_run_now(ctx), post=slack_poster(ctx),
                          schedule=ScheduleConfig.of(ctx.settings, check_seconds=check_seconds),
                          poll_seconds=poll_seconds, rules=GateRules.of(ctx.settings),
                          ask=approval_poster(ctx)).start()


def approval_poster(ctx: Context) -> Ask | None:
    """Posts an approval request to SWITCHBOARD_ALERT_CHANNEL, else to each admin directly; returns where
    (channel, ts of each post), so that forgetting a text it quotes finds it."""
    client = slack_web_client(ctx)
    if client is None:
        return None
    targets = [ctx.settings.alert_channel] if ctx.settings.alert_channel else sorted(ctx.settings.admins)
    return lambda text, blocks: post_to(client, targets, text=text, blocks=blocks, what="an approval request",
                                        every=True)


def serving_router(ctx: Context) -> ActiveModelRouter | EngineRouter:
    """The registry's active model, hot-swapped in place; through the inference engine when
    SWITCHBOARD_INFERENCE_URL is set, else loaded in this process (without transformers)."""
    from classifier.model.serving_model import load_serving_model
    from classifier.serving.active_router import ActiveModelRouter
    from store.registry import registry_lookup

    settings = ctx.settings
    if settings.inference_url:
        from classifier.serving.engine_router import make_engine_router

        return make_engine_router(settings.inference_url, registry_lookup(ctx.sessions),
                                  base_model=settings.base_model, cache_dir=settings.cache_dir)
    base, tokenizer = load_serving_model(settings.base_model, cache_dir=settings.cache_dir)
    return ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=settings.base_model,
                             lookup=registry_lookup(ctx.sessions))


def bot_deps(ctx: Context, router: ActiveModelRouter | EngineRouter, metrics: BotMetrics) -> BotDeps:
    """What every handler needs; the cold-start baseline routes while no model is active, when configured."""
    from bot.baseline_router import BaselineRouter, ColdStartRouter
    from bot.deps import BotDeps
    from bot.roster import Roster
    from bot.rules import BotRules
    from bot.shadow import ShadowQueue
    settings, client = ctx.settings, baseline_client(ctx)
    baseline = (BaselineRouter(client, ctx.sessions, model=settings.baseline_model, redact=redactor_of(settings))
                if client is not None else None)
    return BotDeps(rules=BotRules.of(settings), sessions=ctx.sessions, router=ColdStartRouter(router, baseline),
                   metrics=metrics,
                   shadow=ShadowQueue(getattr(router, "classify_shadow", None)),  # None: no second adapter
                   roster=Roster.of(settings, client=slack_web_client(ctx), sessions=ctx.sessions))


def wait_for_sigterm() -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
