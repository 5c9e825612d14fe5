"""The bot with real parts behind it: retrain and rollback from Slack on the tiny Llama, the running
bot picking up each promotion, Socket Mode start-up, and `switchboard serve` as a process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bot.app import build_app
from bot.deps import BotDeps
from bot.rules import BotRules
from bot.server import start_socket_mode
from bot.slack_client import make_client
from classifier.model.base_model import load_base_model
from classifier.routing.adapters import check_adapter_path
from classifier.serving.active_router import ActiveModelRouter
from core.settings import Settings
from fakes.bot_server import BotServer, message
from fakes.slack_api import FakeSlack, command_payload, event_payload
from store.db import transaction
from store.examples import add_examples, upsert_department
from store.registry import promote_checked, register_model, registry_lookup
from store.runs import TRAINING_LOCK, release_lock, try_acquire_lock
from tests.support import ADMIN, EXAMPLES, LOOP, MORE, ScriptedRouter, posts, route, text_of, trainer_deps, wait_until
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training
from trainer.service import TrainerService


@pytest.fixture
def live(settings, sessions, tiny_model_dir) -> Iterator[BotServer]:
    """The bot serving the registry's active model on the tiny Llama, hot-swapping every 0.2 s."""
    settings = settings.model_copy(update={"admins": frozenset({ADMIN}), "confidence_threshold": 0.0,
                                           "reply_style": "internal",  # the model's number in the thread
                                           "confidence_margin": 0.0})
    with transaction(sessions) as session:
        add_examples(session, examples=EXAMPLES)
        upsert_department(session, name="Billing", emoji="moneybag")
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=0.2)
    router.start()

    def run_now(trigger: str) -> dict:
        return run_training(trainer_deps(settings, sessions),
                            RunOptions(config=LOOP, trigger=trigger, progress=False, alternatives=AlternativeSet.NONE))

    with FakeSlack() as slack:
        client = make_client("xoxb-test", slack.base_url)
        trainer = TrainerService(sessions, run_now, poll_seconds=0.2,
                                 post=lambda channel, user, text: client.chat_postMessage(channel=channel, text=text))
        server = BotServer(BotDeps(rules=BotRules.of(settings), sessions=sessions, router=router), slack)
        trainer.start()
        yield server
        trainer.stop()
        server.close()
    router.stop()


def report_posted(slack: FakeSlack, count: int) -> str:
    def reports() -> list[dict]:
        return [p for p in posts(slack, "CSUPPORT") if "asked for a retrain" in p["text"]][count - 1:]

    return wait_until(reports, timeout=240)[0]["text"]


def test_retrain_and_rollback_from_slack_reach_the_running_bot(live, sessions):
    slack = live.slack
    before = route(live, "alpha question before any model", ts="1.0")
    assert "no model is trained yet" in text_of(before)

    started = live.command("retrain", user=ADMIN)
    assert started.seconds < 3 and "the trainer starts it within seconds" in started.said
    report = report_posted(slack, 1)
    assert "run 1: PROMOTED" in report and "candidate" in report
    first = wait_until(lambda: live.get("/healthz").json()["active_model"], timeout=30)
    assert "Model 1" in text_of(route(live, "beta question 3", ts="2.0"))

    with transaction(sessions) as session:
        add_examples(session, examples=MORE)
    live.command("retrain", user=ADMIN)
    assert "run 2" in report_posted(slack, 2)
    # promoted or not, an admin can force it
    second = promote_checked(sessions, model_id=2, by="admin (cli)", check=check_adapter_path).id
    wait_until(lambda: live.get("/healthz").json()["active_model"] == second, timeout=30)
    assert f"Model {second}" in text_of(route(live, "gamma question 4", ts="3.0"))

    rolled = live.command("rollback", user=ADMIN).json()
    assert rolled["response_type"] == "in_channel" and f"model {first} is active again" in rolled["text"]
    wait_until(lambda: live.get("/healthz").json()["active_model"] == first, timeout=30)
    assert f"Model {first}" in text_of(route(live, "alpha question 5", ts="4.0"))

    slack.fail("views.publish", "invalid_blocks", times=1)  # Slack has not finished processing the upload
    home_opened = {"type": "app_home_opened", "user": ADMIN, "channel": "DHOME", "tab": "home"}
    live.event(home_opened)
    refused, without_chart = (c.body["view"]["blocks"] for c in slack.wait_for("views.publish", 2))
    assert any(b["type"] == "image" for b in refused) and not any(b["type"] == "image" for b in without_chart)
    live.event(home_opened)
    views = slack.wait_for("views.publish", 3)
    [image] = [b for b in views[-1].body["view"]["blocks"] if b["type"] == "image"]
    [upload] = slack.calls_to("files.completeUploadExternal")  # one chart per promotion history, reused
    assert image["slack_file"]["id"] == upload.body["files"][0]["id"]
    assert slack.uploaded[image["slack_file"]["id"]].startswith(b"\x89PNG")
    assert f"#{first} " in text_of(views[-1].body["view"]) and f"#{second} " in text_of(views[-1].body["view"])
    assert f"*Active model {first}*" in text_of(views[-1].body["view"])


def test_retrain_is_refused_politely_while_a_run_holds_the_lock(live, sessions):
    from datetime import timedelta

    assert try_acquire_lock(sessions, name=TRAINING_LOCK, owner="elsewhere", ttl=timedelta(minutes=5))
    try:
        assert "already in progress" in live.command("retrain", user=ADMIN).said
    finally:
        release_lock(sessions, name=TRAINING_LOCK, owner="elsewhere")
    live.drain()
    assert posts(live.slack) == []


def test_socket_mode_starts_acks_envelopes_and_routes(home, sessions):
    settings = Settings(SWITCHBOARD_HOME=home, SWITCHBOARD_ADMINS=ADMIN, SWITCHBOARD_REPLY_STYLE="internal")
    deps = BotDeps(rules=BotRules.of(settings), sessions=sessions, router=ScriptedRouter())
    with transaction(sessions) as session:
        upsert_department(session, name="Billing", emoji="moneybag")
        register_model(session, adapter_path="scripted", base_model="scripted", labels=["Billing"],
                       hyperparameters={}, metrics={}, parent_id=None)
    with FakeSlack() as slack:
        slack.socket_mode()
        app = build_app(deps, client=make_client("xoxb-test", slack.base_url), signing_secret=None)
        handler = start_socket_mode(app, "xapp-test-token")
        try:
            assert slack.socket_connected.wait(10)
            [opened] = slack.calls_to("apps.connections.open")
            assert opened.token == "xapp-test-token"
            event_envelope = slack.send_envelope("events_api", event_payload(message("charged twice", ts="5.0"),
                                                                                "EvSOCKET"))
            assert slack.wait_for_ack(event_envelope)["envelope_id"] == event_envelope
            reply = slack.wait_for("chat.postMessage")[0].body
            assert reply["thread_ts"] == "5.0" and "Routed to *Billing*" in text_of(reply)
            command_envelope = slack.send_envelope("slash_commands", command_payload(text="status", user_id="U9"))
            assert "active model" in slack.wait_for_ack(command_envelope)["payload"]["text"]
        finally:
            handler.close()


SERVE_AND_REPORT_MODULES = """
import json, os, signal, sys, threading, time
from pathlib import Path
from cli.main import main

def report_then_stop(routed, loaded):
    while not Path(routed).exists():
        time.sleep(0.1)
    Path(loaded).write_text(json.dumps(sorted({"transformers", "peft", "trl"} & set(sys.modules))))
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_then_stop, args=sys.argv[1:3], daemon=True).start()
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_switchboard_serve_runs_the_bot_over_http(home, tiny_model_dir, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from fakes.bot_server import SECRET
    from fakes.slack_api import event_body, sign
    from tests.support import ENV_PREFIXES, run_cli

    with FakeSlack() as slack:
        env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
               "SLACK_BOT_TOKEN": "xoxb-secret-token", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": slack.base_url, "SWITCHBOARD_LOG_FORMAT": "json"}
        data = tmp_path / "d.jsonl"
        data.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in EXAMPLES))
        assert run_cli("import", str(data), env=env).returncode == 0
        assert run_cli("train", "--epochs", "2", "--alternatives", "none", env=env).returncode == 0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)} | env
        routed, loaded = tmp_path / "routed", tmp_path / "modules.json"
        process = subprocess.Popen([sys.executable, "-c", SERVE_AND_REPORT_MODULES, str(routed), str(loaded),
                                    "serve", "--port", str(port)], env=full_env, stderr=subprocess.PIPE, text=True)
        try:
            health = wait_until(lambda: _get_json(f"http://127.0.0.1:{port}/healthz"), timeout=120)
            assert health == {"status": "ok", "reasons": [], "backlog": 0, "mode": "http", "active_model": 1,
                              "registry_model": 1}
            body, content_type = event_body(message("alpha question 9", ts="6.0"), "EvSERVE")
            request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(),
                                             headers={"Content-Type": content_type, **sign(SECRET, body)})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            reply = slack.wait_for("chat.postMessage", timeout=60)[0]
            assert reply.body["thread_ts"] == "6.0" and reply.token == "xoxb-secret-token"
            routed.touch()  # the process records what it imported, then stops itself with SIGTERM
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert json.loads(loaded.read_text()) == [], "the bot must not load the training libraries"
    assert "xoxb-secret-token" not in stderr and SECRET not in stderr
    logged = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "switchboard" and "serving model 1" in line["message"] for line in logged)


def _get_json(url: str) -> dict | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, ConnectionError):
        return None
