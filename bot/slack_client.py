"""The one way a Switchboard process talks to the Slack Web API: the bot, its outbox and the trainer's
report poster alike wait out rate limits (`Retry-After`) and retry dropped connections."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler


def make_client(token: str | None, base_url: str) -> WebClient:
    return WebClient(token=token, base_url=base_url, retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=3)])
