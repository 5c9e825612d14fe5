"""What redaction costs a message, before and after a change to core/redact.py, measured in the same run.

    python -m bench.redact_cost [--before REV] [--shared ../shared/data] [--limit 3000] [--repeats 5]

"Before" is core/redact.py as it stood at git revision REV, loaded from git beside the current one;
"after" is the working tree's. Each is timed on the same texts: the bundled sample's (data/sample/*.csv),
the shared data sets' when present (BANKING77, the Bitext sample, CLINC150; `--limit` texts of each,
a fixed sample), and the same sample's texts with a personal detail planted (bench/redaction.py's
forms, and the full-width, dotted, one-group-a-line, lower-case and UK national forms). For each
redactor and set: the median and 95th percentile microseconds a message (each message's best of
`--repeats` runs), and how many texts it changed. Redactors timed: what leaves for the baseline
and the logs (`baseline`), and what the store masks at the default (`store`: card numbers alone;
before the change the store masked nothing). Saves bench/results/redact-cost.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.datasets import SHARED
from bench.harness import RESULTS, ROOT, save
from bench.redaction import PLANTS, TEMPLATES, datasets

BEFORE = "fea1ead"  # the last commit before payment cards were masked in the store and the text normalised
NEW_FORMS = ["４１１１ １１１１ １１１１ １１１１", "4111.1111.1111.1111", "4111\n1111\n1111\n1111",
             "de89 3704 0044 0532 0130 00", "020 7946 0958", "07911 123456"]


def module_at(rev: str) -> ModuleType:
    """core/redact.py as it was at `rev`, as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:core/redact.py"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    spec = importlib.util.spec_from_loader(f"redact_at_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:core/redact.py", "exec"), module.__dict__)
    return module


def sample_texts() -> list[str]:
    return [row["text"] for path in sorted((ROOT / "data" / "sample").glob("*.csv"))
            for row in csv.DictReader(path.open(newline=""))]


def planted(texts: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    details = [d for forms in PLANTS.values() for d in forms] + NEW_FORMS
    return [rng.choice(TEMPLATES).format(q=rng.choice(texts), d=detail) for detail in details for _ in range(20)]


def timed(redact: Callable[[str], str], texts: list[str], repeats: int) -> dict[str, Any]:
    for text in texts[:50]:
        redact(text)  # lazy imports and compiled patterns out of the way
    best: list[float] = []
    changed = 0
    for text in texts:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            out = redact(text)
            runs.append(time.perf_counter_ns() - started)
        best.append(min(runs) / 1000)
        changed += out != text
    best.sort()
    return {"texts": len(texts), "changed": changed, "median_us": round(statistics.median(best), 1),
            "p95_us": round(best[int(0.95 * (len(best) - 1))], 1), "max_us": round(best[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of core/redact.py to compare with")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--limit", type=int, default=3000, help="texts of each shared data set (a fixed sample)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "redact-cost.json")
    args = parser.parse_args()
    from core import redact as after

    before = module_at(args.before)
    sets = {"sample": sample_texts()}
    rng = random.Random(0)
    for name, texts in datasets(args.shared).items():
        sets[name] = rng.sample(texts, min(args.limit, len(texts)))
    sets["planted"] = planted(sets["sample"], seed=0)
    redactors: dict[str, Callable[[str], str]] = {
        "before/baseline": before.Redactor().text, "after/baseline": after.Redactor().text,
        "before/store": before.Redactor.off().text, "after/store": after.Redactor.cards().text}
    result = {name: {who: timed(redact, texts, args.repeats) for who, redact in redactors.items()}
              for name, texts in sets.items()}
    save(args.out, {"per_set": result, "unit": "microseconds a message, each message's best of --repeats"}, args,
         show=False)
    for name, by in result.items():
        for who, figures in by.items():
            print(f"{name:<22}{who:<18}median {figures['median_us']:>7} us  p95 {figures['p95_us']:>7} us  "
                  f"changed {figures['changed']}/{figures['texts']}")
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
