"""Faults injected through what the bot is handed (its store's engine, its router, its Slack client, the
baseline's HTTP client, the loopback servers), never by patching the product's modules.

Each fault fires at one step, in one of four ways: `once` (an exception, then it works), `always`
(an exception every time), `slow` (the step outlasts the event's lease) and `killed` (the process
dies at the step; for a call to a server, after the call landed). A kill is a `ProcessKilled`, a
BaseException the product never catches: no line after the step runs, the open transaction rolls
back, and the lease is neither renewed nor released, which is what a SIGKILL leaves behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy import event

from classifier.routing.router import Classification

FAILURES = ("once", "always", "slow", "killed")


class ProcessKilled(BaseException):
    """The process died here."""


class StepFailed(RuntimeError):
    """An injected failure of a step."""


@dataclass
class Fault:
    kind: str  # one of FAILURES
    slow_s: float = 2.5
    fired: int = 0
    slowed_at: list[float] = field(default_factory=list)  # when each slow step began (time.monotonic())
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self) -> bool:
        """Whether this call fails (or stalls, or dies); counts it when it does."""
        with self._lock:
            if self.kind != "always" and self.fired:
                return False
            self.fired += 1
            return True

    def strike(self, error: Callable[[], BaseException] = lambda: StepFailed("injected failure")) -> None:
        """At the step, before its effect: raise, stall past the lease, or die."""
        if not self.due():
            return
        if self.kind == "slow":
            self.slowed_at.append(time.monotonic())
            time.sleep(self.slow_s)
        elif self.kind == "killed":
            raise ProcessKilled
        else:
            raise error()


def on_statement(engine: Any, fault: Fault, starts: str) -> None:
    """The store fails (as a full disk would), stalls or dies at each statement beginning with `starts`."""
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(starts.upper()):
            fault.strike(lambda: conn.dialect.loaded_dbapi.OperationalError("database or disk is full (injected)"))

    event.listen(engine, "before_cursor_execute", before)


class FaultyRouter:
    """A router whose `classify` fails, stalls or dies as `fault` says, else answers as `inner` does."""

    def __init__(self, inner: Any, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    @property
    def model_id(self) -> int | None:
        return self.inner.model_id  # type: ignore[no-any-return]

    def classify(self, text: str) -> Classification:
        self.fault.strike()
        return self.inner.classify(text)  # type: ignore[no-any-return]


class KillingClient(WebClient):
    """The bot's real Web API client, except that the process dies right after a call `picks` landed."""

    def __init__(self, base_url: str, fault: Fault | None, picks: Callable[[str, dict[str, Any]], bool]) -> None:
        super().__init__(token="xoxb-test", base_url=base_url, retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=3)])
        self.fault, self.picks = fault, picks

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        answer = super().api_call(api_method, **kwargs)
        body = {**(kwargs.get("json") or {}), **(kwargs.get("params") or {}), **(kwargs.get("data") or {})}
        if self.fault is not None and self.fault.kind == "killed" and self.picks(api_method, body) and self.fault.due():
            raise ProcessKilled
        return answer
