"""What a forgotten text leaves to look for: its personal details as written and its rarer words.

The erasure proof (store/erasure_proof.py) cannot search for the text itself: a text is stored
redacted, normalised, quoted in Slack's markup or inside a JSON payload, and a part of it is as
telling as the whole. So each text is reduced, before it is forgotten, to traces:

- the details the redactor finds (e-mail addresses, phone numbers, card numbers, IBANs, URLs), each
  as written and, for numbers, as its bare digits and letters;
- its words of five characters or more that say something about this customer: not a department's
  name, not a word of a text the store keeps (another customer's, an imported example), not a word
  the product writes itself (its tables' and columns' names, its run reports, its records), and not a
  word of the files every model folder carries whatever it was trained on (a tokenizer's vocabulary,
  the adapter's configuration and prompt): those are everywhere, and finding them proves nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.redact import CARD, EMAIL, IBAN, PHONE, URL, Redactor

WORD_MIN = 5
KINDS = {EMAIL: "e-mail", PHONE: "phone number", CARD: "card number", IBAN: "IBAN", URL: "URL"}
WORD = "word"
# Files a model folder holds whatever it was trained on: their words are no customer's.
BACKGROUND_FILES = frozenset({"tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer_config.json",
                              "special_tokens_map.json", "added_tokens.json", "config.json", "generation_config.json",
                              "adapter_config.json", "switchboard.json"})
_WORDS = re.compile(r"\w+")
_PLACEHOLDERS = re.compile("(" + "|".join(map(re.escape, KINDS)) + ")")
_COMPACT = re.compile(r"[\s.\-()/]+")


@dataclass(frozen=True)
class Trace:
    kind: str  # "e-mail", "phone number", "card number", "IBAN", "URL" or "word"
    forms: tuple[str, ...]  # lower case: as written, compacted, and as JSON escapes it


def _forms(*written: str) -> tuple[str, ...]:
    found: list[str] = []
    for form in written:
        form = form.strip().lower()
        for variant in (form, json.dumps(form)[1:-1]):
            if len(variant) >= 4 and variant not in found:
                found.append(variant)
    return tuple(found)


def words(text: str) -> set[str]:
    return {w for w in _WORDS.findall(unicodedata.normalize("NFKC", text).casefold()) if len(w) >= WORD_MIN}


def details(text: str) -> list[Trace]:
    """The personal details the redactor finds in `text`, each as written: what each placeholder replaced,
    found between the unchanged pieces around it."""
    parts = _PLACEHOLDERS.split(Redactor().text(text))
    found, cursor = [], 0
    for i, part in enumerate(parts):
        if part not in KINDS:
            at = text.find(part, cursor)
            cursor = cursor if at < 0 else at + len(part)
            continue
        end = _end_of(text, part, cursor, parts[i + 1] if i + 1 < len(parts) else "", last=i + 2 >= len(parts))
        if end > cursor:
            written = text[cursor:end]
            compact = _COMPACT.sub("", written) if part in (PHONE, CARD, IBAN) else written
            found.append(Trace(KINDS[part], _forms(written, compact)))
            cursor = end
    return found


def _end_of(text: str, placeholder: str, start: int, after: str, *, last: bool) -> int:
    """Where the detail that `placeholder` replaced from `start` ends: before the unchanged piece `after` (the
    first place it follows a whole detail, when it is as short as the space between two), or -1."""
    if not after:
        return len(text) if last else -1
    ends = [m.start() for m in re.finditer(re.escape(after), text[start:])]
    for end in ends:
        if Redactor().text(text[start:start + end]) == placeholder:
            return start + end
    return start + ends[0] if ends else -1


def background_words(home: Path) -> set[str]:
    """The words of the files every model folder under `home` holds whatever it was trained on."""
    found: set[str] = set()
    for file in home.rglob("*") if home.is_dir() else []:
        if file.name in BACKGROUND_FILES and file.is_file():
            found |= words(file.read_text(errors="replace"))
    return found


def traces_of(texts: Iterable[str], *, kept_texts: Iterable[str], departments: Iterable[str],
              home: Path, known: Iterable[str] = ()) -> list[Trace]:
    """The traces of `texts` (to be forgotten) that no kept text, department name, model file or `known` word
    (the product's own: its tables' names, its reports) explains."""
    texts = [t for t in texts if t]
    if not texts:
        return []
    common = background_words(home) | {w for name in departments for w in words(name)} | set(known)
    for kept in kept_texts:
        common |= words(kept)
    traces: list[Trace] = []
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        for trace in details(text):
            if trace.forms not in seen:
                seen.add(trace.forms)
                traces.append(trace)
        for word in sorted(words(text) - common):
            if not word.isdigit() and (forms := _forms(word)) not in seen:
                seen.add(forms)
                traces.append(Trace(WORD, forms))
    return traces
