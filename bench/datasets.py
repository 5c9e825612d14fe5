"""The public data sets the benches train and score on, read from ../shared/data beside the checkout, and the
per-class samples drawn from them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from bench.harness import ROOT

SHARED = ROOT.parent / "shared" / "data"
Pairs = list[tuple[str, str]]  # (text, label)


def banking77(data: Path, task: str) -> tuple[Pairs, Pairs]:
    """(train, test) of BANKING77, labelled with its 77 intents (`task` "intents") or our 8 departments."""
    departments = json.loads((data / "departments.json").read_text())

    def rows(name: str) -> Pairs:
        with (data / name).open(newline="") as handle:
            return [(r["text"], departments[r["category"]] if task == "departments" else r["category"])
                    for r in csv.DictReader(handle)]

    return rows("train.csv"), rows("test.csv")


def clinc150(data: Path) -> tuple[Pairs, Pairs, list[str]]:
    """(train, in-scope test, out-of-scope test texts) of CLINC150, its intents mapped to their 10 domains."""
    full = json.loads((data / "data_full.json").read_text())
    domain_of = {intent: domain for domain, intents in json.loads((data / "domains.json").read_text()).items()
                 for intent in intents}
    train = [(text, domain_of[intent]) for text, intent in full["train"]]
    test = [(text, domain_of[intent]) for text, intent in full["test"]]
    return train, test, [text for text, _ in full["oos_test"]]


def sample_per_class(train: Pairs, per_class: int | None, seed: int) -> Pairs:
    """`per_class` examples of each label drawn with `seed` (all of them when None), labels in sorted order."""
    if per_class is None:
        return train
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for text, label in train:
        by_label.setdefault(label, []).append(text)
    return [(t, label) for label, texts in sorted(by_label.items())
            for t in rng.sample(texts, min(per_class, len(texts)))]
