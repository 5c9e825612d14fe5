"""The real Bolt app served over HTTP on a free port, its WebClient pointed at a loopback Slack.

Shared by the bot tests and `bench/slack_latency.py`: both post properly signed requests to
`/slack/events` exactly as Slack does, and read what the bot sent from the fake's record.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.app import build_app
from bot.delivery import Delivery, DeliveryPolicy
from bot.deps import BotDeps
from bot.outbox import OutboxWorker
from bot.server import HttpServer
from bot.slack_client import make_client
from fakes.slack_api import FakeSlack, action_body, command_body, event_body, sign, suggestion_body

SECRET = "test-signing-secret"


class DrainableExecutor(ThreadPoolExecutor):
    """Bolt's listener pool, counting the work in hand, so that a test can wait until every listener
    has finished instead of sleeping before it asserts that something did not happen."""

    def __init__(self) -> None:
        super().__init__(max_workers=5, thread_name_prefix="bolt-listener")
        self._busy = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._idle:
            self._busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def drain(self, timeout: float = 30.0) -> None:
        with self._idle:
            assert self._idle.wait_for(lambda: self._busy == 0, timeout), f"listeners still busy after {timeout} s"


@dataclass
class Response:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def said(self) -> str:
        """What Slack shows from an acknowledgement: a plain-text body, or the JSON body's text."""
        return str(self.json()["text"]) if self.body.startswith("{") else self.body


class BotServer:
    def __init__(self, deps: BotDeps, slack: FakeSlack, *, secret: str = SECRET, policy: DeliveryPolicy | None = None,
                 client: Any = None) -> None:
        """`client`: the Web API client the bot uses (a real one on the fake's URL by default)."""
        self.deps, self.slack, self.secret = deps, slack, secret
        self.client = client or make_client("xoxb-test", slack.base_url)
        self.delivery = Delivery(deps, self.client, policy=policy)
        self.listeners = DrainableExecutor()
        self.app = build_app(deps, client=self.client, signing_secret=secret, delivery=self.delivery,
                             listener_executor=self.listeners)
        metrics = deps.metrics.watch(health=self.health, sessions=deps.sessions)
        self.server = HttpServer(self.app, self.health, host="127.0.0.1", port=0, metrics=metrics.exposition).start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self._events = 0

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "active_model": self.deps.router.model_id}

    def outbox(self) -> OutboxWorker:
        """A worker on this bot's delivery, for a test to run (`run_due()`) when it chooses."""
        return OutboxWorker(self.delivery)

    def drain(self) -> None:
        """Returns once every request acknowledged so far has been handled to the end."""
        self.listeners.drain()

    def close(self) -> None:
        self.server.stop()
        self.delivery.close()
        self.listeners.shutdown(wait=False)

    def post(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
             timestamp: int | None = None, secret: str | None = None) -> Response:
        all_headers = {"Content-Type": content_type, **sign(secret or self.secret, body, timestamp), **(headers or {})}
        request = urllib.request.Request(f"{self.url}/slack/events", data=body.encode(), headers=all_headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Response(answer.status, answer.read().decode(), time.perf_counter() - started)
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode(), time.perf_counter() - started)

    def event(self, event: dict[str, Any], *, event_id: str | None = None, **kwargs: Any) -> Response:
        """Delivers `event` as Slack does; a customer's message becomes part of the fake's channel first."""
        self._events += 1
        if event.get("type") == "message" and event.get("ts") and not event.get("subtype"):
            self.slack.add_message(event["channel"], event)
        body, content_type = event_body(event, event_id or f"Ev{self._events:06d}")
        return self.post(body, content_type, **kwargs)

    def command(self, text: str, *, user: str, channel: str = "CSUPPORT") -> Response:
        body, content_type = command_body(text=text, user_id=user, channel_id=channel)
        return self.post(body, content_type)

    def action(self, action_id: str, *, user: str, ts: str, channel: str = "CSUPPORT",
               selected: str | None = None) -> Response:
        """`user` clicks `action_id` on the bot's message at (channel, ts) as it stands now in the fake Slack;
        in an external_select, `user` first types `selected` and picks it among the options the bot offers."""
        posted = dict(self.slack.messages[(channel, ts)])
        served = None
        if selected is not None and any(e.get("action_id") == action_id and e.get("type") == "external_select"
                                        for b in posted.get("blocks", []) for e in b.get("elements", [])):
            served = self.suggest(action_id, user=user, ts=ts, channel=channel, value=selected)
        body, content_type = action_body(posted, channel, action_id, user, selected=selected,
                                         response_url=self.slack.response_url, served=served)
        return self.post(body, content_type)

    def suggest(self, action_id: str, *, user: str, ts: str, value: str,
                channel: str = "CSUPPORT") -> list[dict[str, Any]]:
        """`user` types `value` into the external_select `action_id` on the bot's message at (channel, ts):
        the options the bot answers with, as Slack would show them."""
        posted = dict(self.slack.messages[(channel, ts)])
        response = self.post(*suggestion_body(posted, channel, action_id, user, value))
        assert response.status == 200, f"the options request got {response.status}: {response.body}"
        return list(response.json()["options"])

    def get(self, path: str) -> Response:
        started = time.perf_counter()
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as answer:
            return Response(answer.status, answer.read().decode(), time.perf_counter() - started)


def message(text: str, *, ts: str, user: str = "UCUSTOMER", channel: str = "CSUPPORT", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "channel_type": "channel", "event_ts": ts, **extra}


def reaction(kind: str, emoji: str, *, user: str, ts: str, channel: str = "CSUPPORT") -> dict[str, Any]:
    return {"type": kind, "user": user, "reaction": emoji, "item_user": "UBOT",
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": f"{time.time():.6f}"}
