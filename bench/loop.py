"""The product's loop at its defaults, simulated on BANKING77's 8 departments through the real store,
bot decisions, trainer, baseline client and gate.

    python -m bench.loop --data ../shared/data/banking77                 # 80% of misroutes corrected
    python -m bench.loop --correct-rate 0.5 --out bench/results/loop-correct50.json
    python -m bench.loop --start 50 --out bench/results/loop-start50.json
    python -m bench.loop --resume                # goes on from the state saved after the last run
    python -m bench.loop --resume --sabotage-only   # the sabotaged candidates, on the saved state
    python -m bench.loop --resume --ablation        # each lever off, retrained on the saved state
    python -m bench.loop --report                   # only the JSON and PNG, from the saved state as it is

Starts from 5 imported examples per department and nothing else. Streams 3,000 unseen training
queries, 300 a simulated day, through the routing model: the few-shot baseline (a loopback
OpenAI-compatible server that answers correctly 85% of the time, from a fixed seeded table) until a
fine-tuned model beats it, then the active model. Each message gets the bot's triage rule, audit
draw (`SWITCHBOARD_AUDIT_RATE`) and question draw (`SWITCHBOARD_ASK_RATE`); simulated agents answer
every audit and question truthfully and correct each misroute or triaged message they see with
probability 0.8. A retrain runs whenever the default number of people's labels waits
(`SWITCHBOARD_RETRAIN_AFTER_LABELS`); it adds the implicit and distilled labels past the grace
window itself. After each run it records the routing model's accuracy on 600 official test queries,
labels by source, the gate's decision, the fold's loss curve and the run's wall time, and saves the
state (store, adapters, the simulation's position and random state) under `--state`. The sabotaged
candidates (bench/loop_trials.py) then go through the same gate on copies of the store.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.datasets import SHARED, banking77, sample_per_class
from bench.harness import RESULTS, load_result, save
from bench.loop_trials import LEVERS, SABOTAGE, ablation_run, inferred_label_quality, sabotaged_run
from bench.loop_world import SimulatedDeployment, open_store
from core.redact import Redactor
from core.settings import Settings
from fakes.openai_api import FakeOpenAI


def baseline_table(texts: list[tuple[str, str]], departments: list[str], accuracy: float,
                   seed: int) -> dict[str, str]:
    """Each text's fixed answer: right with probability `accuracy`, else another department at random. The
    baseline receives texts redacted (core/redact.py), so each answer is also kept under its redacted text."""
    rng = random.Random(seed)
    table, redact = {}, Redactor()
    for text, truth in texts:
        table[text] = truth if rng.random() < accuracy else rng.choice([d for d in departments if d != truth])
        table.setdefault(redact.text(text), table[text])
    return table


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "banking77")
    parser.add_argument("--start", type=int, default=5, help="imported examples per department")
    parser.add_argument("--stream", type=int, default=3000)
    parser.add_argument("--test", type=int, default=600, help="official test queries scored after each run")
    parser.add_argument("--baseline-accuracy", type=float, default=0.85)
    parser.add_argument("--correct-rate", type=float, default=0.8, help="chance an agent fixes a misroute they see")
    parser.add_argument("--retrain-after", type=int, help="labels between retrains (default: the product's)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="another product setting, e.g. implicit_weight=0.3 (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(".switchboard/cache"), help="converted base model")
    parser.add_argument("--out", type=Path, default=RESULTS / "loop-defaults.json")
    parser.add_argument("--state", type=Path, help="where the state is saved (default: .switchboard/loop/<out's name>)")
    parser.add_argument("--resume", action="store_true", help="go on from the saved state")
    parser.add_argument("--sabotage-only", action="store_true", help="only the sabotaged candidates, on the state")
    parser.add_argument("--sabotage", type=lambda v: v.split(","), default=list(SABOTAGE),
                        help=f"which sabotaged candidates, in this order (default: {','.join(SABOTAGE)})")
    parser.add_argument("--report", action="store_true", help="only write the JSON and PNG from the saved state")
    parser.add_argument("--ablation", action="store_true", help="only the lever ablation, on the state")
    args = parser.parse_args()
    if unknown := set(args.sabotage) - set(SABOTAGE):
        parser.error(f"unknown sabotage {', '.join(sorted(unknown))}: choose from {', '.join(SABOTAGE)}")
    args.state = args.state or Path(".switchboard/loop") / args.out.stem
    return args


def main() -> None:
    args = arguments()
    train_all, test_all = banking77(args.data, "departments")
    rng = random.Random(args.seed)
    rng.shuffle(train_all)
    start = sample_per_class(train_all, args.start, args.seed)
    started_texts = {t for t, _ in start}
    stream = [row for row in train_all if row[0] not in started_texts][: args.stream]
    test = random.Random(args.seed + 1).sample(test_all, args.test)
    departments = sorted({label for _, label in train_all})
    table = baseline_table(start + stream + test, departments, args.baseline_accuracy, args.seed + 2)

    home, saved_file = args.state / "home", args.state / "state.json"
    if args.resume or args.sabotage_only or args.ablation or args.report:
        state = json.loads(saved_file.read_text())
    else:
        if args.state.exists():
            sys.exit(f"error: {args.state} holds a saved loop: pass --resume, or remove it to start again")
        home.mkdir(parents=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        (home / "cache").symlink_to(args.cache.resolve())
        state = {"curve": [], "routing_log": [], "streamed": 0, "sabotage": {}, "ablation": {},
                 "baseline_requests": 0, "baseline_usage": {"prompt_tokens": 0, "completion_tokens": 0},
                 "seconds": 0.0}
    began = time.perf_counter()
    stop = Stopper()
    with FakeOpenAI(table) as fake:
        settings = Settings(SWITCHBOARD_HOME=home, OPENAI_API_KEY="sk-loopback", OPENAI_BASE_URL=fake.base_url)
        updates = {"retrain_after_labels": args.retrain_after} if args.retrain_after else {}
        updates |= {k: type(getattr(settings, k))(v) for k, v in (s.split("=", 1) for s in args.setting)}
        settings = settings.model_copy(update=updates)
        world = SimulatedDeployment(settings, open_store(home), rng=random.Random(args.seed + 3),
                                    correct_rate=args.correct_rate, test=test)

        def save() -> None:
            nonlocal began
            now = time.perf_counter()
            state.update(streamed=world.streamed, rng=world.rng.getstate(), routing_log=world.routing_log,
                         shadow_log=world.shadow_log,
                         seen=dict(world.seen), baseline_requests=state["baseline_requests"] + len(fake.requests),
                         seconds=round(state["seconds"] + now - began, 1))
            began = now
            fake.requests.clear()
            scratch = saved_file.with_suffix(".tmp")
            scratch.write_text(json.dumps(state, default=str))
            scratch.replace(saved_file)

        def retrain() -> None:
            state["curve"].append(world.retrain(world.streamed))
            print(json.dumps(state["curve"][-1], default=str), flush=True)
            save()

        if state["curve"]:
            world.streamed, world.routing_log = state["streamed"], state["routing_log"]
            world.shadow_log = state.get("shadow_log", [])
            world.seen.update(state.get("seen", {}))
            version, internal, gauss = state["rng"]
            world.rng.setstate((version, tuple(internal), gauss))
            world.active.refresh()
        else:
            state["curve"].append(world.import_history(start))
            print(json.dumps(state["curve"][-1], default=str), flush=True)
            save()
        if not (args.sabotage_only or args.ablation or args.report):
            for text, truth in stream[world.streamed:]:
                with stop.deferred():  # a message and its labels are saved whole, or not at all
                    world.route(text, truth)
                    save()
                if world.retrain_due() or world.streamed == len(stream):
                    retrain()
            if world.streamed == len(stream) and state["curve"][-1]["streamed"] != world.streamed:
                retrain()  # the last query's run, cut short before it was saved
        if args.ablation:
            for lever in LEVERS:
                state["ablation"][lever] = guarded(ablation_run, world, home, lever)
                print(lever, json.dumps(state["ablation"][lever], default=str), flush=True)
                save()
        elif world.streamed == len(stream) and not args.report:
            for kind in args.sabotage:
                if kind not in state["sabotage"] or args.sabotage_only:
                    state["sabotage"][kind] = guarded(sabotaged_run, world, home, kind, random.Random(args.seed + 4))
                    print(kind, json.dumps(state["sabotage"][kind], default=str), flush=True)
                    save()
    result = {
        "task": "departments (BANKING77)", "settings": {
            k: getattr(settings, k) for k in (
                "audit_rate", "cold_start_audit_rate", "ask_rate", "retrain_after_labels", "implicit_after_hours",
                "implicit_weight", "gate_confidence", "gate_max_department_drop", "distil_budget_usd",
                "shadow_messages")},
        "start_per_department": args.start, "streamed": world.streamed, "test_queries": len(test),
        "baseline_accuracy_table": args.baseline_accuracy, "agent_correct_rate": args.correct_rate,
        "curve": state["curve"], "routing_log": world.routing_log, "sabotaged_candidates": state["sabotage"],
        "lever_ablation": state["ablation"], "shadow_windows": state.get("shadow_log", []),
        "baseline_routing_usd": world.routing_cost(),  # what the baseline's routes cost, the whole stream so far
        "summary": summarise(state["curve"], state["sabotage"], state.get("shadow_log", [])),
        "label_quality": inferred_label_quality(world.sessions, dict(start + stream)),
        "loopback_baseline_requests": state["baseline_requests"], "seconds": state["seconds"]}
    if world.streamed < len(stream):
        result["cut_short"] = f"{world.streamed} of {len(stream)} streamed: go on with --resume"
    if missing := [kind for kind in SABOTAGE if kind not in state["sabotage"]]:
        result["sabotage_not_run"] = missing
    finish(args, result)


class Stopper:
    """SIGTERM or Ctrl-C stops the bench at once, except while a message is being routed and saved: then
    right after. A retrain cut short is what the product survives anyway (the next run fails it and
    starts over); `--resume` goes on from the last message saved."""

    def __init__(self) -> None:
        self.critical, self.asked = False, False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.asked = True
        if not self.critical:
            raise SystemExit(f"stopped by signal {signum}: go on with --resume")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.critical = True
        try:
            yield
        finally:
            self.critical = False
        if self.asked:
            raise SystemExit("stopped: go on with --resume")


def finish(args: argparse.Namespace, result: dict[str, Any]) -> None:
    out = save(args.out, result, args, show=False)
    png = out.with_suffix(".png")
    png.write_bytes(curve_png(result["curve"], result["routing_log"]))
    print(json.dumps(result["summary"], indent=2))
    print(f"saved {png}", file=sys.stderr)


def guarded(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A sabotage run's result, or the error that stopped it: the curve is kept either way."""
    try:
        return run(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def summarise(curve: list[dict[str, Any]], sabotage: dict[str, Any] | None = None,
              shadow_log: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The hand-over is the first promotion: at a run's gate, or (shadow on) when a window ended."""
    windows = [w for w in shadow_log or [] if w["outcome"] == "promoted"]
    promotions = sorted([p for p in curve if p["promoted"]] + windows, key=lambda p: p["streamed"])
    takeover = promotions[0] if promotions else None
    points = sorted(curve + (shadow_log or []), key=lambda p: p["streamed"])  # each with the routing accuracy
    drops = [round(b["routing_test_accuracy"] - a["routing_test_accuracy"], 4)
             for a, b in itertools.pairwise(points) if b.get("promoted") or b.get("outcome") == "promoted"]
    return {"first_takeover_streamed": takeover["streamed"] if takeover else None,
            "final_routing_model": (points[-1]["routing_model"] if "routing_model" in points[-1]
                                    else f"model {points[-1]['model_id']}" if points[-1]["outcome"] == "promoted"
                                    else curve[-1]["routing_model"]),
            "final_test_accuracy": points[-1]["routing_test_accuracy"],
            "promotions": len(promotions),
            "shadow_windows": [{k: w[k] for k in ("streamed", "model_id", "outcome")} for w in shadow_log or []],
            "test_accuracy_change_at_each_promotion": drops,
            "labels_by_source": curve[-1]["labels_by_source"],
            "run_wall_seconds": [p.get("run_wall_seconds") for p in curve],
            "sabotaged_candidates_refused": {k: v.get("promoted") is False for k, v in (sabotage or {}).items()}}


def curve_png(curve: list[dict[str, Any]], routing_log: list[dict[str, Any]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    xs = [p["streamed"] for p in curve]
    ax.step([*xs, routing_log[-1]["streamed"]] if routing_log else xs,
            [p["routing_test_accuracy"] for p in curve] + ([curve[-1]["routing_test_accuracy"]] if routing_log else []),
            where="post", label="routing model, official test accuracy")
    for p in curve:
        marker = "o" if p["promoted"] else "x"
        ax.plot(p["streamed"], p["candidate_test_accuracy"] or 0, marker, color="tab:orange" if p["promoted"]
                else "tab:red")
    if (RESULTS / "quality-departments-full-3080.json").exists():
        accuracy = load_result("quality-departments-full-3080")["results"]["lora_router"]["accuracy"]
        ax.axhline(accuracy, linestyle="--", color="grey", label=f"router on the full training set ({accuracy:.1%})")
    ax.plot([], [], "o", color="tab:orange", label="candidate promoted")
    ax.plot([], [], "x", color="tab:red", label="candidate refused")
    ax.set_xlabel("queries streamed")
    ax.set_ylabel("accuracy on 600 test queries")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
