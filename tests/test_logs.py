"""Logs for a collector: one JSON object a line on request, and no secret in any line, tracebacks included."""

from __future__ import annotations

import io
import json
import logging

from cli.logs import REDACTED, configure_logging
from core.settings import Settings

TOKEN, SIGNING = "xoxb-1111-2222-abcdef", "8f14e45fceea167a5a36dedd4bea2543"
KEY, PASSWORD = "sk-proj-0123456789abcdefXYZ", "pg-Pa55word"


def configured(log_format: str) -> io.StringIO:
    settings = Settings(SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING, OPENAI_API_KEY=KEY,
                        DATABASE_URL=f"postgresql+psycopg://switchboard:{PASSWORD}@db/switchboard",
                        SWITCHBOARD_LOG_FORMAT=log_format)
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


def say_secrets() -> None:
    log = logging.getLogger("switchboard.test")
    log.info("posting with %s, signed by %s, key %s", TOKEN, SIGNING, KEY)
    log.warning("connecting to postgresql+psycopg://switchboard:%s@db/switchboard", PASSWORD)
    log.info("another app's token xoxp-999-888-777 and an app token xapp-1-A0-123")
    try:
        raise RuntimeError(f"Slack refused {TOKEN}")
    except RuntimeError:
        log.exception("the call failed")


def test_json_logs_are_one_object_a_line_and_carry_no_secret():
    stream = configured("json")
    try:
        say_secrets()
    finally:
        logging.basicConfig(force=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "INFO", "ERROR"]
    assert lines[0]["logger"] == "switchboard.test" and lines[0]["time"].endswith("+00:00")
    assert "RuntimeError: Slack refused [redacted]" in lines[3]["exception"]
    everything = stream.getvalue()
    for secret in (TOKEN, SIGNING, KEY, PASSWORD, "xoxp-999-888-777", "xapp-1-A0-123"):
        assert secret not in everything
    assert everything.count(REDACTED) >= 7


def test_text_logs_carry_no_secret_either():
    stream = configured("text")
    try:
        say_secrets()
    finally:
        logging.basicConfig(force=True)
    text = stream.getvalue()
    assert " INFO switchboard.test: posting with [redacted], signed by [redacted], key [redacted]" in text
    assert all(secret not in text for secret in (TOKEN, SIGNING, KEY, PASSWORD))
