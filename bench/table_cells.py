"""Markdown tables and their cells, for the renderers of `python -m bench.tables`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [list(header), ["---"] * len(header), *(list(row) for row in rows)]
    return "\n".join("|" + "|".join(f" {cell} " if cell else " " for cell in line) + "|" for line in lines)


def fixed(value: float, digits: int = 0) -> str:
    """`value` with `digits` decimals and thousands separators."""
    return f"{value:,.{digits}f}"


def percent(share: float, digits: int = 1) -> str:
    """A share (0.918) as a percentage without its sign (91.8)."""
    return fixed(share * 100, digits)


def bold(text: str, when: bool = True) -> str:
    return f"**{text}**" if when else text


def counted(n: int, noun: str) -> str:
    """"five departments": the count in words up to ten."""
    return f"{NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else f'{n:,}'} {noun}"
