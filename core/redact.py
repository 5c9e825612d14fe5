"""Personal details replaced by typed placeholders before a text leaves (the baseline, the logs) or, with
`SWITCHBOARD_REDACT=baseline+store`, before it is stored, trained on or classified. Payment card numbers
are masked in the store whatever the mode (`stored_text`), unless `SWITCHBOARD_STORE_CARD_NUMBERS=true`.

The detectors read a normalised copy of the text: Unicode NFKC (full-width digits and letters, the
ideographic space and other compatibility forms become their plain forms), other scripts' decimal
digits as ASCII ones, dash-like characters as `-`, and invisible format characters (zero-width
spaces, soft hyphens) dropped. Each detail found there replaces its span of the original text, so
what no detector finds is returned exactly as written.

What is found, in this order (an earlier finding is never looked at again by a later detector):

1. the admin's own patterns (`SWITCHBOARD_REDACT_PATTERNS`, `NAME=regex;NAME=regex`): an order or
   account number shaped like a phone number is theirs, not a phone's;
2. Slack's links (`<mailto:…|…>`, `<tel:…|…>`, `<https://…|…>`), as a whole;
3. e-mail addresses and URLs, by pattern;
4. IBANs, in capitals or not: a country code, two check digits and 11 to 30 letters or digits, kept
   only if the ISO 13616 checksum passes (python-stdnum's `iban`, which also knows each country's length);
5. payment card numbers: runs of digit groups separated by spaces, dots, dashes or line breaks (one
   group a line); the longest run of whole groups, from the left, that a card network issues (prefix
   and length) and that passes the Luhn check (python-stdnum's `luhn`) is a card;
6. phone numbers: Google's libphonenumber (the `phonenumbers` port) with leniency VALID, which
   knows every country's numbering plan: international forms anywhere, national forms for the
   regions in `SWITCHBOARD_REDACT_REGIONS` (default US and GB). A digit string that is no valid number
   is left alone.

Names and free-form postal addresses are not found: no pattern tells them from ordinary words.
The libraries are used rather than hand-written validators because numbering plans and IBAN
lengths change and these two are kept up to date (libphonenumber's metadata ships monthly).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import SwitchboardError
from core.redact_spans import FILLER, Findings

if TYPE_CHECKING:
    from core.settings import Settings

EMAIL, PHONE, CARD, IBAN, URL = "<EMAIL>", "<PHONE>", "<CARD>", "<IBAN>", "<URL>"
MODES = ("baseline", "baseline+store", "off")
KINDS = frozenset({EMAIL, PHONE, CARD, IBAN, URL})
DEFAULT_REGIONS = ("US", "GB")

_SLACK_LINK = re.compile(r"<(mailto:|tel:|https?://)[^<>|\s]*(?:\|[^<>]*)?>", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(rf"\b(?:https?://|www\.)[^\s<>\"'{FILLER}]+[^\s<>\"'.,;:!?){FILLER}]", re.IGNORECASE)
# Digit groups a card may be written in: separated by up to three spaces, dots or dashes, or line breaks
# (one group a line); never part of a longer word (a tracking code, a hash).
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9_])[0-9]+(?:(?:[ \t.\-]|\r?\n){1,3}[0-9]+)*(?![A-Za-z0-9_])")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_ANY_DIGIT = re.compile(r"[0-9]")
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
    regions: tuple[str, ...] = DEFAULT_REGIONS
    enabled: bool = True
    kinds: frozenset[str] = KINDS  # the built-in detectors that run

    @classmethod
    def off(cls) -> Redactor:
        return cls(enabled=False)

    @classmethod
    def cards(cls) -> Redactor:
        """Payment card numbers alone: what the store masks whatever `SWITCHBOARD_REDACT` says."""
        return cls(kinds=frozenset({CARD}))

    def text(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        found = Findings(text)
        for placeholder, pattern in self.patterns:
            found.mark_all(pattern.finditer(found.view), placeholder)
        if URL in self.kinds:
            found.mark_all(_SLACK_LINK.finditer(found.view), _slack_link_placeholder)
        if EMAIL in self.kinds:
            found.mark_all(_EMAIL.finditer(found.view), EMAIL)
        if URL in self.kinds:
            found.mark_all(_URL.finditer(found.view), URL)
        if _ANY_DIGIT.search(found.view):  # every detector below needs a digit; most messages have none
            if IBAN in self.kinds:
                _ibans(found)
            if CARD in self.kinds:
                for match in list(_DIGIT_RUN.finditer(found.view)):
                    _cards(found, match)
            if PHONE in self.kinds:
                _phones(found, self.regions)
        return found.apply()

    def texts(self, texts: Iterable[str]) -> list[str]:
        return [self.text(t) for t in texts]

    def in_payload(self, payload: Any) -> Any:
        """A copy of a JSON-like value (a Slack event) with every string under a `text` key redacted, at any
        depth: the message's text, the edited and previous message's, rich-text blocks' pieces."""
        if not self.enabled:
            return payload
        if isinstance(payload, dict):
            return {key: self.text(value) if key == "text" and isinstance(value, str) else self.in_payload(value)
                    for key, value in payload.items()}
        if isinstance(payload, list):
            return [self.in_payload(item) for item in payload]
        return payload

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


_SHORTEST_CARD, _LONGEST_CARD = 12, 19


def _is_card(digits: str) -> bool:
    from stdnum import luhn

    return (any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _NETWORKS)
            and luhn.is_valid(digits))


def _cards(found: Findings, run: re.Match[str]) -> None:
    """Marks the cards in a run of digit groups: from the left, the longest run of whole groups that is one."""
    groups = [g.group() for g in _DIGIT_GROUP.finditer(run.group())]
    starts = [g.start() for g in _DIGIT_GROUP.finditer(run.group())]
    at = 0
    while at < len(groups):
        ends, length = [], 0
        for end in range(at, len(groups)):
            length += len(groups[end])
            if length > _LONGEST_CARD:
                break
            if length >= _SHORTEST_CARD:
                ends.append(end)
        card = next((end for end in reversed(ends) if _is_card("".join(groups[at:end + 1]))), None)
        if card is None:
            at += 1
            continue
        found.mark(run.start() + starts[at], run.start() + starts[card] + len(groups[card]), CARD)
        at = card + 1


def _ibans(found: Findings) -> None:
    at = 0
    while match := _IBAN.search(found.view, at):
        length = _iban_end(match.group())
        if length is not None:
            found.mark(match.start(), match.start() + length, IBAN)
        at = match.start() + (length or 1)


def _iban_end(candidate: str) -> int | None:
    """The length of the longest valid IBAN `candidate` starts with (a following word may have joined it)."""
    from stdnum import iban

    while True:
        if iban.is_valid(candidate.replace(" ", "").upper()):
            return len(candidate)
        if " " not in candidate:
            return None
        candidate = candidate.rsplit(" ", 1)[0]


def _phones(found: Findings, regions: tuple[str, ...]) -> None:
    import phonenumbers

    spans: set[tuple[int, int]] = set()
    for region in regions or (None,):
        for match in phonenumbers.PhoneNumberMatcher(found.view, region, leniency=phonenumbers.Leniency.VALID):
            spans.add((match.start, match.end))
    for start, end in _outermost(spans):
        found.mark(start, end, PHONE)


def _outermost(spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            continue
        kept.append((start, end))
    return kept


def check_regions(regions: str | None) -> tuple[str, ...]:
    import phonenumbers

    names = tuple(r.strip().upper() for r in (regions or ",".join(DEFAULT_REGIONS)).split(",") if r.strip())
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
    """What is stored, trained on and classified: redacted with `SWITCHBOARD_REDACT=baseline+store`; else payment
    card numbers alone are masked (PCI DSS forbids storing them), unless `SWITCHBOARD_STORE_CARD_NUMBERS=true`."""
    if settings.redact == "baseline+store":
        return redactor_of(settings)
    return Redactor.off() if settings.store_card_numbers else _CARDS_ONLY


_CARDS_ONLY = Redactor.cards()

