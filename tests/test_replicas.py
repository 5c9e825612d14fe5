"""Bot replicas on one store behind a load balancer: every event is delivered to both, as Slack's
retries can land on either, and each is handled exactly once. Runs on PostgreSQL in CI too
(scripts/test-postgres.sh). `bench/replicas.py` measures the same with `serve` processes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlmodel import select

from bot.deps import BotDeps
from fakes.bot_server import BotServer, message, reaction
from store.tables import Label, SlackEvent
from tests.support import AGENT, ScriptedRouter, posts, scripted_bot


@pytest.fixture
def replicas(home, sessions, slack) -> Iterator[tuple[BotServer, BotServer]]:
    first = scripted_bot(home, sessions, slack)
    second = BotServer(BotDeps(rules=first.deps.rules, sessions=sessions, router=ScriptedRouter()), slack)
    yield first, second
    first.close()
    second.close()


def deliver_to_both(replicas: tuple[BotServer, ...], event: dict, event_id: str) -> list[int]:
    """The same event, with the same id, posted to every replica at the same moment."""
    statuses: list[int] = []
    start = threading.Barrier(len(replicas))

    def post(replica: BotServer) -> None:
        start.wait()
        statuses.append(replica.event(event, event_id=event_id).status)

    threads = [threading.Thread(target=post, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_each_event_delivered_to_two_replicas_is_handled_once(replicas, slack, sessions):
    first, second = replicas
    texts = [f"where is my parcel number {i}" if i % 2 else f"I was charged twice, case {i}" for i in range(12)]
    for i, text in enumerate(texts):
        assert deliver_to_both(replicas, message(text, ts=f"{100 + i}.0"), f"EvMSG{i}") == [200, 200]
    slack.wait_for("chat.postMessage", 2 * len(texts))  # a thread reply and a forward for each

    replies = Counter(p["thread_ts"] for p in posts(slack, "CSUPPORT") if p.get("thread_ts"))
    assert replies == Counter({f"{100 + i}.0": 1 for i in range(len(texts))})
    seen = first.deps.router.seen + second.deps.router.seen
    assert sorted(seen) == sorted(texts), "each message classified by exactly one replica"

    for i in range(4):
        relabel = reaction("reaction_added", "money_with_wings", user=AGENT, ts=f"{100 + i}.0")
        assert deliver_to_both(replicas, relabel, f"EvREACT{i}") == [200, 200]
    with sessions() as session:
        claimed = session.exec(select(SlackEvent)).all()
    assert {e.event_id for e in claimed} >= {f"EvMSG{i}" for i in range(len(texts))}

    for replica in replicas:  # every delivery handled to the end, on both: a doubled handler would have written
        replica.drain()
    with sessions() as session:
        agent_labels = session.exec(select(Label).where(Label.author == AGENT)).all()
    assert len(agent_labels) == 4 and len({label.query_id for label in agent_labels}) == 4
    with sessions() as session:
        assert len(session.exec(select(Label).where(Label.author == AGENT)).all()) == 4
