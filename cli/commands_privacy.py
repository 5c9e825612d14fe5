"""`forget --user U | --message PERMALINK|TS` and `export --user U`: a customer's right to be forgotten and to
see what is held about them."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from cli import forget_verify
from cli.compose import open_context, slack_web_client
from cli.output import UserError, emit


def register(sub: Any) -> None:
    p = sub.add_parser("forget", help="delete a customer's (or one message's) texts, labels, examples, cached "
                                      "baseline answers and the bot's posts about them; keep a content-free record")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="U", help="a Slack user id: every message they wrote")
    which.add_argument("--message", metavar="PERMALINK|TS", help="one message: its permalink, or its ts")
    p.add_argument("--channel", help="the message's channel id, when --message is a bare ts found in several")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--verify", action="store_true",
                   help="then search every place the product writes for the forgotten texts' words and details, "
                        "and list the places that still hold any (exit code 1 if one does)")
    p.set_defaults(handler=forget)


def forget(args: argparse.Namespace) -> int:
    from bot.forgetting import SlackSide, forget_message, forget_user
    from store.forget import messages_at, parse_permalink

    ctx = open_context()
    client = SlackSide(slack_web_client(ctx), alert_channel=ctx.settings.alert_channel, stop_when_unreachable=True)
    by = f"cli:{getpass.getuser()}"
    target = forget_verify.collect(ctx, user=args.user.strip() if args.user else None, **_place(args)) \
        if args.verify else None
    if args.user:
        outcome = forget_user(ctx.sessions, client, args.user.strip(), requested_by=by)
    else:
        place = parse_permalink(args.message)
        channel, ts = place if place else (args.channel, args.message.strip())
        with ctx.sessions() as session:
            found = messages_at(session, ts=ts, channel=channel)
        if not found:
            raise UserError(f"no stored message at {args.message} (a permalink, or a ts the bot routed)")
        if len({m.channel for m in found}) > 1:
            raise UserError(f"messages at ts {ts} in several channels: give its permalink or --channel")
        outcome = forget_message(ctx.sessions, client, ts=found[0].ts, channel=found[0].channel, requested_by=by)
    rows = ", ".join(f"{n} {name}" for name, n in sorted(outcome.rows.items())) or "nothing was stored"
    lines = [f"forgotten: {rows}; {outcome.posts_deleted} of the bot's posts deleted in Slack"]
    if outcome.posts_pending:
        owed = len(outcome.posts_pending)
        lines.append(f"{owed} Slack post{'' if owed == 1 else 's'} still to delete: the bot retries them "
                     f"({'; '.join(outcome.posts_pending)})")
    if outcome.trained_models:
        lines.append("models trained on this data: " + ", ".join(map(str, outcome.trained_models))
                     + "; the next run trains from the base model without it")
    if target is None:
        emit(args.json, outcome.to_dict(), "\n".join(lines))
        return 0
    proof = forget_verify.prove(ctx, target)
    emit(args.json, outcome.to_dict() | {"erasure_proof": proof.to_dict()}, "\n".join([*lines, proof.text()]))
    return 1 if proof.found else 0


def _place(args: argparse.Namespace) -> dict[str, str | None]:
    """--message's channel and ts (or none, for --user)."""
    if not args.message:
        return {}
    from store.forget import parse_permalink

    place = parse_permalink(args.message)
    channel, ts = place if place else (args.channel, args.message.strip())
    return {"channel": channel, "ts": ts}


def export_user(user: str) -> int:
    from store.forget import export_user as rows_about

    ctx = open_context()
    with ctx.sessions() as session:
        sys.stdout.write(json.dumps(rows_about(session, user.strip()), indent=2, ensure_ascii=False) + "\n")
    return 0

