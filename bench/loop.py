"""The product's loop at its defaults, simulated on BANKING77's 8 departments through the real store,
bot decisions, trainer, baseline client and gate.

    python bench/loop.py --data ../shared/data/banking77

Starts from 5 imported examples per department and nothing else. Streams 3,000 unseen training
queries through the routing model: the few-shot baseline (a loopback OpenAI-compatible server that
answers correctly 85% of the time, from a fixed seeded table) until a fine-tuned model beats it,
then the active model. Each message gets the bot's triage rule and audit draw
(`SWITCHBOARD_AUDIT_RATE`); simulated agents answer every audit truthfully and correct each misroute
or triaged message they see with probability 0.8. A retrain runs whenever the default number of
labels waits (`SWITCHBOARD_RETRAIN_AFTER_LABELS`). After each run it records the routing model's
accuracy on 600 official test queries, labels by source, the gate's decision and the baseline's
cost. Two sabotaged candidates (shuffled labels; two departments' labels swapped) then go through
the same gate on copies of the store. Saves bench/results/loop-defaults.json and a PNG curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quality
from loop_world import SimulatedDeployment, open_store, sabotaged_run

from core.settings import Settings
from fakes.openai_api import FakeOpenAI

RESULTS = Path(__file__).resolve().parent / "results"


def baseline_table(texts: list[tuple[str, str]], departments: list[str], accuracy: float,
                   seed: int) -> dict[str, str]:
    """Each text's fixed answer: right with probability `accuracy`, else another department at random."""
    rng = random.Random(seed)
    table = {}
    for text, truth in texts:
        table[text] = truth if rng.random() < accuracy else rng.choice([d for d in departments if d != truth])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/banking77")
    parser.add_argument("--start", type=int, default=5, help="imported examples per department")
    parser.add_argument("--stream", type=int, default=3000)
    parser.add_argument("--test", type=int, default=600, help="official test queries scored after each run")
    parser.add_argument("--baseline-accuracy", type=float, default=0.85)
    parser.add_argument("--correct-rate", type=float, default=0.8, help="chance an agent fixes a misroute they see")
    parser.add_argument("--retrain-after", type=int, help="labels between retrains (default: the product's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(".switchboard/cache"), help="converted base model")
    parser.add_argument("--out", type=Path, default=RESULTS / "loop-defaults.json")
    parser.add_argument("--from-partial", type=Path, help="write the JSON and PNG of a run cut short from its "
                        "<out>.partial.json, then stop")
    args = parser.parse_args()
    if args.from_partial:
        saved = json.loads(args.from_partial.read_text())
        finish(args.out, {"cut_short": True, "curve": saved["curve"], "routing_log": saved["routing_log"],
                          "summary": summarise(saved["curve"]), "sabotaged_candidates": "not run (cut short)"})
        return

    train_all, test_all = quality.load(args.data, "departments")
    rng = random.Random(args.seed)
    rng.shuffle(train_all)
    start = quality.sample_train(train_all, args.start, args.seed)
    started_texts = {t for t, _ in start}
    stream = [row for row in train_all if row[0] not in started_texts][: args.stream]
    test = random.Random(args.seed + 1).sample(test_all, args.test)
    departments = sorted({label for _, label in train_all})
    table = baseline_table(start + stream + test, departments, args.baseline_accuracy, args.seed + 2)

    home = Path(tempfile.mkdtemp(prefix="switchboard-loop-"))
    args.cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(args.cache.resolve())
    began = time.perf_counter()
    with FakeOpenAI(table) as fake:
        settings = Settings(SWITCHBOARD_HOME=home, OPENAI_API_KEY="sk-loopback", OPENAI_BASE_URL=fake.base_url)
        if args.retrain_after:
            settings = settings.model_copy(update={"retrain_after_labels": args.retrain_after})
        world = SimulatedDeployment(settings, open_store(home), rng=random.Random(args.seed + 3),
                                    correct_rate=args.correct_rate, test=test)
        curve = [world.import_history(start)]
        print(json.dumps(curve[-1], default=str), flush=True)
        partial = args.out.with_suffix(".partial.json")
        for streamed, (text, truth) in enumerate(stream, start=1):
            world.route(text, truth)
            if world.retrain_due() or streamed == len(stream):
                curve.append(world.retrain(streamed))
                print(json.dumps(curve[-1], default=str), flush=True)
                partial.write_text(json.dumps({"curve": curve, "routing_log": world.routing_log}, default=str))
        sabotage = {kind: guarded(sabotaged_run, world, home, kind, random.Random(args.seed + 4))
                    for kind in ("shuffled_labels", "two_departments_swapped")}
        baseline_answers = {"requests": len(fake.requests), **fake.usage}
    result = {
        "task": "departments (BANKING77)", "defaults": {
            "audit_rate": settings.audit_rate, "retrain_after_labels": settings.retrain_after_labels,
            "gate_confidence": settings.gate_confidence, "gate_max_department_drop": settings.gate_max_department_drop,
            "distil_budget_usd": settings.distil_budget_usd},
        "start_per_department": args.start, "streamed": len(stream), "test_queries": len(test),
        "baseline_accuracy_table": args.baseline_accuracy, "agent_correct_rate": args.correct_rate,
        "curve": curve, "routing_log": world.routing_log, "sabotaged_candidates": sabotage,
        "summary": summarise(curve), "loopback_baseline_requests": baseline_answers,
        "seconds": round(time.perf_counter() - began, 1), "machine": f"{__import__('os').cpu_count()} CPU cores"}
    finish(args.out, result)
    shutil.rmtree(home, ignore_errors=True)


def finish(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    png = out.with_suffix(".png")
    png.write_bytes(curve_png(result["curve"], result["routing_log"]))
    print(json.dumps(result["summary"], indent=2))
    print(f"saved {out} and {png}", file=sys.stderr)


def guarded(run: Any, *args: Any) -> dict[str, Any]:
    """A sabotage run's result, or the error that stopped it: the curve is kept either way."""
    try:
        return run(*args)  # type: ignore[no-any-return]
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def summarise(curve: list[dict[str, Any]]) -> dict[str, Any]:
    takeover = next((p for p in curve if p["promoted"]), None)
    drops = [round(b["routing_test_accuracy"] - a["routing_test_accuracy"], 4)
             for a, b in itertools.pairwise(curve) if b["promoted"]]
    return {"first_takeover_streamed": takeover["streamed"] if takeover else None,
            "final_routing_model": curve[-1]["routing_model"],
            "final_test_accuracy": curve[-1]["routing_test_accuracy"],
            "promotions": sum(p["promoted"] for p in curve),
            "test_accuracy_change_at_each_promotion": drops,
            "labels_by_source": curve[-1]["labels_by_source"]}


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
    full = RESULTS / "quality-departments-full-3080.json"
    if full.exists():
        accuracy = json.loads(full.read_text())["results"]["lora_router"]["accuracy"]
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
