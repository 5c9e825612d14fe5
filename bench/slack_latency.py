"""Time from a Slack event's arrival to the bot's thread reply, on the embedded model on CPU.

    PYTHONPATH=. .venv/bin/python bench/slack_latency.py --messages 200

Trains a first adapter on the bundled sample (1 epoch: latency does not depend on how well it
learned), then runs `switchboard serve --http` as its own process, as in production, with its
Web API pointed at the loopback Slack (fakes/slack_api.py), which lives in this process. Signed message
events are posted one at a time (each waits for its reply, so no queue builds up); for each, the
HTTP acknowledgement time and the time until the loopback Slack received the thread reply.
In the same run, the reference: the same texts classified directly by the same model in this
process while the bot is idle, so the bot's own overhead is the difference.
Prints and saves JSON to bench/results/slack-latency.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import save  # noqa: E402
from bench.speed_phases import time_single_queries  # noqa: E402
from core.settings import Settings  # noqa: E402
from fakes.bot_server import message  # noqa: E402
from fakes.slack_api import FakeSlack, event_body, sign  # noqa: E402
from store.db import make_engine, session_factory, transaction  # noqa: E402
from store.examples import add_examples  # noqa: E402
from store.migrations import migrate  # noqa: E402
from trainer.alternatives import AlternativeSet  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.deps import TrainerConfig, TrainerDeps  # noqa: E402
from trainer.pipeline import RunOptions, run_training  # noqa: E402

SECRET = "bench-signing-secret"


def texts(path: Path, n: int) -> list[str]:
    with path.open() as handle:
        rows = [row["text"] for row in csv.DictReader(handle)]
    return [rows[i % len(rows)] for i in range(n)]


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {"median": round(statistics.median(ordered), 1), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "mean": round(statistics.fmean(ordered), 1), "max": round(ordered[-1], 1)}


def train_first_model(home: Path) -> tuple[Settings, str]:
    settings = Settings(SWITCHBOARD_HOME=home)
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with (ROOT / "data/sample/train.csv").open() as handle:
        sample = [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    with transaction(sessions) as session:
        add_examples(session, examples=sample)
    report = run_training(TrainerDeps(sessions, TrainerConfig.of(settings)),
                          RunOptions(config=TrainConfig(epochs=1, min_steps=0), progress=False,
                                     alternatives=AlternativeSet.NONE, trigger="bench"))
    return settings, report.adapter


def reference_ms(settings: Settings, adapter: str, queries: list[str]) -> list[float]:
    """The same model as the bot serves (the adapter merged into the base), classifying directly."""
    from classifier.model.serving_model import load_serving_model
    from classifier.routing.router import LoraRouter

    base, tokenizer = load_serving_model(settings.base_model, cache_dir=settings.cache_dir)
    router = LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=Path(adapter), name="reference")
    return time_single_queries(router, queries, warmup=0)  # the bot's first queries are not warmed up either


def start_bot(home: Path, slack: FakeSlack) -> tuple[subprocess.Popen[str], int, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SLACK_", "OPENAI_"))}
    env |= {"SWITCHBOARD_HOME": str(home), "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.base_url, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    bot = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--http", "--port", str(port)],
                           env=env, cwd=home, stderr=subprocess.DEVNULL, text=True)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if json.loads(answer.read())["active_model"] is not None:
                    return bot, port, time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
        if bot.poll() is not None:
            raise SystemExit("switchboard serve exited early")


def post_event(port: int, text: str, ts: str, event_id: str) -> float:
    body, content_type = event_body(message(text, ts=ts), event_id)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(),
                                     headers={"Content-Type": content_type, **sign(SECRET, body)})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--queries", type=Path, default=ROOT.parent / "shared/data/banking77/test.csv",
                        help="CSV with a text column (falls back to the bundled sample's eval.csv)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".switchboard/cache", help="converted base model")
    args = parser.parse_args()
    queries = texts(args.queries if args.queries.exists() else ROOT / "data/sample/eval.csv", args.messages)

    home = Path(tempfile.mkdtemp(prefix="switchboard-latency-"))
    (home / "cache").symlink_to(args.cache.resolve())
    settings, adapter = train_first_model(home)
    direct_ms = reference_ms(settings, adapter, queries)

    ack_ms, reply_ms = [], []
    with FakeSlack() as slack:
        bot, port, startup_s = start_bot(home, slack)
        try:
            for i, text in enumerate(queries):
                ts = f"{1_800_000_000 + i}.000100"
                sent = time.time()
                ack_ms.append(post_event(port, text, ts, f"EvBench{i}"))
                # no department has a channel here: exactly one post per message, the thread reply
                reply = slack.wait_for("chat.postMessage", i + 1, timeout=60)[i]
                assert reply.body["thread_ts"] == ts, reply.body
                reply_ms.append((reply.at - sent) * 1000)
        finally:
            bot.send_signal(signal.SIGTERM)
            bot.wait(timeout=60)

    result = {
        "messages": len(queries), "model": settings.base_model,
        "event_to_thread_reply_ms": summary(reply_ms), "http_ack_ms": summary(ack_ms),
        "reference_classify_only_ms": summary(direct_ms),
        "bot_overhead_median_ms": round(statistics.median(reply_ms) - statistics.median(direct_ms), 1),
        "serve_startup_to_healthy_s": round(startup_s, 2),
        "machine": {"cpus": os.cpu_count(), "torch_threads": __import__("torch").get_num_threads(),
                    "processor": platform.processor() or platform.machine()},
    }
    save(result, "slack-latency.json")


if __name__ == "__main__":
    main()
