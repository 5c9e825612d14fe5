"""Time from a Slack event's arrival to the bot's thread reply, on the embedded model on CPU.

    python -m bench.slack_latency --messages 200

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
import signal
import statistics
import tempfile
import time
from pathlib import Path

from bench.datasets import SHARED
from bench.harness import ROOT, post, save, start_bot, summary, texts, time_single_queries, train_first_model
from core.settings import Settings
from fakes.slack_api import FakeSlack


def reference_ms(settings: Settings, adapter: str, queries: list[str]) -> list[float]:
    """The same model as the bot serves (the adapter merged into the base), classifying directly."""
    from classifier.model.serving_model import load_serving_model
    from classifier.routing.router import LoraRouter

    base, tokenizer = load_serving_model(settings.base_model, cache_dir=settings.cache_dir)
    router = LoraRouter.from_adapter(base=base, tokenizer=tokenizer, adapter_dir=Path(adapter), name="reference")
    return time_single_queries(router.classify, queries, warmup=0)  # the bot's first queries are not warmed either


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--queries", type=Path, default=SHARED / "banking77" / "test.csv",
                        help="CSV with a text column (falls back to the bundled sample's eval.csv)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".switchboard/cache", help="converted base model")
    args = parser.parse_args()
    queries = texts(args.queries if args.queries.exists() else ROOT / "data/sample/eval.csv", args.messages)

    home = Path(tempfile.mkdtemp(prefix="switchboard-latency-"))
    (home / "cache").symlink_to(args.cache.resolve())
    settings, adapter = train_first_model(home)
    direct_ms = reference_ms(settings, adapter, queries)

    ack_ms: list[float] = []
    reply_ms: list[float] = []
    with FakeSlack() as slack:
        bot, port, startup_s = start_bot(home, slack)
        try:
            for i, text in enumerate(queries):
                ts = f"{1_800_000_000 + i}.000100"
                sent = time.time()
                status, ms = post(port, text, ts, f"EvBench{i}")
                if status != 200:
                    raise SystemExit(f"the bot answered message {i} with HTTP {status}")
                ack_ms.append(ms)
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
    }
    save("slack-latency", result, args)


if __name__ == "__main__":
    main()
