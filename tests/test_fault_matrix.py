"""The fault matrix: every external step of a customer's message and of an agent's reaction, crossed with
every way it can fail, through the real Bolt app over HTTP, a loopback Slack and a real store (SQLite, and
PostgreSQL with --store=postgres). Each cell asserts what the customer and the agents see:

- a message: exactly one routing reply in its thread, exactly one forward, at most one apology and never
  one after a reply went out; or, when the step never recovers, a hand-off to triage (its text and link),
  with the customer told that a person will answer when the thread takes posts;
- a reaction: the label the agent meant, written once and withdrawn once when the reaction is removed,
  the reroute forwarded once, and the reply showing the label in force;
- a deletion (the customer deletes the routed message, which Slack sends as a tombstone): nothing posted,
  every row about it forgotten at once, and the bot's reply and forward deleted, by the outbox's retries
  when not at once; or, when Slack never lets them be deleted, the posts given up to people.

A slow step outlasts the event's lease: meanwhile a redelivery from Slack and another replica's outbox
must both leave the event alone. A killed step dies right after its effect (tests/faults.py); another
replica finishes the work once the lease runs out. The cells' outcomes are printed as a table at the
end of the run (conftest.py's FaultMatrixReport).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.baseline_router import BaselineRouter, ColdStartRouter
from bot.delivery import Delivery, DeliveryPolicy
from bot.outbox import OutboxWorker
from classifier.serving.active_router import NoActiveModel
from fakes.bot_server import BotServer, message, reaction
from fakes.openai_api import FakeOpenAI
from fakes.slack_api import FakeSlack
from fakes.slack_events import tombstone
from store.db import transaction
from store.deliveries import RetryPolicy
from store.slack_work import pending_work
from store.tables import Department, Label, LabelSource, SlackEvent, SlackWork, utcnow
from tests.faults import FAILURES, Fault, FaultyRouter, KillingClient, ProcessKilled, on_statement
from tests.support import AGENT, ScriptedRouter, scripted_bot, stored_message, text_of, wait_until

LEASE = timedelta(seconds=1)
POLICY = DeliveryPolicy(lease=LEASE, heartbeat=timedelta(seconds=0.2), poll=timedelta(hours=1),
                        retry=RetryPolicy(max_attempts=3, first_delay=timedelta(0), max_delay=timedelta(0)))
TS, TEXT = "1700000100.000100", "I was charged twice for one order"
MESSAGE_STEPS = ("store write", "classify", "baseline call", "chat.postMessage", "store reply ts",
                 "chat.getPermalink", "forward")
STEPS = (*MESSAGE_STEPS, "chat.update", "chat.delete")
SLACK_STEP = {  # step -> (Web API method, which of its calls)
    "chat.postMessage": ("chat.postMessage", lambda body: body.get("thread_ts") == TS),
    "chat.getPermalink": ("chat.getPermalink", lambda body: True),
    "forward": ("chat.postMessage", lambda body: body.get("channel") == "CBILLING"),
    "chat.update": ("chat.update", lambda body: True),
    "chat.delete": ("chat.delete", lambda body: True),
}
STORE_STEP = {"store write": "INSERT INTO slack_messages", "store reply ts": "UPDATE slack_messages SET reply_ts"}


@dataclass(frozen=True)
class Seen:
    """What people see when the dust has settled."""

    replies: tuple[str, ...]  # the bot's posts in the customer's thread, in order: routed, triage, apology, notice
    forwards: dict[str, int]  # channel -> posts there (department and triage channels)
    labels: tuple[tuple[str, str, bool], ...] = ()  # (department, source, withdrawn) of every label
    shown: str = ""  # the routing reply as it stands in Slack now
    left: int = 0  # the bot's posts still in Slack
    stored: bool = False  # whether the store still holds the message


@dataclass(frozen=True)
class Expected:
    replies: tuple[str, ...]
    forwards: dict[str, int]
    labels: tuple[tuple[str, str, bool], ...] = ()
    shown: str = ""
    apology_allowed: bool = False  # an apology before the reply is fine when a step failed once
    left: int | None = None  # None: not checked
    stored: bool | None = None


def expected(step: str, failure: str) -> Expected:
    if step == "chat.delete":  # the reply and the forward, deleted unless Slack never lets them be
        return Expected(("routed",), {"CBILLING": 1}, left=2 if failure == "always" else 0, stored=False)
    if step == "chat.update":
        return Expected(("routed",), {"CBILLING": 1, "CSHIPPING": 1},
                        labels=(("Shipping", LabelSource.AGENT.value, True),), shown="Routed to *Billing*")
    if failure != "always":
        return Expected(("routed",), {"CBILLING": 1}, apology_allowed=failure == "once")
    return {
        "store write": Expected(("notice",), {"CTRIAGE": 1}, apology_allowed=True),
        "classify": Expected(("notice",), {"CTRIAGE": 1}, apology_allowed=True),
        "baseline call": Expected(("triage",), {"CTRIAGE": 1}),  # the baseline down: triage, as designed
        "chat.postMessage": Expected((), {"CTRIAGE": 1}),  # the thread takes no post: triage has it
        "store reply ts": Expected(("routed",), {"CTRIAGE": 1}),
        "chat.getPermalink": Expected(("routed",), {"CBILLING": 1}),  # forwarded without the link
        "forward": Expected(("routed",), {"CTRIAGE": 1}),
    }[step]


class NoModel:
    model_id = None

    def classify(self, text: str) -> Any:
        raise NoActiveModel("no model is active yet")


class World:
    """One cell: the bot (replica A) and a second replica's outbox (B), with the fault armed at its step."""

    def __init__(self, home, sessions, slack: FakeSlack, step: str, fault: Fault) -> None:
        self.sessions, self.slack, self.step, self.fault = sessions, slack, step, fault
        self.openai: FakeOpenAI | None = None
        method, picks = SLACK_STEP.get(step, ("", lambda body: False))
        client = KillingClient(slack.base_url, fault if step in SLACK_STEP else None,
                               lambda m, body: m == method and picks(body))
        router: Any = ScriptedRouter()
        if step == "classify":
            router = FaultyRouter(router, fault)
        elif step == "baseline call":
            router = ColdStartRouter(NoModel(), BaselineRouter(self._baseline_client(), sessions, model="gpt-4o",
                                                               backoff_s=0.01))
        if step in STORE_STEP:
            on_statement(sessions().get_bind(), fault, STORE_STEP[step])
        self.bot: BotServer = scripted_bot(home, sessions, slack, policy=POLICY, client=client, router=router,
                                           SWITCHBOARD_AUDIT_RATE="0")
        self.replica = Delivery(self.bot.deps, client, policy=POLICY)
        self.other = OutboxWorker(self.replica, slack_work=POLICY.retry)

    def _baseline_client(self) -> openai.OpenAI:
        self.openai = FakeOpenAI(lambda text: ("Billing", 0.9)).start()

        def die_after_answer(response: Any) -> None:
            if self.fault.kind == "killed" and self.fault.due():
                raise ProcessKilled

        return openai.OpenAI(api_key="sk-test", base_url=self.openai.base_url, max_retries=0,
                             http_client=openai.DefaultHttpxClient(event_hooks={"response": [die_after_answer]}))

    def arm_slack(self) -> None:
        if self.step not in SLACK_STEP or self.fault.kind == "killed":
            return
        method, picks = SLACK_STEP[self.step]
        if self.fault.kind == "slow":
            self.slack.slow(method, self.fault.slow_s, when=picks)
        else:
            self.slack.fail(method, "internal_error", times=1 if self.fault.kind == "once" else 1000, when=picks)

    def arm_baseline(self) -> None:
        assert self.openai is not None
        if self.fault.kind in ("once", "always"):
            self.openai.fail_next(*[500] * (1 if self.fault.kind == "once" else 1000))
        elif self.fault.kind == "slow":
            self.openai.slow_next(self.fault.slow_s, started=lambda: self.fault.slowed_at.append(time.monotonic()))

    def deliver(self, event: dict, event_id: str, *, armed: bool = True) -> None:
        assert self.bot.event(event, event_id=event_id).status == 200
        if armed and self.fault.kind == "slow" and self.fault.fired < 2:
            self._while_slow(event, event_id)
        wait_until(lambda: self._finished(event_id) or (self._survive(self.other.run_due) and False), timeout=60,
                   what=f"event {event_id} done")

    @staticmethod
    def _survive(run: Any) -> int:
        """The other replica's outbox run; a kill there (its chat.delete, say) is that replica dying, not the test."""
        try:
            return int(run())
        except ProcessKilled:
            return 0

    def settle_deletions(self) -> None:
        """Runs the other replica's outbox, every owed deletion made due at once, until none is owed."""
        def settled() -> bool:
            with transaction(self.sessions) as session:
                if not pending_work(session):
                    return True
                session.exec(update(SlackWork).values(retry_at=utcnow()))
            self._survive(self.other.run_slack_work)
            return False

        wait_until(settled, timeout=60, what="the owed deletions done or given up")

    def _while_slow(self, event: dict, event_id: str) -> None:
        """Once the step has outlasted the lease: Slack's retry and another replica leave the event alone."""
        started = wait_until(lambda: (self.fault.slowed_at or self.slack.slowed or [None])[0], timeout=20,
                             what="the slow step")
        if self._finished(event_id):
            return  # the fault was on a step this event does not take
        wait_until(lambda: time.monotonic() > started + 1.5 * LEASE.total_seconds(), what="the lease's length")
        self.fault.fired = 2  # mark the check as done (a second slow step in this cell would not be checked)
        assert not self.replica.claim(event_id, event), "Slack's retry, on another replica, took the event"
        assert self.other.run_due() == 0, "another replica's outbox took an event whose owner was still working"
        assert self.bot.event(event, event_id=event_id, headers={"X-Slack-Retry-Num": "1"}).status == 200
        with self.sessions() as session:
            assert session.get(SlackEvent, event_id).attempts == 1, "a redelivery started the work again"

    def _finished(self, event_id: str) -> bool:
        with self.sessions() as session:
            event = session.get(SlackEvent, event_id)
            return event is not None and (event.done_at is not None or event.gave_up_at is not None)

    def seen(self) -> Seen:
        calls = [c for c in self.slack.calls_to("chat.postMessage") if c.ok]
        replies = tuple(_kind(c.body) for c in calls if c.body.get("thread_ts") == TS)
        forwards: dict[str, int] = {}
        for call in calls:
            if not call.body.get("thread_ts"):
                forwards[call.body["channel"]] = forwards.get(call.body["channel"], 0) + 1
        with self.sessions() as session:
            labels = tuple((lab.department_id, lab.source, lab.withdrawn_at is not None)
                           for lab in session.exec(select(Label).order_by(Label.id)))
            names = {d.id: d.name for d in session.exec(select(Department))}
        stored = stored_message(self.sessions, TS)
        shown = ""
        if stored is not None and stored.reply_ts:
            shown = text_of(self.slack.messages[("CSUPPORT", stored.reply_ts)])
        left = sum(1 for m in self.slack.messages.values() if m.get("bot_id") == self.slack.bot_id)
        return Seen(replies, forwards, tuple((names[d], str(s), w) for d, s, w in labels), shown, left,
                    stored is not None)

    def close(self) -> None:
        self.bot.close()
        self.replica.close()
        if self.openai is not None:
            self.openai.stop()


def _kind(body: dict) -> str:
    said = text_of(body)
    if "Sorry, I could not route" in said:
        return "apology"
    if "a person will answer" in said:
        return "notice"
    if "Needs triage" in said:
        return "triage"
    return "routed" if "Routed to" in said else "other"


CELLS = [(step, failure) for step in STEPS for failure in FAILURES]


@pytest.mark.parametrize(("step", "failure"), CELLS, ids=[f"{s}-{f}".replace(" ", "_") for s, f in CELLS])
def test_fault_matrix(step, failure, home, sessions, store, request):
    request.node.user_properties.append(("fault_matrix", (store, step, failure,
                                                          STEPS.index(step), FAILURES.index(failure))))
    fault = Fault(failure)
    with FakeSlack() as slack:
        world = World(home, sessions, slack, step, fault)
        try:
            if step == "chat.update":
                world.deliver(message(TEXT, ts=TS), "EvMSG", armed=False)
                world.arm_slack()
                reply_ts = stored_message(sessions, TS).reply_ts
                world.deliver(reaction("reaction_added", "package", user=AGENT, ts=reply_ts), "EvADD")
                world.deliver(reaction("reaction_removed", "package", user=AGENT, ts=reply_ts), "EvDEL")
            elif step == "chat.delete":
                world.deliver(message(TEXT, ts=TS), "EvMSG", armed=False)
                world.arm_slack()
                reply_ts = stored_message(sessions, TS).reply_ts
                world.deliver(tombstone(message(TEXT, ts=TS), replies=[reply_ts]), "EvGONE")
                world.settle_deletions()
            else:
                if step == "baseline call":
                    world.arm_baseline()
                world.arm_slack()
                world.deliver(message(TEXT, ts=TS), "EvMSG")
            seen, want = world.seen(), expected(step, failure)
        finally:
            world.close()
    replies = tuple(r for r in seen.replies if r != "apology")
    apologies = [i for i, r in enumerate(seen.replies) if r == "apology"]
    checks = {
        "replies": replies == want.replies,
        "forwards": seen.forwards == want.forwards,
        "apology": (not apologies or (want.apology_allowed and len(apologies) == 1 and apologies[0] == 0)),
        "labels": seen.labels == want.labels,
        "shown": want.shown in seen.shown,
        "left in Slack": want.left is None or seen.left == want.left,
        "stored": want.stored is None or seen.stored == want.stored,
    }
    assert all(checks.values()), f"{step} x {failure}: {[k for k, ok in checks.items() if not ok]} failed; saw {seen}"
