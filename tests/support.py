"""What several test modules share, so that none imports another: the tiny training data and recipes, the
BANKING77 test set, and the scripted bot with the helpers that drive it and read what it did.

A helper module, not a test module (pytest collects nothing here). The fixtures built on these
(`slack`, `bot`, `start_bot`, `audited`) are in conftest.py.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, inspect, text
from sqlmodel import select

from bot.deps import BotDeps
from bot.roster import Roster
from bot.rules import BotRules
from bot.shadow import ShadowQueue
from bot.slack_client import make_client
from classifier.routing.router import Classification
from cli.compose import Context
from cli.compose import trainer_deps as compose_trainer_deps
from core.settings import Settings
from fakes.bot_server import BotServer, message
from fakes.slack_api import FakeSlack
from store.db import SessionFactory, transaction
from store.examples import add_examples, upsert_department
from store.registry import register_model
from store.tables import Department, Label, LabelSource, SlackMessage
from trainer.config import TrainConfig
from trainer.deps import TrainerDeps
from trainer.gate import GateRules

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], *, timeout: float = 10.0, every: float = 0.01,
               what: str = "the condition") -> T:
    """Polls `condition` every `every` seconds until it returns something truthy (returned), failing after
    `timeout` seconds. The one wait for what happens on another thread or process; tests never sleep to
    let time pass."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(every)
    return value


def schema_version(engine: Engine) -> int:
    """The store's migration version: the highest row of `schema_version` (0 for a new store)."""
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COALESCE(MAX(version), 0) FROM schema_version")).scalar_one())


def trainer_deps(settings: Settings, sessions: SessionFactory, *, rules: GateRules | None = None,
                 **overrides: Any) -> TrainerDeps:
    """The deps `cli/compose.py` builds for these settings, with what a test hands in instead (a loopback
    baseline client, a trainer that fails on cue, a clock). Unless a test says otherwise, a passing
    candidate is promoted at once (`GateRules()`), not first run in shadow as the product's rules do."""
    deps = compose_trainer_deps(Context(settings=settings, sessions=sessions))
    deps = replace(deps, config=replace(deps.config, rules=rules or GateRules()))
    return replace(deps, baseline_backoff_s=0.0, **overrides)


# Training on the tiny Llama

EXAMPLES = [(f"{word} question {i}", label) for i in range(12)
            for word, label in (("alpha", "Orders"), ("beta", "Billing"), ("gamma", "Shipping"))]
FAST = TrainConfig(learning_rate=1e-1, epochs=12, batch_size=4, min_steps=0, lora_r=8, lora_alpha=16, precision="fp32")
TRUTH = dict(EXAMPLES)
LOOP = replace(FAST, learning_rate=3e-2)  # FAST's 0.1 is unstable on the mixed texts of two rounds
MORE = [(f"{word} request {i}", label) for i in range(8)
        for word, label in (("alpha", "Orders"), ("beta", "Billing"), ("gamma", "Shipping"))]


def seed(sessions, examples=EXAMPLES):
    with transaction(sessions) as session:
        add_examples(session, examples=examples)


# BANKING77's test set

BANKING77 = Path(__file__).resolve().parent.parent / "data" / "banking77"


def banking77(task: str) -> tuple[list[str], list[str]]:
    departments = json.loads((BANKING77 / "departments.json").read_text())
    with (BANKING77 / "test.csv").open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    labels = sorted(set(departments.values())) if task == "departments" else sorted(departments)
    return texts, labels


# The bot on a scripted router

AGENT, OTHER_AGENT, ADMIN, CUSTOMER, STRANGER = "UAGENT1", "UAGENT2", "UADMIN", "UCUSTOMER", "USTRANGER"
DEPARTMENTS = [("Billing", "moneybag", "CBILLING"), ("Shipping", "package", "CSHIPPING"),
               ("Refunds", "money_with_wings", None)]

StartBot = Callable[..., BotServer]


class ScriptedRouter:
    """Answers from the text: 'parcel' -> Shipping, 'refund' -> Refunds, 'unsure' -> low, 'either' -> a tie,
    'HACKED' -> none of these (yet Billing at 92%, as an over-confident model would say)."""

    model_id = 1  # a registry row the fixture adds, so predictions can point at it

    def __init__(self) -> None:
        self.seen: list[str] = []

    def classify(self, text: str) -> Classification:
        self.seen.append(text)
        if "either" in text:
            scores = {"Billing": 0.52, "Shipping": 0.45, "Refunds": 0.03}
        elif "unsure" in text:
            scores = {"Billing": 0.40, "Shipping": 0.35, "Refunds": 0.25}
        elif "parcel" in text:
            scores = {"Billing": 0.05, "Shipping": 0.90, "Refunds": 0.05}
        elif "refund" in text:
            scores = {"Billing": 0.10, "Shipping": 0.05, "Refunds": 0.85}
        else:
            scores = {"Billing": 0.92, "Shipping": 0.04, "Refunds": 0.04}
        best = max(scores, key=scores.__getitem__)
        none = "HACKED" in text
        return Classification(best, scores[best], scores, f"model {self.model_id}", 1.0,
                              out_of_scope=0.97 if none else 0.1, none_of_these=none, model_id=self.model_id)


def scripted_bot(home, sessions, slack, *, audit_rng: random.Random | None = None, policy=None, client=None,
                 router=None, shadow=None, shadow_batch: int = 1, clock: Callable[[], float] = time.monotonic,
                 **env: str) -> BotServer:
    """The bot on the scripted router: DEPARTMENTS, two agents, an admin, a triage channel, the agents' view
    in the customer's thread (`internal` style: tests/test_audiences.py tries the customer's); `env` adds settings
    (or replaces those, agents and admins included). `clock`: the roster's, which says when Slack is asked again
    who the agents are."""
    settings = Settings(**{"SWITCHBOARD_HOME": home, "SWITCHBOARD_AGENTS": f"{AGENT},{OTHER_AGENT}",
                           "SWITCHBOARD_ADMINS": ADMIN, "SWITCHBOARD_TRIAGE_CHANNEL": "CTRIAGE",
                           "SWITCHBOARD_REPLY_STYLE": "internal", **env})
    with transaction(sessions) as session:
        for name, emoji, channel in DEPARTMENTS:
            upsert_department(session, name=name, emoji=emoji, channel=channel)
        register_model(session, adapter_path="scripted", base_model="scripted", labels=[d[0] for d in DEPARTMENTS],
                       hyperparameters={}, metrics={}, parent_id=None)
    deps = BotDeps(rules=BotRules.of(settings), sessions=sessions, router=router or ScriptedRouter(),
                   audit_rng=audit_rng or random.Random(), shadow=ShadowQueue(shadow, batch=shadow_batch, refresh_s=0),
                   roster=Roster.of(settings, client=make_client("xoxb-test", slack.base_url), sessions=sessions,
                                    clock=clock))
    return BotServer(deps, slack, policy=policy, client=client)


def posts(slack: FakeSlack, channel: str | None = None) -> list[dict]:
    return [c.body for c in slack.calls_to("chat.postMessage")
            if c.status == 200 and (channel is None or c.body["channel"] == channel)]


def text_of(body: dict) -> str:
    def words(text: str | dict | None) -> str:  # a block's or element's text: mrkdwn, or a text object (buttons)
        return str(text.get("text", "")) if isinstance(text, dict) else text or ""

    return body.get("text", "") + " " + " ".join(
        words(b.get("text")) + " ".join(words(e.get("text")) for e in b.get("elements", []))
        for b in body.get("blocks", []))


def route(bot: BotServer, text: str, ts: str) -> dict:
    """Posts a customer's message and returns the bot's thread reply, once the message is handled to the end
    (the forward too, which follows the reply)."""
    before = len(posts(bot.slack, "CSUPPORT"))
    assert bot.event(message(text, ts=ts)).status == 200
    bot.drain()
    assert stored_message(bot.deps.sessions, ts).reply_ts, "the reply's ts was not stored"
    return posts(bot.slack, "CSUPPORT")[before]


def stored_message(sessions, ts: str) -> SlackMessage | None:
    with sessions() as session:
        return session.exec(select(SlackMessage).where(SlackMessage.ts == ts)).first()


def labels(sessions) -> list[Label]:
    with sessions() as session:
        return list(session.exec(select(Label).order_by(Label.id)))


# Audits: the buttons on the bot's reply

def actions(body: dict) -> list[dict]:
    return [e for b in body.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def answer(bot: BotServer, action_id: str, *, user: str, ts: str, updates: int, selected: str | None = None) -> dict:
    """Clicks on the reply to the customer's message at `ts`; returns the reply's edit (the `updates`-th)."""
    reply_ts = stored_message(bot.deps.sessions, ts).reply_ts
    response = bot.action(action_id, user=user, ts=reply_ts, selected=selected)
    assert response.status == 200 and response.body == "" and response.seconds < 3
    update = bot.slack.wait_for("chat.update", updates)[-1].body
    assert update["ts"] == reply_ts
    return update


def label_rows(sessions) -> list[tuple[str, LabelSource, str | None, bool, bool]]:
    """(department, source, author, superseded, withdrawn) of every label, oldest first."""
    with sessions() as session:
        names = {d.id: d.name for d in session.exec(select(Department))}
    return [(names[lab.department_id], lab.source, lab.author, lab.superseded_by is not None,
             lab.withdrawn_at is not None) for lab in labels(sessions)]


ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
ENV_PREFIXES = ("SWITCHBOARD_", "SLACK_", "OPENAI_", "DATABASE_URL")


def run_cli(*args: str, env: dict[str, str], input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `switchboard` as a user does: a new process, its own environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)} | env
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          env=full_env, input=input_text, cwd=os.getcwd(), timeout=600)
