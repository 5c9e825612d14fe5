"""The look-alike fold of a name: two names that fold alike could be mistaken for each other on screen.

The fold follows Unicode TR39's skeleton: NFKC with case folding first (so width, compatibility forms
and case do not count), then NFD, each character replaced by the prototype of its confusable set,
and NFD again. The confusable sets are Unicode's confusables.txt as the `confusable_homoglyphs`
package ships it. That package keeps each pair in both directions, so the prototype is recovered from
the shape of the sets: every set is one prototype and the characters that map to it, so the member
linked to all the others (or the one that is several characters, as "rn" for "m") is the prototype;
in a set of two single characters either may be, and the lower code point stands for both.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from functools import cache, lru_cache

_LRM = "\u200e"  # confusables.txt wraps right-to-left characters in its comments with it; not part of them


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character -> the string that stands for its set (absent: it stands for itself)."""
    from confusable_homoglyphs.confusables import confusables_data  # 900 KB of JSON: only when a name is checked

    linked: defaultdict[str, set[str]] = defaultdict(set)
    for char, homoglyphs in confusables_data.items():
        char = char.replace(_LRM, "")
        for homoglyph in homoglyphs:
            other = homoglyph["c"].replace(_LRM, "")
            if char and other and char != other:
                linked[char].add(other)
                linked[other].add(char)
    prototype: dict[str, str] = {}
    for char, others in linked.items():
        if len(char) != 1:
            continue  # only single characters are replaced; a longer string is at most a prototype
        if len(others) > 1:
            prototype[char] = char  # linked to several: the prototype of its set
            continue
        (other,) = others
        if len(linked[other]) > 1 or len(other) > 1:
            prototype[char] = other  # a member of a set whose prototype is `other`
        else:
            prototype[char] = min(char, other)  # a set of two single characters
    # A prototype of several characters is written in characters that may stand for a pair themselves:
    # spell it the way those characters are folded, so a typed "rn" and an "m" fold alike.
    for char, target in prototype.items():
        if len(target) > 1:
            prototype[char] = "".join(_single(prototype, c) for c in target)
    return prototype


def _single(prototype: dict[str, str], char: str) -> str:
    target = prototype.get(char, char)
    return target if len(target) == 1 else char


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """The text's look-alike fold: equal for "Billing", "billing", "ＢＩＬＬＩＮＧ" and "Bіlling" (Cyrillic і)."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    text = " ".join(text.split())
    prototype = _prototypes()
    skeleton = "".join(prototype.get(c, c) for c in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", skeleton)
