"""Logs for a collector: one JSON object a line on request, and no secret in any line, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import pytest

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


# Secrets a JSON encoder escapes (`"`, `\`) or that a URL carries percent-encoded (and a driver's error
# quotes decoded); none shaped like a token, so only their values can catch them.
ODD_TOKEN, ODD_KEY = 'bot-"tøken"\\for-slack', "key\\openai-\"ключ\""
ODD_PASSWORD = 'pä"ss\\wörd @1:/'


def spellings(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
            quote(secret, safe="")}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_with_quotes_backslashes_and_non_ascii_are_redacted_before_encoding(log_format):
    url = f"postgresql+psycopg://switchboard:{quote(ODD_PASSWORD, safe='')}@db/switchboard"
    settings = Settings(SLACK_BOT_TOKEN=ODD_TOKEN, SLACK_SIGNING_SECRET=SIGNING, OPENAI_API_KEY=ODD_KEY,
                        DATABASE_URL=url, SWITCHBOARD_LOG_FORMAT=log_format)
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    log = logging.getLogger("switchboard.test")
    try:
        log.info("posting with %s, key %s", ODD_TOKEN, ODD_KEY)
        log.warning("connecting to %s", url)
        log.warning("password authentication failed: %s (%r)", ODD_PASSWORD, ODD_PASSWORD)
        log.info(f"an f-string with {ODD_TOKEN} and {ODD_PASSWORD}")
        try:
            try:
                raise KeyError(ODD_KEY)  # a KeyError's text is its argument's repr
            except KeyError as error:
                raise RuntimeError(f"login with {ODD_TOKEN} as {ODD_PASSWORD} failed") from error
        except RuntimeError:
            log.exception("the call failed for %s", ODD_PASSWORD)
    finally:
        logging.basicConfig(force=True)
    everything = stream.getvalue()
    values = ([str(value) for line in everything.splitlines() for value in json.loads(line).values()]
              if log_format == "json" else [everything])
    for secret in (ODD_TOKEN, ODD_KEY, ODD_PASSWORD):
        for form in spellings(secret):
            assert form not in everything, (secret, form)
            assert all(form not in value for value in values), (secret, form)
    assert "RuntimeError: login with [redacted] as [redacted] failed" in everything
    assert everything.count(REDACTED) >= 11
