"""How sure a verdict is, as the triage rule and the bot's questions read it: the gap between the top two
departments' probabilities."""

from __future__ import annotations

from collections.abc import Mapping


def top_two_margin(scores: Mapping[str, float]) -> float:
    ranked = sorted(scores.values(), reverse=True)
    return (ranked[0] if ranked else 0.0) - (ranked[1] if len(ranked) > 1 else 0.0)
