"""Load on the HTTP front: many signed events at once, idle connections held open, and a reply path
that fails for half the messages, against `switchboard serve --http` as its own process.

    python -m bench.load --messages 200 --concurrency 32 --idle 100 --fail-share 0.5

Events are delivered as Slack delivers them, retried (here 1 s apart) when the answer is not a 200.
Loopback only: the bot's Web API points at the loopback Slack (fakes/slack_api.py), in this process, whose
first `fail-share x messages` chat.postMessage calls answer `internal_error`; the bot's outbox must
answer those messages later, exactly once. Reports acknowledgements (and how many under Slack's
3 s), replies delivered, duplicates and lost messages (both must be 0), the serve process's peak
thread count and memory, and how long until every message was answered. Bounded by `--deadline`.
Prints and saves JSON to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import ROOT, post, save, start_bot, summary, texts, train_first_model
from fakes.slack_api import FakeSlack


def deliver(port: int, text: str, ts: str, event_id: str) -> tuple[int, float, int]:
    """As Slack delivers: up to 3 retries (shortened to 1 s apart here) when the answer is not a 200.
    (final status, the first attempt's time in ms, retries used)."""
    status, first_ms = post(port, text, ts, event_id)
    retries = 0
    while status != 200 and retries < 3:
        time.sleep(1)
        retries += 1
        status, _ = post(port, text, ts, event_id, retry=retries)
    return status, first_ms, retries


def replies_by_thread(slack: FakeSlack) -> Counter[str]:
    """How many thread replies the loopback Slack accepted, by the thread's ts."""
    return Counter(ts for call in slack.calls_to("chat.postMessage")
                   if call.ok and isinstance(ts := call.body.get("thread_ts"), str))


class Sampler:
    """Peak threads and resident memory of a process, from /proc, every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.threads, self.rss_kb = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.threads = max(self.threads, int(fields["Threads"]))
            self.rss_kb = max(self.rss_kb, int(fields["VmRSS"].split()[0]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32, help="events in flight at once")
    parser.add_argument("--idle", type=int, default=100, help="connections opened and left silent")
    parser.add_argument("--fail-share", type=float, default=0.5, help="share of messages whose first reply fails")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds to wait for every answer")
    parser.add_argument("--cache", type=Path, default=ROOT / ".switchboard/cache", help="converted base model")
    args = parser.parse_args()
    queries = texts(ROOT / "data/sample/eval.csv", args.messages)

    home = Path(tempfile.mkdtemp(prefix="switchboard-load-"))
    (home / "cache").symlink_to(args.cache.resolve())
    settings, _ = train_first_model(home)
    failures = int(args.messages * args.fail_share)
    with FakeSlack() as slack:
        slack.fail("chat.postMessage", error="internal_error", times=failures)
        bot, port, _ = start_bot(home, slack)
        sampler = Sampler(bot.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(args.concurrency) as pool:
                acks = list(pool.map(lambda i: deliver(port, queries[i], f"{1_900_000_000 + i}.000100",
                                                       f"EvLoad{i}"), range(args.messages)))
            wanted = {f"{1_900_000_000 + i}.000100" for i in range(args.messages)}
            answered: Counter[str] = Counter()
            while time.perf_counter() - started < args.deadline:
                answered = replies_by_thread(slack)
                if wanted <= set(answered):
                    break
                time.sleep(0.5)
            all_answered_s = time.perf_counter() - started
            time.sleep(6)  # one more outbox poll: a duplicate would show now
            answered = replies_by_thread(slack)
        finally:
            for sock in idle:
                sock.close()
            sampler.stop()
            bot.send_signal(signal.SIGTERM)
            bot.wait(timeout=60)

    ack_ms = [ms for status, ms, retries in acks if status == 200 and retries == 0]
    result = {
        "messages": args.messages, "concurrency": args.concurrency, "idle_connections": args.idle,
        "first_replies_failed": failures, "model": settings.base_model,
        "final_http_statuses": dict(Counter(str(status) for status, _, _ in acks)),
        "deliveries_retried_by_slack": sum(retries > 0 for _, _, retries in acks),
        "acks_under_3s": sum(ms < 3000 for ms in ack_ms), "ack_ms": summary(ack_ms) if ack_ms else None,
        "replies_delivered": len(wanted & set(answered)),
        "duplicates": sum(n - 1 for ts, n in answered.items() if ts in wanted and n > 1),
        "lost": len(wanted - set(answered)),
        "seconds_until_all_answered": round(all_answered_s, 1) if wanted <= set(answered) else None,
        "serve_peak_threads": sampler.threads, "serve_peak_rss_mb": round(sampler.rss_kb / 1024, 1),
        "median_ack_ms": round(statistics.median(ack_ms), 1) if ack_ms else None,
    }
    save("load", result, args)


if __name__ == "__main__":
    main()
