"""The product's loop, simulated on BANKING77's 8 departments through the real store, trainer and gate.

    python bench/loop.py --data ../shared/data/banking77 --start 5 --stream 1000 --retrain-every 100 --test 300

Starts from `--start` labelled examples per department, streams unseen training queries through
the active model, lets a simulated agent correct every misroute with the true department, and
retrains every `--retrain-every` corrections. After each run it records holdout macro-F1, accuracy
on a fixed sample of the official test split, labels spent and the gate's decision. At the end a
candidate trained on shuffled labels goes through the same gate (on a copy of the store), which
must refuse it. Prints and saves JSON to bench/results/loop-<stream>-min-holdout-<k>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quality

from router.settings import Settings
from store.db import make_engine, session_factory, transaction
from store.examples import add_examples
from store.migrations import migrate
from store.registry import active_model
from store.tables import LabelSource
from trainer.gate import GateRules
from trainer.pipeline import RunOptions, run_training


def open_store(home: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{home / 'switchboard.db'}")
    migrate(engine)
    return session_factory(engine)


class ActiveRouter:
    """The active model, reloaded whenever the registry moves (what the bot's hot swap does)."""

    def __init__(self, settings: Settings, sessions) -> None:  # type: ignore[no-untyped-def]
        self.settings, self.sessions, self.model_id, self.router = settings, sessions, None, None

    def get(self):  # type: ignore[no-untyped-def]
        from router.loading import load_router

        with self.sessions() as session:
            model = active_model(session)
        if model is not None and model.id != self.model_id:
            self.router = load_router(self.settings, adapter_dir=Path(model.adapter_path), name=str(model.id))
            self.model_id = model.id
        return self.router


def test_accuracy(router, test) -> float:  # type: ignore[no-untyped-def]
    predicted = [c.department for c in router.classify_batch([t for t, _ in test])]
    return round(sum(p == y for p, (_, y) in zip(predicted, test, strict=True)) / len(test), 4)


def point(report: dict, labels_spent: int, streamed: int, router, test) -> dict:  # type: ignore[no-untyped-def]
    return {"run_id": report["run_id"], "streamed": streamed, "labels_spent": labels_spent,
            "promoted": report["promoted"], "reason": report["reason"],
            "candidate_holdout_macro_f1": (report.get("candidate") or {}).get("macro_f1"),
            "current_holdout_macro_f1": (report.get("current") or {}).get("macro_f1"),
            "holdout_n": (report.get("candidate") or {}).get("n"),
            "trained_on": {k: report.get("training", {}).get(k) for k in ("examples", "new", "replay", "seconds")},
            "active_model_test_accuracy": test_accuracy(router, test) if router else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/banking77")
    parser.add_argument("--start", type=int, default=5, help="labelled examples per department to start from")
    parser.add_argument("--stream", type=int, default=1000)
    parser.add_argument("--retrain-every", type=int, default=100, help="corrections between retrains")
    parser.add_argument("--test", type=int, default=300, help="official test queries scored after each run")
    parser.add_argument("--min-holdout", type=int, default=GateRules().min_holdout_per_department,
                        help="the gate's minimum holdout examples per department")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(".switchboard/cache"), help="converted base model")
    args = parser.parse_args()

    train_all, test_all = quality.load(args.data, "departments")
    rng = random.Random(args.seed)
    rng.shuffle(train_all)
    start = quality.sample_train(train_all, args.start, args.seed)
    started_texts = {t for t, _ in start}
    stream = [row for row in train_all if row[0] not in started_texts][: args.stream]
    test = random.Random(args.seed + 1).sample(test_all, args.test)

    home = Path(tempfile.mkdtemp(prefix="switchboard-loop-"))
    (home / "cache").symlink_to(args.cache.resolve())
    settings = Settings(SWITCHBOARD_HOME=home)
    sessions = open_store(home)
    options = RunOptions(progress=False, trigger="bench", rules=GateRules(min_holdout_per_department=args.min_holdout))
    began = time.perf_counter()
    with transaction(sessions) as session:
        add_examples(session, examples=start)
    active = ActiveRouter(settings, sessions)
    report = run_training(settings, sessions, options)
    curve = [point(report, len(start), 0, active.get(), test)]
    print(json.dumps(curve[-1]), flush=True)
    spent, pending = len(start), 0
    for streamed, (text, truth) in enumerate(stream, start=1):
        if active.get().classify(text).department != truth:
            with transaction(sessions) as session:
                spent += add_examples(session, examples=[(text, truth)], source=LabelSource.AGENT,
                                      author="simulated-agent").added
            pending += 1
        if pending >= args.retrain_every or (streamed == len(stream) and pending):
            report = run_training(settings, sessions, options)
            curve.append(point(report, spent, streamed, active.get(), test))
            print(json.dumps(curve[-1]), flush=True)
            pending = 0

    broken = shuffled_label_run(settings, home, options, rng)
    result = {"task": "departments", "start_per_department": args.start, "streamed": len(stream),
              "retrain_every": args.retrain_every, "min_holdout_per_department": args.min_holdout,
              "test_queries": len(test), "curve": curve,
              "shuffled_label_candidate": broken, "seconds": round(time.perf_counter() - began, 1),
              "machine": f"{__import__('os').cpu_count()} CPU cores"}
    out = Path(__file__).resolve().parent / "results" / f"loop-{len(stream)}-min-holdout-{args.min_holdout}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)
    shutil.rmtree(home, ignore_errors=True)


def shuffled_label_run(settings: Settings, home: Path, options: RunOptions, rng: random.Random) -> dict:
    """A candidate trained on every training label shuffled across departments, gated on a copy of the store.

    The holdout keeps its true labels, so the gate sees what a sabotaged (or buggy) labelling
    would really do; it must refuse the candidate.
    """
    from store.examples import get_department, label_query, labelled_examples
    from store.tables import Query, Split

    copy = Path(tempfile.mkdtemp(prefix="switchboard-loop-broken-"))
    shutil.copytree(home, copy, dirs_exist_ok=True, symlinks=True)
    sessions = open_store(copy)
    with transaction(sessions) as session:
        train = labelled_examples(session, split=Split.TRAIN)
        shuffled = [e.label for e in train]
        rng.shuffle(shuffled)
        for example, label in zip(train, shuffled, strict=True):
            query, department = session.get(Query, example.query_id), get_department(session, name=label)
            assert query is not None and department is not None
            label_query(session, query=query, department=department, source=LabelSource.ADMIN, author="saboteur")
    report = run_training(settings.model_copy(update={"home": copy}), sessions, options)
    shutil.rmtree(copy, ignore_errors=True)
    return {"promoted": report["promoted"], "reason": report["reason"],
            "candidate_holdout_macro_f1": (report.get("candidate") or {}).get("macro_f1"),
            "current_holdout_macro_f1": (report.get("current") or {}).get("macro_f1")}


if __name__ == "__main__":
    main()
