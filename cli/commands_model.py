"""Commands over the model: train, classify, models (`eval` is in commands_eval)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cli.compose import open_context, router_for, run_options, trainer_deps
from cli.output import emit
from core.redact import stored_text


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="one retraining run now: train, evaluate on the holdout, promote or not")
    p.add_argument("--epochs", type=float, help="train exactly this many epochs (default: at least 3, and 240 steps)")
    p.add_argument("--learning-rate", type=float, help="override the default learning rate")
    p.add_argument("--json", action="store_true", help="print one JSON object (the run's report)")
    p.add_argument("--alternatives", choices=["all", "fast", "none"], default="all",
                   help="the cheap alternatives reported beside the router: all (default), fast (no fine-tuned "
                        "encoder, which takes minutes on a CPU) or none")
    p.set_defaults(handler=train)

    p = sub.add_parser("classify", help="route one text with the active model")
    p.add_argument("text")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=classify)

    p = sub.add_parser("models", help="the adapter registry; `models promote ID`, `models rollback`, "
                                      "`models approve ID`, `models reject ID`")
    p.add_argument("action", nargs="?", choices=["promote", "rollback", "approve", "reject"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=models)


def train(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import replace

    from trainer.alternatives import AlternativeSet
    from trainer.config import TrainConfig
    from trainer.pipeline import run_training
    from trainer.report_text import report_lines

    ctx = open_context()
    config = TrainConfig()
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs, min_steps=0)  # exactly the epochs asked for
    if args.learning_rate is not None:
        config = replace(config, learning_rate=args.learning_rate)
    report = run_training(trainer_deps(ctx), run_options(ctx.settings, config=config, trigger="cli",
                                                         progress=sys.stderr.isatty() or not args.json,
                                                         alternatives=AlternativeSet(args.alternatives)))
    emit(args.json, report.to_json(), "\n".join(report_lines(report)))
    return 0


def classify(args: argparse.Namespace) -> int:
    ctx = open_context()
    _, router = router_for(ctx, None)
    started = time.perf_counter()
    result = router.classify(stored_text(ctx.settings).text(args.text))
    payload = {**result.to_dict(), "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    text = (f"none of these: out of scope ({result.out_of_scope:.0%}; likeliest department "
            f"{result.department} at {result.confidence:.0%})" if result.none_of_these
            else f"{result.department} ({result.confidence:.0%})")
    emit(args.json, payload, text)
    return 0


def models(args: argparse.Namespace) -> int:
    from classifier.routing.adapters import check_adapter_path
    from cli.output import UserError
    from store.registry import list_models, promote_checked, rollback_checked

    ctx = open_context()
    if args.action == "promote":
        if args.id is None:
            raise UserError("models promote needs a model ID")
        model = promote_checked(ctx.sessions, model_id=args.id, by="admin (cli)", check=check_adapter_path)
        emit(args.json, {"active_model": model.id}, f"model {model.id} is now active")
        return 0
    if args.action in ("approve", "reject"):
        return decide_candidate(ctx, args)
    if args.action == "rollback":
        model = rollback_checked(ctx.sessions, by="admin (cli)", check=check_adapter_path)
        emit(args.json, {"active_model": model.id}, f"rolled back: model {model.id} is active again")
        return 0
    with ctx.sessions() as session:
        rows = [{"id": m.id, "status": m.status.value, "macro_f1": m.metrics.get("macro_f1"),
                 "accuracy": m.metrics.get("accuracy"), "n": m.metrics.get("n"), "base_model": m.base_model,
                 "adapter": m.adapter_path, "parent": m.parent_id, "created_at": m.created_at,
                 "promoted_at": m.promoted_at, "labels": m.labels} for m in list_models(session)]
    text = "\n".join(f"{r['id']:>4}  {r['status']:<9} macro-F1 {r['macro_f1'] or 0:.3f}  {r['adapter']}"
                     for r in rows) or "no models yet: run `switchboard train`"
    emit(args.json, {"models": rows}, text)
    return 0


def decide_candidate(ctx: Any, args: argparse.Namespace) -> int:
    """An admin's decision on the candidate in shadow or waiting for approval (`models approve|reject ID`)."""
    from classifier.routing.adapters import check_adapter_path
    from cli.output import UserError
    from store.db import transaction
    from store.shadow import decide_by_admin

    if args.id is None:
        raise UserError(f"models {args.action} needs a model ID (see `switchboard models`)")
    approve = args.action == "approve"
    with transaction(ctx.sessions) as session:
        promoted = decide_by_admin(session, model_id=args.id, approve=approve, by="admin (cli)",
                                   check=check_adapter_path if approve else None).promoted
    text = (f"model {args.id} is now active" if promoted else
            f"model {args.id} approved, but the active model changed since its run: not promoted" if approve
            else f"model {args.id} rejected: the active model stays")
    emit(args.json, {"model": args.id, "promoted": promoted}, text)
    return 0
