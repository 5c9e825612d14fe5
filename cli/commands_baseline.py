"""`switchboard baseline reset`: re-pick the baseline's few-shot examples on purpose."""

from __future__ import annotations

import argparse
from typing import Any

from cli.compose import open_context
from cli.output import emit


def register(sub: Any) -> None:
    p = sub.add_parser("baseline", help="the GPT-4o baseline's kept few-shot examples; `baseline reset` re-picks them")
    p.add_argument("action", choices=["reset"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=baseline)


def baseline(args: argparse.Namespace) -> int:
    from store.db import transaction
    from store.shots import reset_shots

    ctx = open_context()
    with transaction(ctx.sessions) as session:
        removed = reset_shots(session)
    emit(args.json, {"shots_removed": removed},
         f"forgot {removed} few-shot examples; the next run picks new ones from today's training examples. "
         "The baseline's score is comparable only from then on, and its answers are asked for again once.")
    return 0
