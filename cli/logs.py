"""Logging for the long-running commands: text for a terminal, one JSON object a line for a log
collector (`SWITCHBOARD_LOG_FORMAT=json`), and never a secret or a customer's personal detail in either.

Every line passes through one formatter that replaces the values of the settings' secrets, a URL's
password, and anything shaped like a Slack or OpenAI token, before it is written, tracebacks
included. In JSON the message and the traceback are redacted before they are encoded (a secret with
a `"` or a `\\` no longer reads the same once escaped, and a collector decodes it back), then the
encoded line is redacted again, for the secrets' escaped forms. Personal details (e-mails, phone,
card and IBAN numbers, URLs, the admin's patterns: core/redact.py) are replaced in the message and
the traceback first, unless `SWITCHBOARD_REDACT=off`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote

from core.redact import Redactor, redactor_of

if TYPE_CHECKING:
    from core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
_TOKEN_SHAPES = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{16,})")
# A URL's password in free text: up to the last `@` before a space, since a decoded password may
# hold `@` (and `"`, `\`, anything but whitespace); the configured one is replaced whole before this.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S+@")
# The password in the configured URL, parsed as SQLAlchemy does: everything between the first `:`
# after the user name and the next `@`, whitespace included.
_DATABASE_URL_PASSWORD = re.compile(r"[\w+]+://[^:/]*:([^@]*)@")


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: list[str], *, as_json: bool, personal: Redactor | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self._personal = personal or Redactor()
        # each secret as given and as Python's repr writes it (a KeyError's message, a `%r`)
        spelled = {form for s in secrets for form in (s, repr(s)[1:-1])}
        self._secrets = sorted((s for s in spelled if len(s) >= 4), key=len, reverse=True)
        # Each secret as it reads inside a JSON string (`"`, `\` and control characters escaped), found
        # only where an escape starts: the escapes are matched whole, so a secret cannot match from
        # the middle of one (a secret "nabc" in the `\nabc` of a newline then "abc") and break the line.
        encoded = sorted({json.dumps(s, ensure_ascii=False)[1:-1] for s in self._secrets}, key=len, reverse=True)
        self._in_json = re.compile("|".join([*map(re.escape, encoded), r"(?P<escape>\\u[0-9a-fA-F]{4}|\\.)"]))
        self._as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if not self._as_json:
            return self.redact(super().format(record))
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": self.redact(record.getMessage())}
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        encoded = self._in_json.sub(lambda m: m.group() if m.group("escape") else REDACTED,
                                    json.dumps(line, ensure_ascii=False))
        return self._shapes(encoded)  # a second guard: the values were redacted before encoding

    def redact(self, text: str) -> str:
        for secret in self._secrets:  # first: a secret may look like a personal detail (a URL, a number)
            text = text.replace(secret, REDACTED)
        text = self._personal.text(text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return self._shapes(text)

    @staticmethod
    def _shapes(text: str) -> str:
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
        return _TOKEN_SHAPES.sub(REDACTED, text)


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
              settings.openai_api_key]
    found = [v.get_secret_value() for v in values if v is not None]
    password = _DATABASE_URL_PASSWORD.match(settings.database_url)
    return found + (_spellings(password.group(1)) if password else [])


def _spellings(password: str) -> list[str]:
    """The URL's password as written there (usually percent-encoded), decoded (as a driver's error
    may quote it), and encoded the ways a URL is rendered again (SQLAlchemy keeps spaces and `+`)."""
    plain = unquote(password)
    return [password, plain, quote(plain, safe=""), quote(plain, safe=" +"), quote_plus(plain)]


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets_of(settings), as_json=settings.log_format == "json",
                                            personal=redactor_of(settings)))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
