"""Bot replicas on one PostgreSQL store against the loopback Slack, next to one process on SQLite, in
the same run.

    python -m bench.replicas --messages 200 --concurrency 16 --replicas 2 4 --kill-one

Trains the first model once (the embedded base, the bundled sample, one epoch) and serves that same
adapter in every configuration: `switchboard serve --http` as N processes, messages spread over
them round-robin as a load balancer would, and every fifth event delivered a second time to the
next replica as one of Slack's retries (the same event id) would be. Reports events per second
acknowledged and answered, p95 from event to thread reply, duplicates and lost messages (both
must be 0). With `--kill-one`, one more configuration: two replicas, the first killed (SIGKILL)
half-way through the burst; deliveries it can no longer take go to the other, as a load
balancer's health check would send them, and the events it had acknowledged but not answered must
be answered by the survivor's outbox once their lease runs out. The PostgreSQL server is a
throwaway one from scripts/postgres.sh. Prints and saves JSON to bench/results/replicas.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.datasets import SHARED
from bench.harness import ROOT, bot_environment, free_port, healthy, post, save, summary, texts, train_first_model
from bot.delivery import DeliveryPolicy
from fakes.slack_api import FakeSlack


def postgres_store(home: Path, adapter: str, base_model: str, sample: Path) -> tuple[str, str]:
    """A throwaway PostgreSQL server holding the sample's departments and the trained adapter, active."""
    import csv

    from store.db import make_engine, session_factory, transaction
    from store.examples import add_examples
    from store.migrations import migrate
    from store.registry import promote, register_model

    pgdir, url = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start"], check=True, capture_output=True,
                                text=True).stdout.split()
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    with sample.open() as handle:
        rows = [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    with transaction(sessions) as session:
        add_examples(session, examples=rows)
        model = register_model(session, adapter_path=adapter, base_model=base_model,
                               labels=sorted({label for _, label in rows}), hyperparameters={}, metrics={},
                               parent_id=None)
        assert model.id is not None
        promote(session, model_id=model.id, by="bench")
    engine.dispose()
    return pgdir, url


def start_replicas(home: Path, slack: FakeSlack, count: int,
                   database_url: str | None) -> list[tuple[subprocess.Popen[str], int]]:
    database = {"DATABASE_URL": database_url} if database_url else {}
    env = bot_environment(home, slack, SWITCHBOARD_AUDIT_RATE="0", **database)
    bots = []
    for i in range(count):
        port = free_port()
        log = (home / f"serve-{count}-{i}.log").open("w")  # kept for a look when something goes wrong
        bots.append((subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--http", "--port", str(port)],
                                      env=env, cwd=home, stderr=log, text=True), port))
    for bot, port in bots:
        while not healthy(port):
            if bot.poll() is not None:
                raise SystemExit("switchboard serve exited early")
            time.sleep(0.2)
    return bots


def run_load(ports: list[int], slack: FakeSlack, queries: list[str], concurrency: int, deadline_s: float,
             run: int, kill: subprocess.Popen[str] | None = None) -> dict[str, Any]:
    """`run` keeps each configuration's event ids and message timestamps apart: configurations share a
    store, and an event id or a message seen before is (rightly) never answered again. `kill`: this
    replica (serving `ports[0]`) is killed once half the messages are sent."""
    sent: dict[str, float] = {}
    acked: list[float] = []
    alive = list(ports)
    killed_at: list[float] = []

    def send(i: int, port_index: int, retry: int = 0) -> tuple[int, float]:
        """Posts to a live replica, moving on to the next when one refuses the connection (it is down)."""
        for step in range(len(ports)):
            port = ports[(port_index + step) % len(ports)]
            if port not in alive:
                continue
            status, ms = post(port, queries[i], f"{1_800_000_000 + run * 100_000 + i}.000100", f"EvRep{run}x{i}",
                              retry=retry)
            if status != 0:
                return status, ms
        return 0, float("nan")

    def deliver(i: int) -> None:
        if kill is not None and i == len(queries) // 2 and not killed_at:
            kill.send_signal(signal.SIGKILL)
            kill.wait()
            alive.remove(ports[0])
            killed_at.append(time.time())
        ts = f"{1_800_000_000 + run * 100_000 + i}.000100"
        sent[ts] = time.time()
        status, ms = send(i, i % len(ports))
        acked.append(ms if status == 200 else float("nan"))
        if i % 5 == 0:  # Slack's retry of the same event, landing on another replica
            send(i, i + 1, retry=1)

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(deliver, range(len(queries))))
    all_acked = time.time()
    while time.time() - started < deadline_s:
        replied = {c.body.get("thread_ts") for c in slack.calls_to("chat.postMessage") if c.status == 200}
        if set(sent) <= replied:
            break
        time.sleep(0.1)
    time.sleep(2)  # a doubled reply would arrive by now
    replies = [c for c in slack.calls_to("chat.postMessage") if c.status == 200 and c.body.get("thread_ts") in sent]
    first_reply: dict[str, float] = {}
    for call in replies:
        first_reply.setdefault(call.body["thread_ts"], call.at)
    per_thread = Counter(c.body["thread_ts"] for c in replies)
    last = max(first_reply.values(), default=started)
    if not first_reply:
        raise SystemExit(f"no message was answered within {deadline_s:.0f} s: see the serve-*.log files")
    result = {
        "messages": len(queries), "redelivered": len(range(0, len(queries), 5)),
        "acknowledged_per_s": round(len(acked) / (all_acked - started), 1),
        "answered_per_s": round(len(first_reply) / (last - started), 1) if first_reply else 0.0,
        "http_ack_ms": summary([a for a in acked if a == a]),
        "event_to_reply_ms": summary([(first_reply[ts] - sent[ts]) * 1000 for ts in first_reply]),
        "duplicates": sum(n - 1 for n in per_thread.values()),
        "lost": len(set(sent) - set(first_reply)),
        "not_acknowledged": sum(1 for a in acked if a != a),
    }
    if killed_at:
        lease = DeliveryPolicy().lease.total_seconds()  # what the killed replica held comes back after this
        late = [ts for ts, at in first_reply.items() if at - killed_at[0] > lease]
        result |= {"killed_after_messages": len(queries) // 2, "answered_after_the_lease": len(late),
                   "seconds_from_kill_to_last_answer": round(last - killed_at[0], 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 4], help="replica counts on PostgreSQL")
    parser.add_argument("--queries", type=Path, default=SHARED / "banking77" / "test.csv")
    parser.add_argument("--cache", type=Path, default=ROOT / ".switchboard/cache", help="converted base model")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds to wait for every reply")
    parser.add_argument("--kill-one", action="store_true",
                        help="also run two replicas on PostgreSQL with one killed half-way through the burst")
    args = parser.parse_args()
    queries = texts(args.queries if args.queries.exists() else ROOT / "data/sample/eval.csv", args.messages)

    home = Path(tempfile.mkdtemp(prefix="switchboard-replicas-"))
    (home / "cache").symlink_to(args.cache.resolve())
    settings, adapter = train_first_model(home)
    pgdir, url = postgres_store(home, adapter, settings.base_model, ROOT / "data/sample/train.csv")
    configs = [("1 process, SQLite", 1, None, False)] + [(f"{n} replicas, PostgreSQL", n, url, False)
                                                         for n in args.replicas]
    if args.kill_one:
        configs.append(("2 replicas, PostgreSQL, one killed mid-burst", 2, url, True))
    results = {}
    try:
        for run, (name, count, database_url, kill) in enumerate(configs):
            with FakeSlack() as slack:
                bots = start_replicas(home, slack, count, database_url)
                try:
                    results[name] = run_load([port for _, port in bots], slack, queries, args.concurrency,
                                             args.deadline, run, kill=bots[0][0] if kill else None)
                finally:
                    for bot, _ in bots:
                        if bot.poll() is None:
                            bot.send_signal(signal.SIGTERM)
                    for bot, _ in bots:
                        bot.wait(timeout=60)
            print(name, json.dumps(results[name]), file=sys.stderr)
    finally:
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", pgdir], check=False, capture_output=True)
    result = {"model": settings.base_model, "concurrency": args.concurrency, "configurations": results}
    save("replicas", result, args)


if __name__ == "__main__":
    main()
