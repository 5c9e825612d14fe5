"""The checks deploy/smoke.sh runs, in order, on compose's `cpu` profile (deploy/smoke.py holds the plumbing)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fakes.slack_api import command_body

BURST, KILL_AFTER = 20, 8
BURST_CHECK = "killing the bot mid-burst loses no message and answers none twice"


def run_checks(smoke: Any) -> None:
    with smoke.step("image builds"):
        smoke.build()
    smoke.take_down()  # a smoke cut short before leaves its containers and volumes: start clean
    if smoke.args.break_ == "volume":
        smoke.unwritable_volume()
    threading.Thread(target=smoke.healthchecks, daemon=True).start()
    with smoke.step("bot healthy"):
        seconds = smoke.up(first=True)
        smoke.check("bot healthy", True, f"its HEALTHCHECK passed {seconds:.0f} s after `up`",
                    up_to_healthy_seconds=round(seconds, 1))
    with smoke.step("runs as uid 10001"):
        uid = smoke.run("podman", "exec", smoke.container("bot"), "id", "-u").stdout.strip()
        smoke.check("runs as uid 10001", uid == "10001", f"id -u in the bot container: {uid}")
    status, metrics = smoke.http("/metrics")
    smoke.check("/metrics answers", status == 200 and "switchboard_messages" in metrics, f"HTTP {status}")

    name = "import and train promote a first model"
    with smoke.step(name):
        smoke.switchboard("import", "/app/data/sample/train.csv")
        smoke.switchboard("departments", "add", "Billing", "--channel", "CBILLING")
        trained = json.loads(smoke.switchboard("train", "--alternatives", "none", "--json").stdout)
        smoke.check(name, bool(trained.get("promoted")), f"run {trained.get('run_id')}: {trained.get('reason')}",
                    train_seconds=trained.get("duration_s"))
        model = trained["model_id"]
        smoke.wait("the bot to serve the new model", lambda: _healthz(smoke).get("active_model") == model, 120)

    name = "a customer's message is answered by the model and stored in postgres"
    with smoke.step(name):
        smoke.customer("I was charged twice for the same order, can you fix the invoice?", "1800000000.000100")
        smoke.wait("the reply in the thread", lambda: smoke.replies_to("1800000000.000100"), 120)
        reply = smoke.replies_to("1800000000.000100")[0]
        stored = smoke.psql("SELECT p.model_version_id FROM slack_messages m JOIN predictions p "
                            "ON p.id = m.prediction_id WHERE m.ts = '1800000000.000100'")
        shown = reply.get("text", "") + json.dumps(reply.get("blocks"))
        smoke.check(name, stored == str(model) and "team has your question" in shown and "%" not in shown,
                    f"reply {reply.get('text')!r} (the customer's acknowledgement), stored with model {stored}")

    name = "an admin's /switchboard retrain is run by the trainer container and reported"
    with smoke.step(name):
        body, kind = command_body("/switchboard", "retrain", user_id="USMOKEADMIN", channel_id="CSMOKE")
        status, _ = smoke.http("/slack/events", body, kind)
        began = time.monotonic()
        smoke.wait("the trainer's report", lambda: _report(smoke), 3600)
        report, runs = _report(smoke), smoke.psql("SELECT count(*) FROM training_runs")
        first_line = (report.splitlines()[1:2] or [""])[0].strip("`")
        smoke.check(name, status == 200 and f"run {trained['run_id'] + 1}:" in report and runs == "2",
                    f"{time.monotonic() - began:.0f} s after the command: {first_line!r}; {runs} runs stored",
                    retrain_seconds=round(time.monotonic() - began, 1))

    name = "down and up keep the model, the labels and the messages"
    with smoke.step(name):
        before = _state(smoke)
        smoke.compose("down", timeout=600)
        seconds = smoke.up(first=False)
        after = _state(smoke)
        smoke.check(name, before == after, f"{after} (healthy again after {seconds:.0f} s)")

    with smoke.step(BURST_CHECK):
        _burst_with_a_kill(smoke)


def _healthz(smoke: Any) -> dict[str, Any]:
    status, text = smoke.http("/healthz")
    try:
        return json.loads(text) if status == 200 else {}
    except ValueError:
        return {}


def _report(smoke: Any) -> str:
    """The trainer's answer to the admin's request (trainer/service.py), or "" while there is none."""
    return next((c.body["text"] for c in smoke.slack.calls_to("chat.postMessage")
                 if c.ok and "asked for a retrain" in (c.body.get("text") or "")
                 and c.body.get("channel") in ("CSMOKE", "USMOKEADMIN") and not c.body.get("thread_ts")), "")


def _state(smoke: Any) -> dict[str, Any]:
    status = json.loads(smoke.switchboard("status", "--json").stdout)
    return {"active_model": (status.get("active_model") or {}).get("id"),
            "labels": smoke.psql("SELECT count(*) FROM labels"),
            "messages": smoke.psql("SELECT count(*) FROM slack_messages")}


def _burst_with_a_kill(smoke: Any) -> None:
    """Twenty customers' messages; the bot container killed after the eighth. Events Slack could not deliver
    (the connection refused) are sent again once it is back, as Slack retries them, under the same event id."""
    sent: list[str] = []
    undelivered: list[str] = []
    for i in range(BURST):
        ts = f"1800000100.{i:06d}"
        if i == KILL_AFTER:
            smoke.run("podman", "kill", smoke.container("bot"))
        try:
            smoke.customer(f"burst question {i}: where is my refund for order {1000 + i}?", ts)
            sent.append(ts)
        except Exception:
            undelivered.append(ts)
    smoke.up(first=False)
    for ts in undelivered:
        smoke.customer(f"burst question {int(ts.split('.')[1])}: where is my refund for order "
                       f"{1000 + int(ts.split('.')[1])}?", ts)
    every = [f"1800000100.{i:06d}" for i in range(BURST)]
    smoke.wait("a reply to every message of the burst", lambda: all(smoke.replies_to(ts) for ts in every), 600)
    time.sleep(10)  # a late duplicate would arrive now
    counts = {ts: len(smoke.replies_to(ts)) for ts in every}
    stored = int(smoke.psql("SELECT count(*) FROM slack_messages WHERE ts LIKE '1800000100.%'"))
    smoke.check(BURST_CHECK, set(counts.values()) == {1} and stored == BURST,
                f"{BURST} messages, {len(undelivered)} refused while it was down and sent again; replies per message "
                f"{sorted(set(counts.values()))}, stored {stored}")
