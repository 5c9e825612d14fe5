"""Personal details replaced by typed placeholders before a text leaves (the baseline, the logs) or, with
`SWITCHBOARD_REDACT=baseline+store`, before it is stored, trained on or classified.

What is found, in this order (an earlier finding is never looked at again by a later detector):

1. the admin's own patterns (`SWITCHBOARD_REDACT_PATTERNS`, `NAME=regex;NAME=regex`): an order or
   account number shaped like a phone number is theirs, not a phone's;
2. Slack's links (`<mailto:…|…>`, `<tel:…|…>`, `<https://…|…>`), as a whole;
3. e-mail addresses and URLs, by pattern;
4. payment card numbers: 13 to 19 digits, spaces or dashes allowed, kept only if a card network
   issues that prefix and length and the Luhn check passes (python-stdnum's `luhn`);
5. IBANs: a country code, two check digits and 11 to 30 letters or digits, kept only if the
   ISO 13616 checksum passes (python-stdnum's `iban`, which also knows each country's length);
6. phone numbers: Google's libphonenumber (the `phonenumbers` port) with leniency VALID, which
   knows every country's numbering plan: international forms anywhere, national forms for the
   regions in `SWITCHBOARD_REDACT_REGIONS`. A digit string that is no valid number is left alone.

Names and free-form postal addresses are not found: no pattern tells them from ordinary words.
The libraries are used rather than hand-written validators because numbering plans and IBAN
lengths change and these two are kept up to date (libphonenumber's metadata ships monthly).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import SwitchboardError

if TYPE_CHECKING:
    from core.settings import Settings

EMAIL, PHONE, CARD, IBAN, URL = "<EMAIL>", "<PHONE>", "<CARD>", "<IBAN>", "<URL>"
MODES = ("baseline", "baseline+store", "off")

_SLACK_LINK = re.compile(r"<(mailto:|tel:|https?://)[^<>|\s]*(?:\|[^<>]*)?>", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class RedactionError(SwitchboardError, ValueError):
    """A pattern the admin gave cannot be used."""


def parse_patterns(spec: str | None) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """`ORDER=ORD-\\d{6};ACCOUNT=\\bAC\\d{8}\\b` to [(placeholder, pattern)]; one-line errors for bad input."""
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for part in (spec or "").split(";"):
        if not part.strip():
            continue
        name, sep, regex = part.partition("=")
        name = name.strip().upper()
        if not sep or not _NAME.match(name) or not regex.strip():
            raise RedactionError(f"SWITCHBOARD_REDACT_PATTERNS: {part.strip()!r} is not NAME=regex")
        try:
            patterns.append((f"<{name}>", re.compile(regex.strip())))
        except re.error as exc:
            raise RedactionError(f"SWITCHBOARD_REDACT_PATTERNS: {name}'s regex does not compile: {exc}") from exc
    return tuple(patterns)


@dataclass(frozen=True)
class Redactor:
    """`redactor.text(s)`: `s` with every detail found replaced; `off` returns it unchanged."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()
    regions: tuple[str, ...] = ("US",)
    enabled: bool = True

    @classmethod
    def off(cls) -> Redactor:
        return cls(enabled=False)

    def text(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        for placeholder, pattern in self.patterns:
            text = pattern.sub(placeholder, text)
        text = _SLACK_LINK.sub(_slack_link_placeholder, text)
        text = _EMAIL.sub(EMAIL, text)
        text = _URL.sub(URL, text)
        text = _CARD.sub(lambda m: CARD if _is_card(m.group()) else m.group(), text)
        text = _IBAN.sub(_iban_placeholder, text)
        return _phones(text, self.regions)

    def texts(self, texts: Iterable[str]) -> list[str]:
        return [self.text(t) for t in texts]

    def __call__(self, text: str) -> str:
        return self.text(text)


def _slack_link_placeholder(match: re.Match[str]) -> str:
    scheme = match.group(1).lower()
    return EMAIL if scheme == "mailto:" else PHONE if scheme == "tel:" else URL


# Issuer prefixes and lengths of the networks a customer's card is likely on (ISO/IEC 7812 IINs): a
# Luhn-valid number alone is one order number in ten (Bitext's order 113542617735902 passes it).
_NETWORKS = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720)"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6011|65|64[4-9]"), (16, 19)),  # Discover
    (re.compile(r"35(2[89]|[3-8]\d)"), (16, 19)),  # JCB
    (re.compile(r"3(0[0-5]|[68])"), (14, 16, 19)),  # Diners Club
    (re.compile(r"62"), (16, 17, 18, 19)),  # UnionPay
    (re.compile(r"5[06-9]|6"), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro
)


def _is_card(candidate: str) -> bool:
    from stdnum import luhn

    digits = re.sub(r"[ -]", "", candidate)
    return (any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _NETWORKS)
            and luhn.is_valid(digits))


def _iban_placeholder(match: re.Match[str]) -> str:
    """The longest valid IBAN the match starts with (a following word in capitals may have joined it)."""
    from stdnum import iban

    candidate = match.group()
    while True:
        if iban.is_valid(candidate.replace(" ", "")):
            return IBAN + match.group()[len(candidate):]
        if " " not in candidate:
            return match.group()
        candidate = candidate.rsplit(" ", 1)[0]


def _phones(text: str, regions: tuple[str, ...]) -> str:
    import phonenumbers

    spans: set[tuple[int, int]] = set()
    for region in regions or (None,):
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            spans.add((match.start, match.end))
    for start, end in sorted(_outermost(spans), reverse=True):
        text = text[:start] + PHONE + text[end:]
    return text


def _outermost(spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            continue
        kept.append((start, end))
    return kept


def check_regions(regions: str | None) -> tuple[str, ...]:
    import phonenumbers

    names = tuple(r.strip().upper() for r in (regions or "US").split(",") if r.strip())
    unknown = [r for r in names if r not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise RedactionError(f"SWITCHBOARD_REDACT_REGIONS: unknown region {', '.join(unknown)} "
                             "(two-letter ISO 3166 codes, e.g. US,GB)")
    return names


def make_redactor(mode: str, patterns: str | None = None, regions: str | None = None) -> Redactor:
    if mode not in MODES:
        raise RedactionError(f"SWITCHBOARD_REDACT must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return Redactor.off()
    return Redactor(patterns=parse_patterns(patterns), regions=check_regions(regions))


@functools.lru_cache(maxsize=8)
def _cached(mode: str, patterns: str | None, regions: str) -> Redactor:
    return make_redactor(mode, patterns, regions)


def redactor_of(settings: Settings) -> Redactor:
    """What leaves for the baseline and the logs: the built-in detectors and the admin's patterns, or nothing
    removed with `SWITCHBOARD_REDACT=off`."""
    return _cached(settings.redact, settings.redact_patterns, settings.redact_regions)


def stored_text(settings: Settings) -> Redactor:
    """What is stored, trained on and classified: redacted only with `SWITCHBOARD_REDACT=baseline+store`."""
    return redactor_of(settings) if settings.redact == "baseline+store" else Redactor.off()

