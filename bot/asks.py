"""Which routed messages the bot asks agents about: the ones it is least sure of, at a capped rate.

Audits sample traffic at random, so they can judge models; questions go where an answer teaches
the most, the messages whose top two departments were closest, so their answers only ever train
(`LabelSource.ASKED`). A routed message is asked about when its margin is among the lowest
`SWITCHBOARD_ASK_RATE` of the recent routed messages' margins, unless the bot already asked about
that share of them lately. A message picked for audit is never also asked about.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_HISTORY = 20  # recent margins needed before "among the lowest" means anything


def should_ask(this_margin: float, recent_margins: Sequence[float], asked_recently: int, rate: float) -> bool:
    """`recent_margins`: the last routed messages' margins (this one not among them); `asked_recently`:
    how many of those the bot asked about."""
    if rate <= 0 or len(recent_margins) < MIN_HISTORY or asked_recently >= rate * len(recent_margins):
        return False
    at_or_below = sum(1 for m in recent_margins if m <= this_margin)  # ties (the baseline's 1.0s) never qualify
    return at_or_below < rate * len(recent_margins)
