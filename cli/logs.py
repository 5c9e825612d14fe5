"""Logging for the long-running commands: text for a terminal, one JSON object a line for a log
collector (`SWITCHBOARD_LOG_FORMAT=json`), and never a secret in either.

Every line passes through one formatter that replaces the values of the settings' secrets, and
anything shaped like a Slack or OpenAI token, before it is written, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
_TOKEN_SHAPES = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{16,})")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: list[str], *, as_json: bool) -> None:
        super().__init__(TEXT_FORMAT)
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self._as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if not self._as_json:
            return self.redact(super().format(record))
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(line, ensure_ascii=False))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
        return _TOKEN_SHAPES.sub(REDACTED, text)


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
              settings.openai_api_key]
    found = [v.get_secret_value() for v in values if v is not None]
    password = re.search(r"://[^:/@\s]+:([^@\s]+)@", settings.database_url)
    return found + ([password.group(1)] if password else [])


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets_of(settings), as_json=settings.log_format == "json"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
