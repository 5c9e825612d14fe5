"""Commands over the labelled data: import, departments, export, status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.compose import open_context
from cli.output import emit
from core.redact import stored_text


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="add labelled examples from a CSV, JSON or JSONL file")
    p.add_argument("file", type=Path)
    p.add_argument("--label-map", type=Path, help="JSON object mapping raw labels to departments")
    p.add_argument("--out-of-scope-label", metavar="NAME",
                   help="rows labelled NAME belong to no department: stored as out-of-scope examples")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=import_file)

    p = sub.add_parser("departments", help="list departments, or `departments add NAME` to add or update one")
    p.add_argument("action", nargs="?", choices=["add"], help="add or update a department")
    p.add_argument("name", nargs="?")
    p.add_argument("--emoji", help="reaction name agents use to relabel (no colons)")
    p.add_argument("--channel", help="Slack channel id where routed queries go")
    p.add_argument("--description", help="what the department handles (shown to the baseline)")
    p.add_argument("--customer-reply", metavar="TEMPLATE",
                   help="what the customer's thread says when this department has the question ({team} names it; "
                        "`off` posts nothing); default SWITCHBOARD_CUSTOMER_REPLY")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=departments)

    p = sub.add_parser("export", help="print every labelled example as JSON lines, or with --user every row "
                                      "held about one customer")
    p.add_argument("--format", choices=["jsonl"], default="jsonl")
    p.add_argument("--user", metavar="U", help="a Slack user id: their messages, texts, verdicts and labels (JSON)")
    p.set_defaults(handler=export)

    p = sub.add_parser("status", help="active model, example counts, training state, last run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=status)


def import_file(args: argparse.Namespace) -> int:
    from store.db import transaction
    from store.examples import add_examples
    from store.formats import read_label_map, read_labelled_file

    label_map = read_label_map(args.label_map) if args.label_map else None
    parsed = read_labelled_file(args.file, label_map=label_map, out_of_scope_label=args.out_of_scope_label)
    ctx = open_context()
    redact = stored_text(ctx.settings)
    with transaction(ctx.sessions) as session:
        result = add_examples(session, examples=[(redact.text(text), label) for text, label in parsed.examples])
    rejected = [{"line": r.line, "reason": r.reason} for r in parsed.rejected]
    payload = {"file": str(args.file), "format": parsed.format, "added": result.added,
               "duplicates": result.duplicates, "conflicting_duplicates": result.conflicting_duplicates,
               "rejected": len(rejected), "rejections": rejected, "new_departments": result.new_departments,
               "out_of_scope": parsed.out_of_scope}
    lines = [f"{args.file} ({parsed.format}): added {result.added}, duplicates skipped {result.duplicates}"
             + (f" ({result.conflicting_duplicates} with a different label)" if result.conflicting_duplicates else "")
             + f", rejected {len(rejected)}"
             + (f"; {parsed.out_of_scope} of the rows read are out of scope" if parsed.out_of_scope else "")]
    lines += [f"  line {r['line']}: {r['reason']}" for r in rejected[:20]]
    if len(rejected) > 20:
        lines.append(f"  … and {len(rejected) - 20} more (--json lists them all)")
    if result.new_departments:
        lines.append(f"new departments: {', '.join(result.new_departments)}")
    emit(args.json, payload, "\n".join(lines))
    return 0


def departments(args: argparse.Namespace) -> int:
    from bot.reactions import CONFIRM
    from store.db import transaction
    from store.examples import department_split_counts, list_departments, upsert_department
    from store.tables import OUT_OF_SCOPE, Split

    ctx = open_context()
    if args.action == "add":
        if not args.name:
            raise _usage("departments add needs a NAME")
        with transaction(ctx.sessions) as session:
            dept = upsert_department(session, name=args.name, emoji=args.emoji, channel=args.channel,
                                     description=args.description, customer_reply=args.customer_reply,
                                     reserved_emoji=(CONFIRM, ctx.settings.out_of_scope_emoji))
            payload = _department_dict(dept, 0, 0)
        emit(args.json, payload, f"department {dept.name}: emoji {dept.emoji or '-'}, channel {dept.channel or '-'}")
        return 0
    with ctx.sessions() as session:
        counts = department_split_counts(session)
        rows = [_department_dict(d, counts[(d.name, Split.TRAIN)], counts[(d.name, Split.HOLDOUT)])
                for d in list_departments(session)]
    text = "\n".join(f"{r['name']:<28} :{r['emoji'] or '-'}:  {r['channel'] or '-':<12} "
                     f"train {r['train']:>5}  holdout {r['holdout']:>4}" for r in rows) or "no departments yet"
    none = {"train": counts[(OUT_OF_SCOPE, Split.TRAIN)], "holdout": counts[(OUT_OF_SCOPE, Split.HOLDOUT)]}
    if none["train"] or none["holdout"]:
        text += (f"\n({OUT_OF_SCOPE}: out-of-scope examples, train {none['train']}, holdout {none['holdout']}; "
                 f"agents mark more with :{ctx.settings.out_of_scope_emoji}:)")
    emit(args.json, {"departments": rows, "out_of_scope": none}, text)
    return 0


def _department_dict(dept: Any, train: int, holdout: int) -> dict[str, Any]:
    return {"name": dept.name, "emoji": dept.emoji, "channel": dept.channel, "description": dept.description,
            "customer_reply": dept.customer_reply, "train": train, "holdout": holdout}


def export(args: argparse.Namespace) -> int:
    from store.examples import labelled_examples

    if args.user:
        from cli.commands_privacy import export_user

        return export_user(args.user)

    ctx = open_context()
    with ctx.sessions() as session:
        for e in labelled_examples(session):
            sys.stdout.write(json.dumps({"text": e.text, "label": e.label, "source": e.source.value,
                                         "split": e.split.value, "author": e.author,
                                         "created_at": e.labelled_at.isoformat()}) + "\n")
    return 0


def status(args: argparse.Namespace) -> int:
    from reports.costs import Pricing
    from store.overview import status, status_lines

    ctx = open_context()
    with ctx.sessions() as session:
        payload = status(session, pricing=Pricing.of(ctx.settings))
    emit(args.json, payload, "\n".join(status_lines(payload)))
    return 0


def _usage(message: str) -> Exception:
    from cli.output import UserError

    return UserError(message)
