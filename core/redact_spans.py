"""The normalised view of a text that core/redact.py's detectors read, and the spans they found in it, put
back onto the original text.

The view is Unicode NFKC, character by character (full-width digits and letters, the ideographic
space and other compatibility forms become their plain forms), with other scripts' decimal digits
as ASCII ones, dash-like characters as `-`, and invisible format characters (zero-width spaces, soft
hyphens, byte order marks) dropped. Each view character remembers which original character it came
from, so a span found in the view replaces exactly the characters the customer wrote there.

A found span is blanked in the view with a filler no detector reads as part of a detail, so a later
detector never looks at it again; `apply` then replaces each span of the original text with its
placeholder.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from re import Match

FILLER = "\ufffc"  # OBJECT REPLACEMENT CHARACTER: neither a word character, a digit, a space nor punctuation
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")


def _plain(char: str) -> str:
    """One original character as the view has it."""
    if char in _DASHES:
        return "-"
    category = unicodedata.category(char)
    if category == "Cf":
        return ""
    if category == "Nd":
        return str(unicodedata.decimal(char))
    return unicodedata.normalize("NFKC", char)


class Findings:
    """A text's normalised view, and the details found in it so far."""

    def __init__(self, text: str) -> None:
        self.original = text
        if text.isascii():
            self.view, self._origin = text, None
        else:
            pieces: list[str] = []
            origin: list[int] = []
            for i, char in enumerate(text):
                plain = char if char.isascii() else _plain(char)
                pieces.append(plain)
                origin.extend([i] * len(plain))
            self.view, self._origin = "".join(pieces), origin
        self._spans: dict[tuple[int, int], str] = {}  # view span -> placeholder

    def mark(self, start: int, end: int, placeholder: str) -> bool:
        """Records a detail at view[start:end]; a span overlapping one found earlier is left unless it holds
        that one whole (a Slack link around an admin's order number is one link)."""
        if start >= end:
            return False
        inside = [span for span in self._spans if start <= span[0] and span[1] <= end]
        if any(s < end and start < e for s, e in self._spans if (s, e) not in inside):
            return False
        for span in inside:
            del self._spans[span]
        self._spans[(start, end)] = placeholder
        self.view = self.view[:start] + FILLER * (end - start) + self.view[end:]
        return True

    def mark_all(self, matches: Iterable[Match[str]], placeholder: str | Callable[[Match[str]], str | None]) -> None:
        """Each match as a detail; a callable placeholder may say None: not one."""
        for match in list(matches):
            found = placeholder if isinstance(placeholder, str) else placeholder(match)
            if found is not None:
                self.mark(match.start(), match.end(), found)

    def apply(self) -> str:
        """The original text, each found span replaced by its placeholder."""
        if not self._spans:
            return self.original
        pieces: list[str] = []
        at = 0
        for (start, end), placeholder in sorted(self._spans.items()):
            first, last = self._to_original(start, end)
            pieces += [self.original[at:first], placeholder]
            at = last
        pieces.append(self.original[at:])
        return "".join(pieces)

    def _to_original(self, start: int, end: int) -> tuple[int, int]:
        if self._origin is None:
            return start, end
        return self._origin[start], self._origin[end - 1] + 1
