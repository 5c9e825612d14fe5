"""`switchboard labels [--text T] [--department D]`: each label's history, newest first."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from cli.compose import open_context
from cli.output import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("labels", help="each label's history: who, when, source, in force, superseded or withdrawn")
    p.add_argument("--text", help="only messages containing this text (case-insensitive)")
    p.add_argument("--department", help="only labels naming this department")
    p.add_argument("--limit", type=int, default=200, help="newest N labels (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=labels)


def labels(args: argparse.Namespace) -> int:
    from store.label_history import label_history

    ctx = open_context()
    with ctx.sessions() as session:
        events = label_history(session, text=args.text, department=args.department, limit=max(args.limit, 1))
    lines = [f"{e.created_at:%Y-%m-%d %H:%M} {e.department!r:<20} {e.source:<8} {e.author or '-':<12} {e.state:<10}"
             f" q{e.query_id}: {e.text[:60]}" for e in events]
    emit(args.json, {"labels": [asdict(e) for e in events]}, "\n".join(lines) or "No labels match.")
    return 0
